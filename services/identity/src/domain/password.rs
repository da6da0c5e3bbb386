//! Passwords as the domain sees them: a plain candidate that passed the
//! password policy, and the stored hash of one.
//!
//! Neither type prints its content: both end up near logs and error reports,
//! where a password or a hash (which can be cracked offline) must never appear.

use std::fmt;

/// A plain password offered at registration that satisfies the policy.
///
/// The policy follows NIST SP 800-63B in spirit: length matters most, so the
/// minimum is long; composition rules are kept to one letter plus one non-letter;
/// and the commonest passwords are refused outright. Login does not use this
/// type: a stored account is checked against its hash whatever today's policy is.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

/// One way a candidate password breaks the policy. The `Display` text completes
/// a sentence that starts with "password" and is meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Fewer characters than the policy's minimum.
    #[error("must be at least {min} characters long", min = Password::MIN_CHARS)]
    TooShort,
    /// More characters than the policy's maximum.
    #[error("must be at most {max} characters long", max = Password::MAX_CHARS)]
    TooLong,
    /// No letter at all.
    #[error("must contain at least one letter")]
    NoLetter,
    /// Nothing but letters (and spaces).
    #[error("must contain at least one digit or symbol")]
    NoDigitOrSymbol,
    /// One character repeated throughout.
    #[error("must not be a single character repeated")]
    OneRepeatedCharacter,
    /// One of the passwords attackers try first.
    #[error("is one of the most common passwords; choose another")]
    TooCommon,
}

/// The passwords that credential-stuffing lists try first, among those long
/// enough to pass the other rules. Compared case-insensitively.
const COMMONEST: &[&str] = &[
    "password123",
    "password1!",
    "password12",
    "password1234",
    "passw0rd123",
    "qwertyuiop",
    "qwerty1234",
    "qwerty12345",
    "qwerty123456",
    "1q2w3e4r5t",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "1234567890",
    "0987654321",
    "12345678910",
    "abc1234567",
    "abcd123456",
    "iloveyou12",
    "iloveyou123",
    "letmein123",
    "welcome123",
    "admin12345",
    "admin123456",
    "changeme123",
    "football123",
    "baseball123",
    "sunshine123",
    "princess123",
    "monkey12345",
    "dragon12345",
    "trustno1234",
];

impl Password {
    /// The fewest characters a password may have.
    pub const MIN_CHARS: usize = 10;
    /// The most characters a password may have; it bounds the hashing work an
    /// attacker can make one request cost.
    pub const MAX_CHARS: usize = 128;

    /// Accepts `raw` as it is (passwords are not trimmed) if it meets the policy,
    /// or returns the first rule it breaks.
    pub fn parse(raw: &str) -> Result<Self, PasswordError> {
        match Self::violations(raw).into_iter().next() {
            Some(first) => Err(first),
            None => Ok(Self(raw.to_owned())),
        }
    }

    /// Every rule `raw` breaks, in a fixed order, so a form can show them all at once.
    pub fn violations(raw: &str) -> Vec<PasswordError> {
        let mut broken = Vec::new();
        let length = raw.chars().count();
        if length < Self::MIN_CHARS {
            broken.push(PasswordError::TooShort);
        }
        if length > Self::MAX_CHARS {
            broken.push(PasswordError::TooLong);
        }
        if !raw.chars().any(char::is_alphabetic) {
            broken.push(PasswordError::NoLetter);
        }
        if !raw.chars().any(|c| !c.is_alphabetic() && !c.is_whitespace()) {
            broken.push(PasswordError::NoDigitOrSymbol);
        }
        let mut chars = raw.chars();
        if let Some(first) = chars.next()
            && chars.all(|c| c == first)
        {
            broken.push(PasswordError::OneRepeatedCharacter);
        }
        if length <= Self::MAX_CHARS && COMMONEST.iter().any(|common| common.eq_ignore_ascii_case(raw)) {
            broken.push(PasswordError::TooCommon);
        }
        broken
    }

    /// The plain text, for hashing. Keep the borrow short and never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A password hash in PHC string format (`$argon2id$v=19$m=...`), as stored.
///
/// It is deliberately not `Serialize`: a hash belongs in the store and nowhere
/// else, and leaving the trait out means no response type can carry one by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

/// A stored value that cannot be a PHC-format password hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a password hash must be a PHC string starting with '$'")]
pub struct InvalidPasswordHash;

impl PasswordHash {
    /// Wraps a PHC string (from the hasher or the store).
    ///
    /// Only the outline is checked here; a string that looks right but does not
    /// parse simply never verifies.
    pub fn from_phc(phc: impl Into<String>) -> Result<Self, InvalidPasswordHash> {
        let phc = phc.into();
        let outline_ok = phc.len() > 1 && phc.starts_with('$') && phc.bytes().all(|b| b.is_ascii_graphic());
        if outline_ok { Ok(Self(phc)) } else { Err(InvalidPasswordHash) }
    }

    /// The PHC string, for storing.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_a_long_password_with_letters_and_digits() {
        let password = Password::parse("correct horse 42").unwrap();
        assert_eq!(password.expose(), "correct horse 42");
    }

    #[test]
    fn keeps_surrounding_spaces_because_they_are_part_of_the_secret() {
        assert_eq!(Password::parse(" tr0ub4dor&3 ").unwrap().expose(), " tr0ub4dor&3 ");
    }

    #[test]
    fn rejects_password_shorter_than_ten_characters() {
        assert_eq!(Password::parse("abc12345!"), Err(PasswordError::TooShort));
    }

    #[test]
    fn counts_characters_not_bytes() {
        // Nine two-byte letters and a digit: ten characters, nineteen bytes.
        assert!(Password::parse("ééééééééé1").is_ok());
        assert_eq!(Password::parse("éééééééé1"), Err(PasswordError::TooShort));
    }

    #[test]
    fn rejects_password_longer_than_128_characters() {
        let raw = format!("a1{}", "b".repeat(127));
        assert_eq!(Password::violations(&raw), vec![PasswordError::TooLong]);
        assert!(Password::parse(&format!("a1{}", "b".repeat(126))).is_ok());
    }

    #[test]
    fn rejects_password_without_a_letter() {
        assert_eq!(Password::parse("1234567899!"), Err(PasswordError::NoLetter));
    }

    #[test]
    fn rejects_password_of_letters_only() {
        assert_eq!(Password::parse("correct horse battery"), Err(PasswordError::NoDigitOrSymbol));
    }

    #[test]
    fn a_symbol_counts_as_well_as_a_digit() {
        assert!(Password::parse("correct-horse-battery").is_ok());
    }

    #[test]
    fn rejects_one_character_repeated() {
        assert_eq!(
            Password::violations("!!!!!!!!!!!!"),
            vec![PasswordError::NoLetter, PasswordError::OneRepeatedCharacter]
        );
    }

    #[test]
    fn rejects_the_commonest_passwords_in_any_case() {
        for raw in ["password123", "PassWord123", "qwerty123456", "1q2w3e4r5t"] {
            assert_eq!(Password::parse(raw), Err(PasswordError::TooCommon), "{raw}");
        }
        // These two break other rules too; they are refused either way.
        assert!(Password::violations("qwertyuiop").contains(&PasswordError::TooCommon));
        assert!(Password::violations("1234567890").contains(&PasswordError::TooCommon));
    }

    #[test]
    fn lists_every_broken_rule_at_once() {
        assert_eq!(
            Password::violations("aaaa"),
            vec![PasswordError::TooShort, PasswordError::NoDigitOrSymbol, PasswordError::OneRepeatedCharacter,]
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let password = Password::parse("s3cret-passphrase").unwrap();
        assert_eq!(format!("{password:?}"), "Password(***)");
        let hash = PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$abc$def").unwrap();
        assert_eq!(format!("{hash:?}"), "PasswordHash(***)");
    }

    #[test]
    fn password_hash_must_look_like_a_phc_string() {
        assert!(PasswordHash::from_phc("").is_err());
        assert!(PasswordHash::from_phc("plaintext").is_err());
        assert!(PasswordHash::from_phc("$argon2id$ with space").is_err());
    }

    proptest! {
        #[test]
        fn accepted_passwords_meet_every_rule(raw in "\\PC{0,140}") {
            if let Ok(password) = Password::parse(&raw) {
                let n = password.expose().chars().count();
                prop_assert!((Password::MIN_CHARS..=Password::MAX_CHARS).contains(&n));
                prop_assert!(raw.chars().any(char::is_alphabetic));
                prop_assert!(raw.chars().any(|c| !c.is_alphabetic() && !c.is_whitespace()));
            }
        }

        #[test]
        fn letters_plus_a_digit_of_policy_length_are_accepted(
            letters in "[a-zA-Z]{9,100}",
            digit in "[0-9]",
        ) {
            let raw = format!("{letters}{digit}");
            prop_assume!(!COMMONEST.iter().any(|c| c.eq_ignore_ascii_case(&raw)));
            prop_assert!(Password::parse(&raw).is_ok());
        }
    }
}
