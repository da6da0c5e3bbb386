//! The signing key ring: the Ed25519 key that signs access tokens, the JWKS
//! that lets the gateway check them, and the claims they carry.
//!
//! The key lives in `signing-key.json` in the service's key directory (mode
//! 0600, directory 0700). It is made on first start and read back on every later
//! one, so tokens issued before a restart stay valid after it, and replicas that
//! share the data directory sign with the same key. The key id is the RFC 7638
//! thumbprint of the public key, so anyone holding the JWKS can recompute it.
//!
//! The ring holds one active key today; the JWKS is already a list so that a
//! rotated-out key can keep verifying until its last token expires.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{Role, UserId};

/// The `iss` of every access token.
pub const ISSUER: &str = chassis::extract::TOKEN_ISSUER;
/// The `aud` of every access token: the platform as a whole, checked at the gateway.
pub const AUDIENCE: &str = chassis::extract::TOKEN_AUDIENCE;
/// How long an access token is valid. Short, because a token cannot be revoked
/// before it expires.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// The name of the key file inside the key directory.
pub const KEY_FILE_NAME: &str = "signing-key.json";
/// The JWS algorithm of every token this ring signs.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;

/// The DER header of a PKCS#8 v1 `OneAsymmetricKey` holding an Ed25519 seed
/// (RFC 8410): SEQUENCE, version 0, algorithm id 1.3.101.112, then the
/// OCTET STRING wrapping the 32-byte seed that follows it.
const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
const SEED_LEN: usize = 32;
const ALG_NAME: &str = "EdDSA";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Who issued the token: always [`ISSUER`].
    pub iss: String,
    /// Who the token is for: always [`AUDIENCE`].
    pub aud: String,
    /// The user id, as a UUID string.
    pub sub: String,
    /// The user's role names (`"customer"`, `"admin"`).
    pub roles: Vec<String>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: i64,
    /// Issue time, in seconds since the Unix epoch.
    pub iat: i64,
    /// A unique token id (UUIDv4), so a token can be told apart from another
    /// issued to the same user in the same second.
    pub jti: String,
}

impl AccessClaims {
    /// The claims for `user_id` with `roles`, issued at `now` and valid for `ttl`.
    pub fn new(user_id: UserId, roles: &[Role], now: OffsetDateTime, ttl: Duration) -> Self {
        let iat = now.unix_timestamp();
        Self {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: user_id.to_string(),
            roles: roles.iter().map(|role| role.as_str().to_owned()).collect(),
            exp: iat.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            iat,
            jti: Uuid::new_v4().to_string(),
        }
    }
}

/// Why the key ring could not be loaded, or a token not signed or verified.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file system operation on the key directory failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("create", "read", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The key file exists but cannot be used; it is left alone for an operator
    /// to inspect rather than silently replaced, which would void every token.
    #[error("the signing key file {} is unusable: {reason}", path.display())]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The operating system's random source failed.
    #[error("cannot read random bytes for a new key: {0}")]
    Random(String),
    /// The token is not signed by any key in this ring.
    #[error("the token's key id is not in this key ring")]
    UnknownKey,
    /// Building a key, signing or verifying failed.
    #[error("token error: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// The JWKS could not be encoded.
    #[error("cannot encode the JWKS: {0}")]
    Json(#[from] serde_json::Error),
}

/// The key file's contents. The seed is the whole private key.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    kid: String,
    alg: String,
    seed_b64url: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// The keys that sign and verify access tokens.
pub struct KeyRing {
    kid: String,
    created_at: OffsetDateTime,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwks: serde_json::Value,
    validation: Validation,
}

impl std::fmt::Debug for KeyRing {
    // The private key must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("kid", &self.kid).field("created_at", &self.created_at).finish()
    }
}

impl KeyRing {
    /// Reads the key from `dir/signing-key.json`, or makes a new key and writes
    /// it there if the file does not exist yet (creating `dir` with mode 0700).
    ///
    /// Several processes may start at once on one data directory: each writes
    /// its candidate to a private temporary file and links it into place, which
    /// fails for all but the first; the others then read the winner's key.
    /// Does blocking file I/O; call it at start-up, before serving.
    pub fn load_or_create(dir: &Path) -> Result<KeyRing, KeyError> {
        let path = dir.join(KEY_FILE_NAME);
        match fs::read_to_string(&path) {
            Ok(text) => return Self::load(&path, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyError::Io { action: "read", path, source });
            }
        }
        ensure_private_dir(dir)?;
        Self::create(dir, &path)
    }

    /// A new key held only in memory, for tests and tools that need no restart.
    pub fn generate() -> Result<KeyRing, KeyError> {
        Self::from_seed(&random_seed()?, OffsetDateTime::now_utc())
    }

    /// The id of the active key, sent as `kid` in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// When the active key was made.
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// The public keys as a JWKS document, for `GET /.well-known/jwks.json`:
    /// `{"keys":[{"kty":"OKP","crv":"Ed25519","x":..,"kid":..,"alg":"EdDSA","use":"sig"}]}`.
    pub fn jwks(&self) -> serde_json::Value {
        self.jwks.clone()
    }

    /// Signs `claims` with the active key (header `alg` EdDSA, `kid` set).
    pub fn issue(&self, claims: &AccessClaims) -> Result<String, KeyError> {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// Checks a token as the gateway does (algorithm, key id, signature, issuer,
    /// audience, expiry) and returns its claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, KeyError> {
        let header = jsonwebtoken::decode_header(token)?;
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(KeyError::UnknownKey);
        }
        Ok(jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)?.claims)
    }

    fn from_seed(seed: &[u8; SEED_LEN], created_at: OffsetDateTime) -> Result<KeyRing, KeyError> {
        let mut der = Vec::with_capacity(PKCS8_ED25519_PREFIX.len() + SEED_LEN);
        der.extend_from_slice(&PKCS8_ED25519_PREFIX);
        der.extend_from_slice(seed);
        let encoding = EncodingKey::from_ed_der(&der);

        // jsonwebtoken derives the public key from the private one here.
        let mut jwk = Jwk::from_encoding_key(&encoding, ALGORITHM)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk)?;
        let jwks = serde_json::to_value(JwkSet { keys: vec![jwk] })?;

        Ok(KeyRing { kid, created_at, encoding, decoding, jwks, validation: access_token_validation() })
    }

    fn load(path: &Path, text: &str) -> Result<KeyRing, KeyError> {
        let corrupt = |reason: String| KeyError::Corrupt { path: path.to_owned(), reason };
        let file: KeyFile = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        if file.alg != ALG_NAME {
            return Err(corrupt(format!("alg is {:?}, expected {ALG_NAME:?}", file.alg)));
        }
        let seed: [u8; SEED_LEN] = URL_SAFE_NO_PAD
            .decode(file.seed_b64url.as_bytes())
            .map_err(|e| corrupt(format!("seed_b64url is not base64url: {e}")))?
            .try_into()
            .map_err(|_| corrupt(format!("seed_b64url must hold {SEED_LEN} bytes")))?;
        let ring = Self::from_seed(&seed, file.created_at)?;
        if ring.kid != file.kid {
            return Err(corrupt("kid does not match the key".to_owned()));
        }
        tighten_permissions(path)?;
        Ok(ring)
    }

    fn create(dir: &Path, path: &Path) -> Result<KeyRing, KeyError> {
        let seed = random_seed()?;
        let ring = Self::from_seed(&seed, OffsetDateTime::now_utc())?;
        let file = KeyFile {
            kid: ring.kid.clone(),
            alg: ALG_NAME.to_owned(),
            seed_b64url: URL_SAFE_NO_PAD.encode(seed),
            created_at: ring.created_at,
        };
        let json = serde_json::to_vec_pretty(&file)?;

        let temp = dir.join(format!(".{KEY_FILE_NAME}.{}.tmp", Uuid::new_v4()));
        let io_err = |action, path: &Path| {
            let path = path.to_owned();
            move |source| KeyError::Io { action, path, source }
        };
        write_private_file(&temp, &json).map_err(io_err("write", &temp))?;
        // A hard link never replaces an existing file, unlike rename: if another
        // process got there first, its key stands and this candidate is dropped.
        let linked = fs::hard_link(&temp, path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                sync_dir(dir).map_err(io_err("sync", dir))?;
                tracing::info!(kid = %ring.kid, path = %path.display(), "created a new token signing key");
                Ok(ring)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(path).map_err(io_err("read", path))?;
                Self::load(path, &text)
            }
            Err(source) => Err(KeyError::Io { action: "create", path: path.to_owned(), source }),
        }
    }
}

/// How access tokens are checked: EdDSA only (no algorithm taken from the
/// token), this issuer and audience, and `exp`, `iss`, `aud`, `sub` present.
pub fn access_token_validation() -> Validation {
    let mut validation = Validation::new(ALGORITHM);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation
}

fn random_seed() -> Result<[u8; SEED_LEN], KeyError> {
    let mut seed = [0u8; SEED_LEN];
    OsRng.try_fill_bytes(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(seed)
}

fn ensure_private_dir(dir: &Path) -> Result<(), KeyError> {
    let io_err = |action| move |source| KeyError::Io { action, path: dir.to_owned(), source };
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err("create"))?;
    // The directory may have existed with looser permissions; it holds a secret.
    fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(io_err("set permissions on"))
}

fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn tighten_permissions(path: &Path) -> Result<(), KeyError> {
    let io_err = |action| move |source| KeyError::Io { action, path: path.to_owned(), source };
    let mode = fs::metadata(path).map_err(io_err("inspect"))?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "signing key file was readable by others; restricting it to 0600");
        fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(io_err("set permissions on"))?;
    }
    Ok(())
}

/// Makes the new directory entry durable, so a crash right after start-up
/// cannot lose a key whose tokens are already out.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::errors::ErrorKind;

    fn claims() -> AccessClaims {
        AccessClaims::new(UserId::new(), &[Role::Customer, Role::Admin], OffsetDateTime::now_utc(), ACCESS_TOKEN_TTL)
    }

    /// What the gateway does: keys only from the JWKS, picked by `kid`.
    fn verify_with_jwks(token: &str, jwks: &serde_json::Value) -> jsonwebtoken::errors::Result<AccessClaims> {
        let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
        let kid = jsonwebtoken::decode_header(token)?.kid.unwrap();
        let jwk = set.find(&kid).expect("the token's kid is in the JWKS");
        let key = DecodingKey::from_jwk(jwk)?;
        jsonwebtoken::decode::<AccessClaims>(token, &key, &access_token_validation()).map(|t| t.claims)
    }

    #[test]
    fn the_key_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("services/identity/keys");
        let first = KeyRing::load_or_create(&keys).unwrap();
        let second = KeyRing::load_or_create(&keys).unwrap();

        assert_eq!(first.kid(), second.kid());
        assert_eq!(first.created_at(), second.created_at());
        let claims = claims();
        let token = first.issue(&claims).unwrap();
        assert_eq!(verify_with_jwks(&token, &second.jwks()).unwrap(), claims);
        assert_eq!(second.verify(&token).unwrap(), claims);
    }

    #[test]
    fn key_file_is_private_to_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        KeyRing::load_or_create(&keys).unwrap();

        let file_mode = fs::metadata(keys.join(KEY_FILE_NAME)).unwrap().permissions().mode();
        let dir_mode = fs::metadata(&keys).unwrap().permissions().mode();
        assert_eq!(file_mode & 0o777, 0o600);
        assert_eq!(dir_mode & 0o777, 0o700);
        // No temporary candidates are left behind.
        assert_eq!(fs::read_dir(&keys).unwrap().count(), 1);
    }

    #[test]
    fn key_file_records_kid_alg_seed_and_creation_time() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load_or_create(dir.path()).unwrap();
        let stored: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join(KEY_FILE_NAME)).unwrap()).unwrap();

        assert_eq!(stored["kid"], ring.kid());
        assert_eq!(stored["alg"], "EdDSA");
        assert_eq!(URL_SAFE_NO_PAD.decode(stored["seed_b64url"].as_str().unwrap()).unwrap().len(), 32);
        assert!(stored["created_at"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn jwks_lists_the_public_key_only() {
        let ring = KeyRing::generate().unwrap();
        let jwks = ring.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let key = keys[0].as_object().unwrap();

        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], ring.kid());
        assert_eq!(URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap().len(), 32);
        let mut names: Vec<&str> = key.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x"]);
    }

    #[test]
    fn issued_token_carries_alg_kid_and_the_platform_claims() {
        let ring = KeyRing::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        let user = UserId::new();
        let claims = AccessClaims::new(user, &[Role::Customer], now, ACCESS_TOKEN_TTL);
        let token = ring.issue(&claims).unwrap();

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(ring.kid()));
        let read = ring.verify(&token).unwrap();
        assert_eq!(read.iss, "bazaar-identity");
        assert_eq!(read.aud, "bazaar");
        assert_eq!(read.sub, user.to_string());
        assert_eq!(read.roles, ["customer"]);
        assert_eq!(read.exp - read.iat, 15 * 60);
        assert_eq!(Uuid::parse_str(&read.jti).unwrap().get_version_num(), 4);
    }

    #[test]
    fn token_signed_by_another_key_ring_fails() {
        let ours = KeyRing::generate().unwrap();
        let theirs = KeyRing::generate().unwrap();
        let token = theirs.issue(&claims()).unwrap();

        assert!(matches!(ours.verify(&token), Err(KeyError::UnknownKey)));

        // A forger who copies our kid still cannot produce our signature.
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(ours.kid().to_owned());
        let forged = jsonwebtoken::encode(&header, &claims(), &theirs.encoding).unwrap();
        let err = verify_with_jwks(&forged, &ours.jwks()).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidSignature);
        assert!(ours.verify(&forged).is_err());
    }

    #[test]
    fn expired_or_foreign_audience_tokens_are_refused() {
        let ring = KeyRing::generate().unwrap();
        let long_ago = OffsetDateTime::now_utc() - time::Duration::hours(2);
        let expired = ring.issue(&AccessClaims::new(UserId::new(), &[], long_ago, ACCESS_TOKEN_TTL)).unwrap();
        assert!(ring.verify(&expired).is_err());

        let mut other_audience = claims();
        other_audience.aud = "someone-else".to_owned();
        assert!(ring.verify(&ring.issue(&other_audience).unwrap()).is_err());
    }

    #[test]
    fn a_damaged_key_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(KeyRing::load_or_create(dir.path()), Err(KeyError::Corrupt { .. })));
        assert_eq!(fs::read_to_string(&path).unwrap(), "{not json");
    }

    #[test]
    fn a_key_file_whose_kid_does_not_match_its_seed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        KeyRing::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let mut stored: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        stored["kid"] = "someone-elses-kid".into();
        fs::write(&path, stored.to_string()).unwrap();

        let err = KeyRing::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("kid does not match"), "{err}");
    }

    #[test]
    fn a_key_file_readable_by_others_is_tightened_on_load() {
        let dir = tempfile::tempdir().unwrap();
        KeyRing::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();

        KeyRing::load_or_create(dir.path()).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        let ring = KeyRing::generate().unwrap();
        let shown = format!("{ring:?}");
        assert!(shown.contains(ring.kid()));
        assert!(!shown.contains("encoding"), "{shown}");
    }
}
