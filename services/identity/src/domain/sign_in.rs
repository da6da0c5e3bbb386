//! The key sign-in attempts are counted under, for the throttle, and the id
//! that names one attempt.
//!
//! Attempts are counted per submitted email whether or not an account has it,
//! so the key is derived from whatever string the client sent, valid address or
//! not. Deriving it as a UUIDv5 of the normalised string makes every key the
//! same 36 harmless ASCII characters: a megabyte of input or a NUL byte (which
//! PostgreSQL text cannot hold) becomes an ordinary key, and the table of
//! attempts holds no addresses in the clear. It is a pseudonym, not a secret: a
//! guessed address can be checked against it.

use std::fmt;

use uuid::Uuid;

/// The UUIDv5 namespace of sign-in attempt keys. It is itself the UUIDv5 of
/// `https://bazaar.example/identity/sign-in-attempts` in the URL namespace;
/// changing it forgets every attempt counted so far.
pub const SIGN_IN_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x05e6_242a_2cc2_5f4f_ad95_6fbb_7df7_78dd);

/// What sign-in attempts for one submitted email are counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignInKey(Uuid);

impl SignInKey {
    /// The key of `submitted`, normalised as [`super::Email::parse`] normalises
    /// (trimmed, lowercased), so every spelling of one address shares a count.
    /// Any string has a key, including ones that are no address at all.
    pub fn for_submitted_email(submitted: &str) -> Self {
        Self(Uuid::new_v5(&SIGN_IN_KEY_NAMESPACE, submitted.trim().to_lowercase().as_bytes()))
    }

    /// The key as a UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

/// The hyphenated UUID: 36 ASCII characters, as stored.
impl fmt::Display for SignInKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// One recorded sign-in attempt: what a sign-in that succeeds withdraws, so
/// that it takes back its own attempt and leaves every other one counted
/// (including those of parallel guesses still being verified).
///
/// A UUIDv7, so attempts recorded one after another get increasing ids and
/// index inserts stay local.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(Uuid);

impl AttemptId {
    /// A fresh id, never given to another attempt.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id as a UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for AttemptId {
    fn default() -> Self {
        Self::new()
    }
}

/// The hyphenated UUID: 36 ASCII characters, as stored.
impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;
    use proptest::prelude::*;

    #[test]
    fn spellings_of_one_address_share_a_key() {
        let key = SignInKey::for_submitted_email("ada@example.com");
        assert_eq!(SignInKey::for_submitted_email("  ADA@Example.com\n"), key);
        let parsed = Email::parse(" Ada@EXAMPLE.com ").unwrap();
        assert_eq!(SignInKey::for_submitted_email(parsed.as_str()), key);
    }

    #[test]
    fn different_addresses_get_different_keys() {
        assert_ne!(
            SignInKey::for_submitted_email("ada@example.com"),
            SignInKey::for_submitted_email("eve@example.com")
        );
    }

    #[test]
    fn a_nul_byte_gives_an_ordinary_key_distinct_from_the_address_without_it() {
        let key = SignInKey::for_submitted_email("a\u{0}@example.com");
        let text = key.to_string();
        assert_eq!(text.len(), 36);
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "{text}");
        assert_ne!(key, SignInKey::for_submitted_email("a@example.com"));
    }

    #[test]
    fn keys_do_not_contain_the_address() {
        let key = SignInKey::for_submitted_email("ada@example.com").to_string();
        assert!(!key.contains("ada"), "{key}");
    }

    #[test]
    fn the_namespace_is_the_documented_one() {
        let derived = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://bazaar.example/identity/sign-in-attempts");
        assert_eq!(SIGN_IN_KEY_NAMESPACE, derived);
    }

    #[test]
    fn attempt_ids_are_distinct_and_stored_as_36_characters() {
        let (first, second) = (AttemptId::new(), AttemptId::new());
        assert_ne!(first, second);
        assert_eq!(first.to_string().len(), 36);
        assert_eq!(first.as_uuid().get_version_num(), 7);
    }

    proptest! {
        #[test]
        fn any_input_gives_a_36_character_ascii_key(raw in "\\PC{0,300}|[\\x00-\\x1f]{0,20}") {
            let text = SignInKey::for_submitted_email(&raw).to_string();
            prop_assert_eq!(text.len(), 36);
            prop_assert!(text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'));
        }

        #[test]
        fn padding_and_case_do_not_change_the_key(raw in "[a-zA-Z0-9@.]{1,40}", pad in "[ \t\n]{0,3}") {
            prop_assert_eq!(
                SignInKey::for_submitted_email(&format!("{pad}{}{pad}", raw.to_uppercase())),
                SignInKey::for_submitted_email(&raw)
            );
        }
    }
}
