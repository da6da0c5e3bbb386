//! Password hashing with Argon2id.
//!
//! Every function here is deliberately slow (tens of milliseconds of CPU and
//! about 19 MiB of memory per call): that cost is what makes a stolen hash
//! expensive to crack. Callers must therefore run them on tokio's blocking pool
//! (`tokio::task::spawn_blocking`, behind the bounded pool that doubles as a
//! bulkhead), never directly on an async worker thread, where one login would
//! stall every other request sharing that thread.

use argon2::password_hash::{PasswordHash as PhcHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::TryRngCore;
use rand::rngs::OsRng;

use crate::domain::{Password, PasswordHash};

/// Argon2id memory cost in KiB: OWASP's minimum recommended configuration.
pub const MEMORY_KIB: u32 = 19_456;
/// Argon2id passes over memory.
pub const ITERATIONS: u32 = 2;
/// Argon2id lanes; one, because parallelism is spent on concurrent requests instead.
pub const PARALLELISM: u32 = 1;

const PARAMS: Params = match Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None) {
    Ok(params) => params,
    // Evaluated at compile time: bad constants fail the build, not a request.
    Err(_) => panic!("invalid Argon2 parameters"),
};

/// The hash of 32 random bytes that were thrown away, made with exactly
/// [`PARAMS`], so verifying against it costs what verifying a real account's
/// hash costs and no submitted password can match it.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$YmF6YWFyLWR1bW15LXNhbHQ$2iKJv80byZVIuQHFB7Ej6c06WMPmSC1ffMG3VNgzKxw";

/// Hashing could not be done; the message is for logs only.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The operating system's random source failed while making a salt.
    #[error("cannot read random bytes for a salt: {0}")]
    Salt(String),
    /// Argon2 refused the input or the parameters.
    #[error("cannot hash the password: {0}")]
    Argon2(String),
}

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
}

/// Hashes a password that passed the policy, with a fresh random salt, into a
/// PHC string that records the parameters used. CPU-heavy: call it on the
/// blocking pool.
pub fn hash_password(password: &Password) -> Result<PasswordHash, HashError> {
    let mut salt_bytes = [0u8; 16];
    OsRng.try_fill_bytes(&mut salt_bytes).map_err(|e| HashError::Salt(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError::Salt(e.to_string()))?;
    let phc =
        hasher().hash_password(password.expose().as_bytes(), &salt).map_err(|e| HashError::Argon2(e.to_string()))?;
    PasswordHash::from_phc(phc.to_string()).map_err(|e| HashError::Argon2(e.to_string()))
}

/// Whether `plain` is the password behind `hash`. A hash that does not parse
/// never matches. The parameters are read from the hash itself, so accounts
/// hashed under older parameters still verify. CPU-heavy: call it on the
/// blocking pool.
pub fn verify_password(plain: &str, hash: &PasswordHash) -> bool {
    match PhcHash::new(hash.as_str()) {
        Ok(parsed) => hasher().verify_password(plain.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Spends the time of one [`verify_password`] and discards the result.
///
/// Login calls this when the submitted email has no account. Without it, a
/// wrong email would answer in microseconds and a wrong password in tens of
/// milliseconds, and that difference alone tells an attacker which addresses
/// are registered, whatever the identical 401 bodies say. CPU-heavy: call it on
/// the blocking pool.
pub fn dummy_verify(plain: &str) {
    if let Ok(parsed) = PhcHash::new(DUMMY_HASH) {
        // black_box keeps the optimiser from dropping work whose result is unused.
        std::hint::black_box(hasher().verify_password(plain.as_bytes(), &parsed).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_own_password_and_no_other() {
        let password = Password::parse("correct-horse-42").unwrap();
        let hash = hash_password(&password).unwrap();

        assert!(hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", hash.as_str());
        assert!(verify_password("correct-horse-42", &hash));
        assert!(!verify_password("correct-horse-43", &hash));
        assert!(!verify_password("", &hash));
    }

    #[test]
    fn a_malformed_hash_never_verifies() {
        let hash = PasswordHash::from_phc("$argon2id$not-a-real-hash").unwrap();
        assert!(!verify_password("anything", &hash));
    }

    #[test]
    fn dummy_hash_costs_what_a_real_hash_costs() {
        // Same algorithm and parameters as a fresh hash, or the timing would differ.
        let parsed = PhcHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!((params.m_cost(), params.t_cost(), params.p_cost()), (MEMORY_KIB, ITERATIONS, PARALLELISM));
        assert_eq!(parsed.hash.map(|h| h.len()), Some(Params::DEFAULT_OUTPUT_LEN));
    }
}
