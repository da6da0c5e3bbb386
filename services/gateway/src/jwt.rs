//! Verification of the access tokens the identity service issues.
//!
//! Tokens are JWTs signed with EdDSA (Ed25519) or ES256, naming their key by `kid`,
//! with claims `iss` = `bazaar-identity`, `aud` = `bazaar`, `sub` (the user id),
//! `roles`, `exp`, `iat` and `jti`. Verification order matters:
//!
//! 1. the header is decoded on its own and `alg` checked against the allow-list,
//!    so `none`, HMAC and RSA tokens are refused before any key is looked at;
//! 2. the key comes only from the JWKS, by `kid`, and must be for that algorithm;
//! 3. the signature is checked, and only then the claims (`exp`, `iss`, `aud`).
//!
//! A verified token is cached until its `exp`, keyed by the whole token string
//! (a hash would let a colliding forgery ride on a cached entry), so each token's
//! signature is checked once rather than per request. The cache is bounded; when
//! full of live tokens, new tokens are verified but not cached.
//!
//! Keys come from a [`JwksSource`]. An unknown `kid` triggers a refetch at most
//! once per [`VerifierOptions::unknown_kid_refetch_interval`], so a flood of
//! tokens with random `kid`s cannot hammer the identity service; a periodic
//! [`JwtVerifier::refresh_if_due`] picks up rotations otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use uuid::Uuid;

/// The issuer the identity service writes into `iss`.
pub const ISSUER: &str = chassis::extract::TOKEN_ISSUER;
/// The audience the identity service writes into `aud`.
pub const AUDIENCE: &str = chassis::extract::TOKEN_AUDIENCE;

/// Tokens longer than this are refused unread: real ones are a few hundred bytes,
/// and the cache keys on the whole string.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was refused. Every variant maps to 401 at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a well-formed JWT, or claims of the wrong shape.
    #[error("the token is malformed")]
    Malformed,
    /// The header names an algorithm outside the allow-list.
    #[error("the token's algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// No key in the key set has the token's `kid`.
    #[error("the token's signing key is unknown")]
    UnknownKey,
    /// The signature does not match.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `iss` is missing or not the identity service.
    #[error("the token was issued by someone else")]
    WrongIssuer,
    /// `aud` is missing or does not include this platform.
    #[error("the token is meant for another audience")]
    WrongAudience,
}

impl AuthError {
    /// A stable code for problem responses and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Malformed => "token_malformed",
            AuthError::UnsupportedAlgorithm => "token_algorithm_unsupported",
            AuthError::UnknownKey => "token_key_unknown",
            AuthError::BadSignature => "token_signature_invalid",
            AuthError::Expired => "token_expired",
            AuthError::WrongIssuer => "token_issuer_invalid",
            AuthError::WrongAudience => "token_audience_invalid",
        }
    }
}

/// A key set could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The HTTP request failed, returned an error status or an unreadable body.
    #[error("fetching the key set from {url} failed")]
    Fetch {
        /// The JWKS URL.
        url: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// A non-HTTP source could not provide a key set.
    #[error("the key set is unavailable: {0}")]
    Unavailable(String),
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    user_id: Uuid,
    roles: Vec<String>,
    expires_at: u64,
    token_id: Option<String>,
}

impl Principal {
    /// A principal with these attributes. In the request path only
    /// [`JwtVerifier`] makes them; this exists for tests and internal callers.
    pub fn new(user_id: Uuid, roles: Vec<String>, expires_at: u64, token_id: Option<String>) -> Self {
        Principal { user_id, roles, expires_at, token_id }
    }

    /// The user the token was issued to (`sub`).
    pub fn user_id(&self) -> Uuid {
        self.user_id
    }

    /// The user's roles (`roles`).
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Whether the user has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// When the token expires, in seconds since the Unix epoch (`exp`).
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// The token's id (`jti`), if it had one.
    pub fn token_id(&self) -> Option<&str> {
        self.token_id.as_deref()
    }
}

/// How a [`JwtVerifier`] checks tokens and keeps its keys fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierOptions {
    /// The required `iss`.
    pub issuer: String,
    /// The audience `aud` must contain.
    pub audience: String,
    /// Clock skew tolerated on `exp`, in seconds.
    pub leeway_secs: u64,
    /// The shortest time between two fetches prompted by unknown `kid`s.
    pub unknown_kid_refetch_interval: Duration,
    /// How often [`JwtVerifier::refresh_if_due`] refetches the key set.
    pub refresh_interval: Duration,
    /// The most verified tokens kept.
    pub cache_capacity: usize,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        VerifierOptions {
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            leeway_secs: 0,
            unknown_kid_refetch_interval: Duration::from_secs(10),
            refresh_interval: Duration::from_secs(300),
            cache_capacity: 10_000,
        }
    }
}

/// Where the verifier gets its keys.
pub trait JwksSource: Send + Sync {
    /// The current key set.
    fn fetch(&self) -> impl Future<Output = Result<JwkSet, JwksError>> + Send;
}

/// The identity service's `/.well-known/jwks.json`, fetched over HTTP from any
/// of its instances: each fetch starts at the next one and moves on when one
/// fails, so one instance down does not stop key refreshes. Fetches carry the
/// trace context like every other outgoing call.
#[derive(Debug)]
pub struct HttpJwksSource {
    client: chassis::client::HttpClient,
    urls: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    timeout: Duration,
}

impl HttpJwksSource {
    /// A source fetching from `urls` (one per identity instance) with `client`,
    /// giving up on each after two seconds.
    pub fn new(client: chassis::client::HttpClient, urls: Vec<String>) -> Self {
        HttpJwksSource { client, urls, next: std::sync::atomic::AtomicUsize::new(0), timeout: Duration::from_secs(2) }
    }

    /// The same source with a different per-fetch timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn fetch_one(&self, url: &str) -> Result<JwkSet, JwksError> {
        let failed = |source| JwksError::Fetch { url: url.to_owned(), source };
        self.client
            .get(url)
            .timeout(self.timeout)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?
            .json::<JwkSet>()
            .await
            .map_err(failed)
    }
}

impl JwksSource for HttpJwksSource {
    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut last = Err(JwksError::Unavailable("no identity instance is configured".into()));
        for n in 0..self.urls.len() {
            let url = &self.urls[(start + n) % self.urls.len()];
            last = self.fetch_one(url).await;
            if last.is_ok() {
                break;
            }
        }
        last
    }
}

/// A fixed key set, for tests and for wiring without an identity service.
#[derive(Debug, Clone, Default)]
pub struct StaticJwks(pub JwkSet);

impl JwksSource for StaticJwks {
    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        Ok(self.0.clone())
    }
}

/// Seconds since the Unix epoch by the system clock, for callers of [`JwtVerifier`].
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// The algorithms accepted, as the header spells them.
fn allowed_algorithm(alg: &str) -> Option<Algorithm> {
    match alg {
        "EdDSA" => Some(Algorithm::EdDSA),
        "ES256" => Some(Algorithm::ES256),
        _ => None,
    }
}

struct VerificationKey {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

type KeySet = HashMap<String, VerificationKey>;

/// Turns a JWKS into usable keys, skipping any without a `kid`, of another type
/// or curve than the allowed algorithms, whose declared `alg` disagrees with its
/// type, or whose material is the wrong size.
fn compile_key_set(set: &JwkSet) -> KeySet {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(params)
                if params.curve == EllipticCurve::Ed25519
                    && URL_SAFE_NO_PAD.decode(&params.x).is_ok_and(|x| x.len() == 32) =>
            {
                Algorithm::EdDSA
            }
            AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => Algorithm::ES256,
            _ => continue,
        };
        let declared_ok = match jwk.common.key_algorithm {
            None => true,
            Some(KeyAlgorithm::EdDSA) => algorithm == Algorithm::EdDSA,
            Some(KeyAlgorithm::ES256) => algorithm == Algorithm::ES256,
            Some(_) => false,
        };
        if !declared_ok {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let mut validation = Validation::new(algorithm);
        // Time and audience are checked here against the caller's clock, so the
        // library only verifies the signature.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        keys.insert(kid, VerificationKey { algorithm, key, validation });
    }
    keys
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// RFC 7515 §4.1.11: extensions a verifier must understand; none are.
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(aud) => aud == wanted,
            Audience::Many(auds) => auds.iter().any(|aud| aud == wanted),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    exp: u64,
    #[serde(default)]
    jti: Option<String>,
}

struct CachedToken {
    principal: Arc<Principal>,
    /// `exp` plus leeway: the entry is served only strictly before this.
    valid_until: u64,
    kid: String,
}

#[derive(Default)]
struct FetchState {
    last_fetch_unix: Option<u64>,
}

/// Verifies access tokens against the identity service's keys, caching results.
pub struct JwtVerifier<S> {
    source: S,
    options: VerifierOptions,
    keys: RwLock<Arc<KeySet>>,
    cache: DashMap<Box<str>, CachedToken>,
    /// Serialises fetches and remembers when the last one started.
    fetch_state: tokio::sync::Mutex<FetchState>,
    signature_checks: AtomicU64,
}

impl<S> std::fmt::Debug for JwtVerifier<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("options", &self.options)
            .field("keys", &self.keys.read().unwrap_or_else(PoisonError::into_inner).len())
            .field("cached_tokens", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl<S: JwksSource> JwtVerifier<S> {
    /// A verifier with no keys yet; call [`refresh`](Self::refresh) or
    /// [`install_keys`](Self::install_keys) before serving.
    pub fn new(source: S, options: VerifierOptions) -> Self {
        JwtVerifier {
            source,
            options,
            keys: RwLock::new(Arc::new(HashMap::new())),
            cache: DashMap::new(),
            fetch_state: tokio::sync::Mutex::new(FetchState::default()),
            signature_checks: AtomicU64::new(0),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &VerifierOptions {
        &self.options
    }

    /// Replaces the key set with the usable keys of `set`, returning how many
    /// there are. Cached tokens signed by a key that is gone are forgotten, so a
    /// withdrawn key stops working at once.
    pub fn install_keys(&self, set: &JwkSet) -> usize {
        let compiled = Arc::new(compile_key_set(set));
        let count = compiled.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&compiled);
        self.cache.retain(|_, entry| compiled.contains_key(&entry.kid));
        count
    }

    /// How many usable keys are loaded.
    pub fn key_count(&self) -> usize {
        self.current_keys().len()
    }

    /// Fetches and installs the key set now, returning how many keys are usable.
    pub async fn refresh(&self, now_unix: u64) -> Result<usize, JwksError> {
        let mut state = self.fetch_state.lock().await;
        self.fetch_and_install(&mut state, now_unix).await
    }

    /// Refreshes the key set when none was fetched yet or the last fetch is
    /// [`VerifierOptions::refresh_interval`] old, returning whether it fetched.
    pub async fn refresh_if_due(&self, now_unix: u64) -> Result<bool, JwksError> {
        let mut state = self.fetch_state.lock().await;
        let interval = self.options.refresh_interval.as_secs();
        let due = state.last_fetch_unix.is_none_or(|last| now_unix >= last.saturating_add(interval));
        if !due {
            return Ok(false);
        }
        self.fetch_and_install(&mut state, now_unix).await?;
        Ok(true)
    }

    /// How many signatures have been checked: a cache hit does not count.
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    /// How many verified tokens are cached.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Forgets cached tokens that have expired by `now_unix`, returning how many.
    pub fn purge_expired(&self, now_unix: u64) -> usize {
        let before = self.cache.len();
        self.cache.retain(|_, entry| now_unix < entry.valid_until);
        before.saturating_sub(self.cache.len())
    }

    /// Whether `token` was verified before and is still valid at `now_unix`, so
    /// checking it costs no signature verification.
    pub fn is_cached(&self, token: &str, now_unix: u64) -> bool {
        self.cache.get(token).is_some_and(|entry| now_unix < entry.valid_until)
    }

    /// Verifies `token` at `now_unix` (seconds since the Unix epoch) with the keys
    /// already loaded. Never fetches: see [`verify_or_refresh`](Self::verify_or_refresh).
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Arc<Principal>, AuthError> {
        if let Some(entry) = self.cache.get(token)
            && now_unix < entry.valid_until
        {
            return Ok(Arc::clone(&entry.principal));
        }
        if self.cache.remove_if(token, |_, entry| now_unix >= entry.valid_until).is_some() {
            return Err(AuthError::Expired);
        }

        let (kid, principal) = self.verify_uncached(token, now_unix)?;
        let principal = Arc::new(principal);
        self.remember(token, kid, &principal, now_unix);
        Ok(principal)
    }

    /// Like [`verify`](Self::verify), but when the `kid` is unknown refetches the
    /// key set (at most once per [`VerifierOptions::unknown_kid_refetch_interval`])
    /// and tries once more. A failed fetch leaves the answer at `UnknownKey`.
    pub async fn verify_or_refresh(&self, token: &str, now_unix: u64) -> Result<Arc<Principal>, AuthError> {
        match self.verify(token, now_unix) {
            Err(AuthError::UnknownKey) => {
                self.refetch_for_unknown_kid(now_unix).await;
                self.verify(token, now_unix)
            }
            outcome => outcome,
        }
    }

    async fn refetch_for_unknown_kid(&self, now_unix: u64) {
        let mut state = self.fetch_state.lock().await;
        let interval = self.options.unknown_kid_refetch_interval.as_secs();
        let recently = state.last_fetch_unix.is_some_and(|last| now_unix < last.saturating_add(interval));
        if recently {
            return;
        }
        // A failed fetch is already recorded in `last_fetch_unix` (so it is not
        // retried at once); the caller reports the kid as unknown either way.
        let _ = self.fetch_and_install(&mut state, now_unix).await;
    }

    async fn fetch_and_install(&self, state: &mut FetchState, now_unix: u64) -> Result<usize, JwksError> {
        // Recorded before fetching so that a failing source is rate-limited too.
        state.last_fetch_unix = Some(now_unix);
        let set = self.source.fetch().await?;
        Ok(self.install_keys(&set))
    }

    fn current_keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn verify_uncached(&self, token: &str, now_unix: u64) -> Result<(String, Principal), AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let header_json = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed)?;
        let header: RawHeader = serde_json::from_slice(&header_json).map_err(|_| AuthError::Malformed)?;
        let algorithm = allowed_algorithm(&header.alg).ok_or(AuthError::UnsupportedAlgorithm)?;
        if header.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        let kid = header.kid.ok_or(AuthError::Malformed)?;

        let keys = self.current_keys();
        let key = keys.get(&kid).ok_or(AuthError::UnknownKey)?;
        if key.algorithm != algorithm {
            return Err(AuthError::UnsupportedAlgorithm);
        }

        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation)
            .map_err(|error| map_library_error(error.kind()))?
            .claims;

        if now_unix >= claims.exp.saturating_add(self.options.leeway_secs) {
            return Err(AuthError::Expired);
        }
        if claims.iss.as_deref() != Some(self.options.issuer.as_str()) {
            return Err(AuthError::WrongIssuer);
        }
        if !claims.aud.as_ref().is_some_and(|aud| aud.contains(&self.options.audience)) {
            return Err(AuthError::WrongAudience);
        }
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| AuthError::Malformed)?;
        Ok((kid, Principal { user_id, roles: claims.roles, expires_at: claims.exp, token_id: claims.jti }))
    }

    fn remember(&self, token: &str, kid: String, principal: &Arc<Principal>, now_unix: u64) {
        if self.cache.len() >= self.options.cache_capacity {
            self.purge_expired(now_unix);
            if self.cache.len() >= self.options.cache_capacity {
                return;
            }
        }
        self.cache.insert(
            token.into(),
            CachedToken {
                principal: Arc::clone(principal),
                valid_until: principal.expires_at.saturating_add(self.options.leeway_secs),
                kid,
            },
        );
    }
}

fn map_library_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::UnsupportedAlgorithm,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::MissingRequiredClaim(_) => AuthError::Malformed,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        // Key-format and provider failures mean the token cannot be trusted.
        _ => AuthError::BadSignature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    const NOW: u64 = 1_800_000_000;
    const USER: &str = "0190f5c2-7a4e-7c3b-9d1e-2f3a4b5c6d7e";

    /// PKCS#8 v1 wrapping of a raw Ed25519 seed (RFC 8410).
    fn ed25519_pkcs8(seed: [u8; 32]) -> Vec<u8> {
        let mut der =
            vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        der.extend_from_slice(&seed);
        der
    }

    /// PKCS#8 wrapping of a P-256 private scalar (SEC1 ECPrivateKey without the
    /// optional public key).
    fn p256_pkcs8(scalar: [u8; 32]) -> Vec<u8> {
        let mut der = vec![
            0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
            0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20,
        ];
        der.extend_from_slice(&scalar);
        der
    }

    struct Signer {
        kid: String,
        algorithm: Algorithm,
        key: EncodingKey,
    }

    impl Signer {
        fn ed25519(kid: &str, seed: u8) -> Self {
            Signer {
                kid: kid.to_owned(),
                algorithm: Algorithm::EdDSA,
                key: EncodingKey::from_ed_der(&ed25519_pkcs8([seed; 32])),
            }
        }

        fn es256(kid: &str, scalar: u8) -> Self {
            Signer {
                kid: kid.to_owned(),
                algorithm: Algorithm::ES256,
                key: EncodingKey::from_ec_der(&p256_pkcs8([scalar; 32])),
            }
        }

        fn jwk(&self) -> Jwk {
            let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm).unwrap();
            jwk.common.key_id = Some(self.kid.clone());
            jwk
        }

        fn sign(&self, claims: &Value) -> String {
            let mut header = Header::new(self.algorithm);
            header.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&header, claims, &self.key).unwrap()
        }
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": USER,
            "roles": ["customer"],
            "exp": NOW + 900,
            "iat": NOW,
            "jti": "0190f5c2-0000-7000-8000-000000000001",
        })
    }

    fn claims_with(field: &str, value: Value) -> Value {
        let mut claims = claims();
        claims[field] = value;
        claims
    }

    fn jwks(signers: &[&Signer]) -> JwkSet {
        JwkSet { keys: signers.iter().map(|signer| signer.jwk()).collect() }
    }

    fn verifier(signers: &[&Signer]) -> JwtVerifier<StaticJwks> {
        let verifier = JwtVerifier::new(StaticJwks::default(), VerifierOptions::default());
        verifier.install_keys(&jwks(signers));
        verifier
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    /// A source whose key set tests change, counting fetches.
    #[derive(Default)]
    struct CountingSource {
        set: Mutex<JwkSet>,
        fetches: AtomicUsize,
        failing: std::sync::atomic::AtomicBool,
    }

    impl CountingSource {
        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    impl JwksSource for Arc<CountingSource> {
        async fn fetch(&self) -> Result<JwkSet, JwksError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(JwksError::Unavailable("identity is down".into()));
            }
            Ok(self.set.lock().unwrap().clone())
        }
    }

    #[test]
    fn accepts_a_valid_eddsa_token() {
        let signer = Signer::ed25519("k1", 7);
        let principal = verifier(&[&signer]).verify(&signer.sign(&claims()), NOW).unwrap();
        assert_eq!(principal.user_id(), Uuid::parse_str(USER).unwrap());
        assert_eq!(principal.roles(), ["customer".to_owned()]);
        assert!(principal.has_role("customer"));
        assert!(!principal.has_role("admin"));
        assert_eq!(principal.expires_at(), NOW + 900);
        assert_eq!(principal.token_id(), Some("0190f5c2-0000-7000-8000-000000000001"));
    }

    #[test]
    fn accepts_a_valid_es256_token() {
        let signer = Signer::es256("ec1", 0x11);
        let principal = verifier(&[&signer]).verify(&signer.sign(&claims()), NOW).unwrap();
        assert_eq!(principal.user_id(), Uuid::parse_str(USER).unwrap());
    }

    #[test]
    fn accepts_an_audience_list_containing_bazaar() {
        let signer = Signer::ed25519("k1", 7);
        let token = signer.sign(&claims_with("aud", json!(["other", "bazaar"])));
        assert!(verifier(&[&signer]).verify(&token, NOW).is_ok());
    }

    #[test]
    fn rejects_alg_none_before_looking_up_a_key() {
        let signer = Signer::ed25519("k1", 7);
        let v = verifier(&[&signer]);
        let token = format!("{}.{}.", b64(&json!({"alg": "none", "kid": "k1"})), b64(&claims()));
        assert_eq!(v.verify(&token, NOW), Err(AuthError::UnsupportedAlgorithm));
        assert_eq!(v.signature_checks(), 0);
    }

    #[test]
    fn rejects_hs256_even_when_signed_with_the_public_key() {
        let signer = Signer::ed25519("k1", 7);
        let v = verifier(&[&signer]);
        let public_x = match &signer.jwk().algorithm {
            AlgorithmParameters::OctetKeyPair(params) => params.x.clone(),
            other => panic!("unexpected key {other:?}"),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let token = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(public_x.as_bytes())).unwrap();
        assert_eq!(v.verify(&token, NOW), Err(AuthError::UnsupportedAlgorithm));
        assert_eq!(v.signature_checks(), 0);
    }

    #[test]
    fn rejects_an_algorithm_that_does_not_match_the_key() {
        let ed = Signer::ed25519("shared", 7);
        let ec = Signer::es256("shared", 0x11);
        let v = verifier(&[&ed]);
        assert_eq!(v.verify(&ec.sign(&claims()), NOW), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn rejects_a_tampered_payload() {
        let signer = Signer::ed25519("k1", 7);
        let token = signer.sign(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = b64(&claims_with("roles", json!(["admin"])));
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(verifier(&[&signer]).verify(&forged, NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn rejects_a_token_signed_by_another_key_with_the_same_kid() {
        let real = Signer::ed25519("k1", 7);
        let impostor = Signer::ed25519("k1", 8);
        assert_eq!(verifier(&[&real]).verify(&impostor.sign(&claims()), NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn rejects_an_expired_token() {
        let signer = Signer::ed25519("k1", 7);
        let v = verifier(&[&signer]);
        let token = signer.sign(&claims_with("exp", json!(NOW)));
        assert_eq!(v.verify(&token, NOW), Err(AuthError::Expired));
        assert!(v.verify(&token, NOW - 1).is_ok());
    }

    #[test]
    fn leeway_extends_expiry() {
        let signer = Signer::ed25519("k1", 7);
        let options = VerifierOptions { leeway_secs: 30, ..VerifierOptions::default() };
        let v = JwtVerifier::new(StaticJwks::default(), options);
        v.install_keys(&jwks(&[&signer]));
        let token = signer.sign(&claims_with("exp", json!(NOW)));
        assert!(v.verify(&token, NOW + 29).is_ok());
        assert_eq!(v.verify(&token, NOW + 30), Err(AuthError::Expired));
    }

    #[test]
    fn rejects_the_wrong_issuer() {
        let signer = Signer::ed25519("k1", 7);
        let v = verifier(&[&signer]);
        let token = signer.sign(&claims_with("iss", json!("someone-else")));
        assert_eq!(v.verify(&token, NOW), Err(AuthError::WrongIssuer));
        let mut no_iss = claims();
        no_iss.as_object_mut().unwrap().remove("iss");
        assert_eq!(v.verify(&signer.sign(&no_iss), NOW), Err(AuthError::WrongIssuer));
    }

    #[test]
    fn rejects_the_wrong_audience() {
        let signer = Signer::ed25519("k1", 7);
        let v = verifier(&[&signer]);
        let token = signer.sign(&claims_with("aud", json!("elsewhere")));
        assert_eq!(v.verify(&token, NOW), Err(AuthError::WrongAudience));
        let mut no_aud = claims();
        no_aud.as_object_mut().unwrap().remove("aud");
        assert_eq!(v.verify(&signer.sign(&no_aud), NOW), Err(AuthError::WrongAudience));
    }

    #[test]
    fn rejects_an_unknown_kid() {
        let known = Signer::ed25519("k1", 7);
        let other = Signer::ed25519("k2", 8);
        assert_eq!(verifier(&[&known]).verify(&other.sign(&claims()), NOW), Err(AuthError::UnknownKey));
    }

    #[test]
    fn rejects_malformed_tokens() {
        let signer = Signer::ed25519("k1", 7);
        let v = verifier(&[&signer]);
        for token in ["", "abc", "a.b", "a.b.c.d", "!!.!!.!!", &"a".repeat(10_000)] {
            assert_eq!(v.verify(token, NOW), Err(AuthError::Malformed), "{token:?}");
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = None;
        let no_kid = jsonwebtoken::encode(&header, &claims(), &signer.key).unwrap();
        assert_eq!(v.verify(&no_kid, NOW), Err(AuthError::Malformed));
        let bad_sub = signer.sign(&claims_with("sub", json!("not-a-uuid")));
        assert_eq!(v.verify(&bad_sub, NOW), Err(AuthError::Malformed));
        let no_exp = {
            let mut c = claims();
            c.as_object_mut().unwrap().remove("exp");
            signer.sign(&c)
        };
        assert_eq!(v.verify(&no_exp, NOW), Err(AuthError::Malformed));
    }

    #[test]
    fn rejects_tokens_with_critical_header_extensions() {
        let signer = Signer::ed25519("k1", 7);
        let token = signer.sign(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let header = b64(&json!({"alg": "EdDSA", "kid": "k1", "crit": ["exp"]}));
        let crit = format!("{header}.{}.{}", parts[1], parts[2]);
        assert_eq!(verifier(&[&signer]).verify(&crit, NOW), Err(AuthError::Malformed));
    }

    #[test]
    fn a_second_verify_of_the_same_token_hits_the_cache() {
        let signer = Signer::ed25519("k1", 7);
        let v = verifier(&[&signer]);
        let token = signer.sign(&claims());
        let first = v.verify(&token, NOW).unwrap();
        let second = v.verify(&token, NOW + 60).unwrap();
        assert_eq!(v.signature_checks(), 1);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(v.cached_tokens(), 1);
    }

    #[test]
    fn a_cached_token_is_never_served_after_it_expires() {
        let signer = Signer::ed25519("k1", 7);
        let v = verifier(&[&signer]);
        let token = signer.sign(&claims());
        v.verify(&token, NOW).unwrap();
        assert_eq!(v.verify(&token, NOW + 900), Err(AuthError::Expired));
        assert_eq!(v.verify(&token, NOW + 901), Err(AuthError::Expired));
        assert_eq!(v.cached_tokens(), 0);
    }

    #[test]
    fn failures_are_not_cached() {
        let signer = Signer::ed25519("k1", 7);
        let v = verifier(&[&signer]);
        let token = signer.sign(&claims_with("iss", json!("x")));
        let _ = v.verify(&token, NOW);
        let _ = v.verify(&token, NOW);
        assert_eq!(v.cached_tokens(), 0);
        assert_eq!(v.signature_checks(), 2);
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let signer = Signer::ed25519("k1", 7);
        let options = VerifierOptions { cache_capacity: 2, ..VerifierOptions::default() };
        let v = JwtVerifier::new(StaticJwks::default(), options);
        v.install_keys(&jwks(&[&signer]));
        for n in 0..5 {
            let token = signer.sign(&claims_with("jti", json!(format!("t{n}"))));
            assert!(v.verify(&token, NOW).is_ok());
        }
        assert_eq!(v.cached_tokens(), 2);
        // Once the cached tokens expire they make room for new ones.
        let late = signer.sign(&claims_with("exp", json!(NOW + 2000)));
        assert!(v.verify(&late, NOW + 1000).is_ok());
        assert_eq!(v.cached_tokens(), 1);
    }

    #[test]
    fn withdrawing_a_key_drops_its_cached_tokens() {
        let old = Signer::ed25519("old", 7);
        let new = Signer::ed25519("new", 8);
        let v = verifier(&[&old, &new]);
        let token = old.sign(&claims());
        v.verify(&token, NOW).unwrap();
        v.install_keys(&jwks(&[&new]));
        assert_eq!(v.verify(&token, NOW), Err(AuthError::UnknownKey));
    }

    #[test]
    fn parses_a_jwks_document_and_skips_unusable_keys() {
        let signer = Signer::ed25519("k1", 7);
        let x = match &signer.jwk().algorithm {
            AlgorithmParameters::OctetKeyPair(params) => params.x.clone(),
            other => panic!("unexpected key {other:?}"),
        };
        let document = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"},
            {"kty": "OKP", "crv": "Ed25519", "x": x},
            {"kty": "OKP", "crv": "Ed25519", "x": "c2hvcnQ", "kid": "short"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "liar", "alg": "ES256"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
        ]});
        let set: JwkSet = serde_json::from_value(document).unwrap();
        let v = JwtVerifier::new(StaticJwks::default(), VerifierOptions::default());
        assert_eq!(v.install_keys(&set), 1);
        assert!(v.verify(&signer.sign(&claims()), NOW).is_ok());
    }

    #[tokio::test]
    async fn refresh_loads_keys_from_the_source() {
        let signer = Signer::ed25519("k1", 7);
        let v = JwtVerifier::new(StaticJwks(jwks(&[&signer])), VerifierOptions::default());
        assert_eq!(v.key_count(), 0);
        assert_eq!(v.refresh(NOW).await.unwrap(), 1);
        assert!(v.verify(&signer.sign(&claims()), NOW).is_ok());
    }

    #[tokio::test]
    async fn an_unknown_kid_triggers_one_rate_limited_refetch() {
        let current = Signer::ed25519("k1", 7);
        let rotated = Signer::ed25519("k2", 8);
        let source = Arc::new(CountingSource::default());
        *source.set.lock().unwrap() = jwks(&[&current]);
        let v = JwtVerifier::new(Arc::clone(&source), VerifierOptions::default());
        v.refresh(NOW).await.unwrap();
        assert_eq!(source.fetches(), 1);

        // The identity service rotates; the gateway has not refreshed yet.
        *source.set.lock().unwrap() = jwks(&[&current, &rotated]);
        let token = rotated.sign(&claims());
        // Within the interval of the last fetch: no refetch.
        assert_eq!(v.verify_or_refresh(&token, NOW + 5).await, Err(AuthError::UnknownKey));
        assert_eq!(source.fetches(), 1);
        // After it: one refetch, and the token verifies.
        assert!(v.verify_or_refresh(&token, NOW + 10).await.is_ok());
        assert_eq!(source.fetches(), 2);
    }

    #[tokio::test]
    async fn a_flood_of_random_kids_fetches_at_most_once_per_interval() {
        let signer = Signer::ed25519("k1", 7);
        let source = Arc::new(CountingSource::default());
        *source.set.lock().unwrap() = jwks(&[&signer]);
        let v = JwtVerifier::new(Arc::clone(&source), VerifierOptions::default());
        for n in 0..100u64 {
            let stranger = Signer::ed25519(&format!("random-{n}"), 9);
            let outcome = v.verify_or_refresh(&stranger.sign(&claims()), NOW + n / 10).await;
            assert_eq!(outcome, Err(AuthError::UnknownKey));
        }
        // Times NOW..NOW+9 with a 10 s interval: exactly one fetch.
        assert_eq!(source.fetches(), 1);
    }

    #[tokio::test]
    async fn a_failing_source_is_not_retried_within_the_interval() {
        let signer = Signer::ed25519("k1", 7);
        let source = Arc::new(CountingSource::default());
        source.failing.store(true, Ordering::SeqCst);
        let v = JwtVerifier::new(Arc::clone(&source), VerifierOptions::default());
        let token = signer.sign(&claims());
        assert_eq!(v.verify_or_refresh(&token, NOW).await, Err(AuthError::UnknownKey));
        assert_eq!(v.verify_or_refresh(&token, NOW + 1).await, Err(AuthError::UnknownKey));
        assert_eq!(source.fetches(), 1);
        assert!(v.refresh(NOW + 2).await.is_err());
    }

    #[tokio::test]
    async fn periodic_refresh_runs_only_when_due() {
        let source = Arc::new(CountingSource::default());
        let v = JwtVerifier::new(Arc::clone(&source), VerifierOptions::default());
        assert!(v.refresh_if_due(NOW).await.unwrap());
        assert!(!v.refresh_if_due(NOW + 299).await.unwrap());
        assert!(v.refresh_if_due(NOW + 300).await.unwrap());
        assert_eq!(source.fetches(), 2);
    }

    #[tokio::test]
    async fn known_kids_never_trigger_a_fetch() {
        let signer = Signer::ed25519("k1", 7);
        let source = Arc::new(CountingSource::default());
        *source.set.lock().unwrap() = jwks(&[&signer]);
        let v = JwtVerifier::new(Arc::clone(&source), VerifierOptions::default());
        v.refresh(NOW).await.unwrap();
        let bad = signer.sign(&claims_with("aud", json!("x")));
        assert_eq!(v.verify_or_refresh(&bad, NOW + 100).await, Err(AuthError::WrongAudience));
        assert_eq!(source.fetches(), 1);
    }

    #[tokio::test]
    async fn http_source_fetches_a_jwks_document() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let signer = Signer::ed25519("k1", 7);
        let body = serde_json::to_string(&jwks(&[&signer])).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let serve = async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
        };
        let source = HttpJwksSource::new(
            chassis::client::HttpClient::default(),
            vec![format!("http://{address}/.well-known/jwks.json")],
        );
        let v = JwtVerifier::new(source, VerifierOptions::default());
        let ((), fetched) = tokio::join!(serve, v.refresh(NOW));
        assert_eq!(fetched.unwrap(), 1);
        assert!(v.verify(&signer.sign(&claims()), NOW).is_ok());
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(AuthError::Expired.code(), "token_expired");
        assert_eq!(AuthError::UnsupportedAlgorithm.code(), "token_algorithm_unsupported");
    }
}
