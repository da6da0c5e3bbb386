//! The email address a user signs in with.
//!
//! The address is the login name, so two spellings of one mailbox must not become
//! two accounts: it is trimmed and lowercased before it is checked or stored.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A syntactically valid, normalised (trimmed, lowercased) email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

/// Why a string is not a usable email address. The `Display` text completes a
/// sentence that starts with "email" and is meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Nothing but whitespace was given.
    #[error("must not be empty")]
    Empty,
    /// The whole address is longer than SMTP allows.
    #[error("must be at most {max} characters long", max = Email::MAX_LEN)]
    TooLong,
    /// There is no `@` at all.
    #[error("must contain an @")]
    MissingAt,
    /// There is more than one `@`.
    #[error("must contain exactly one @")]
    SeveralAts,
    /// Nothing stands before the `@`.
    #[error("must have a name before the @")]
    EmptyLocalPart,
    /// The part before the `@` is longer than SMTP allows.
    #[error("must have at most {max} characters before the @", max = Email::MAX_LOCAL_LEN)]
    LocalPartTooLong,
    /// The part before the `@` has a character or dot placement that is not allowed.
    #[error("has characters before the @ that an address cannot contain")]
    InvalidLocalPart,
    /// The domain has no dot, so it cannot be a public mail domain.
    #[error("must have a domain with a dot after the @ (like example.com)")]
    DomainWithoutDot,
    /// A domain label is empty, too long, or has characters other than letters, digits and `-`.
    #[error("must have a domain made of letters, digits, dots and hyphens")]
    InvalidDomain,
}

impl Email {
    /// The longest address accepted, in characters (RFC 5321's path limit less the brackets).
    pub const MAX_LEN: usize = 254;
    /// The longest part before the `@` accepted, in characters (RFC 5321).
    pub const MAX_LOCAL_LEN: usize = 64;
    /// The longest single domain label accepted (RFC 1035).
    const MAX_LABEL_LEN: usize = 63;

    /// Normalises `raw` (trim, lowercase) and checks it is a plausible address.
    ///
    /// The check is deliberately narrower than RFC 5322 (no quoted local parts,
    /// no IP literals, ASCII only): every address it accepts can receive mail,
    /// and the ones it refuses are almost always typing mistakes.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let normalised = raw.trim().to_lowercase();
        if normalised.is_empty() {
            return Err(EmailError::Empty);
        }
        if normalised.chars().count() > Self::MAX_LEN {
            return Err(EmailError::TooLong);
        }
        let mut parts = normalised.split('@');
        let (local, domain) = match (parts.next(), parts.next(), parts.next()) {
            (Some(local), Some(domain), None) => (local, domain),
            (Some(_), None, _) | (None, _, _) => return Err(EmailError::MissingAt),
            (Some(_), Some(_), Some(_)) => return Err(EmailError::SeveralAts),
        };
        check_local_part(local)?;
        check_domain(domain)?;
        Ok(Self(normalised))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, domain)| domain)
    }
}

fn check_local_part(local: &str) -> Result<(), EmailError> {
    if local.is_empty() {
        return Err(EmailError::EmptyLocalPart);
    }
    if local.chars().count() > Email::MAX_LOCAL_LEN {
        return Err(EmailError::LocalPartTooLong);
    }
    // RFC 5322 dot-atom: atext runs separated by single dots.
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let dots_well_placed = !local.starts_with('.') && !local.ends_with('.') && !local.contains("..");
    if !dots_well_placed || !local.chars().all(|c| c == '.' || atext(c)) {
        return Err(EmailError::InvalidLocalPart);
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), EmailError> {
    if !domain.contains('.') {
        return Err(EmailError::DomainWithoutDot);
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= Email::MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !domain.split('.').all(label_ok) {
        return Err(EmailError::InvalidDomain);
    }
    Ok(())
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl std::str::FromStr for Email {
    type Err = EmailError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw)
    }
}

impl From<Email> for String {
    fn from(email: Email) -> Self {
        email.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_a_plain_address_and_lowercases_it() {
        let email = Email::parse("  Ada.Lovelace+shop@Example.CO.uk \n").unwrap();
        assert_eq!(email.as_str(), "ada.lovelace+shop@example.co.uk");
        assert_eq!(email.domain(), "example.co.uk");
    }

    #[test]
    fn rejects_email_without_at_sign() {
        assert_eq!(Email::parse("ada.example.com"), Err(EmailError::MissingAt));
    }

    #[test]
    fn rejects_email_with_two_at_signs() {
        assert_eq!(Email::parse("ada@lovelace@example.com"), Err(EmailError::SeveralAts));
    }

    #[test]
    fn rejects_blank_email() {
        assert_eq!(Email::parse("   "), Err(EmailError::Empty));
    }

    #[test]
    fn rejects_empty_local_part() {
        assert_eq!(Email::parse("@example.com"), Err(EmailError::EmptyLocalPart));
    }

    #[test]
    fn rejects_local_part_longer_than_64() {
        let raw = format!("{}@example.com", "a".repeat(65));
        assert_eq!(Email::parse(&raw), Err(EmailError::LocalPartTooLong));
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(64))).is_ok());
    }

    #[test]
    fn rejects_misplaced_dots_and_spaces_in_local_part() {
        for raw in [".ada@example.com", "ada.@example.com", "a..da@example.com", "a da@example.com"] {
            assert_eq!(Email::parse(raw), Err(EmailError::InvalidLocalPart), "{raw}");
        }
    }

    #[test]
    fn rejects_nul_and_control_characters() {
        for raw in ["a\u{0}@example.com", "ada@exam\u{0}ple.com", "a\tda@example.com", "ada@example.com\u{1b}[0m"] {
            assert!(Email::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn rejects_domain_without_dot() {
        assert_eq!(Email::parse("ada@localhost"), Err(EmailError::DomainWithoutDot));
    }

    #[test]
    fn rejects_bad_domain_labels() {
        for raw in [
            "ada@example..com",
            "ada@-example.com",
            "ada@example-.com",
            "ada@exa_mple.com",
            "ada@example.com.",
            "ada@bücher.de",
        ] {
            assert_eq!(Email::parse(raw), Err(EmailError::InvalidDomain), "{raw}");
        }
    }

    #[test]
    fn rejects_address_longer_than_254() {
        let domain = format!("{}.{}.{}.{}.com", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(60));
        let raw = format!("ada@{domain}");
        assert!(raw.len() > Email::MAX_LEN);
        assert_eq!(Email::parse(&raw), Err(EmailError::TooLong));
    }

    #[test]
    fn deserialising_goes_through_the_same_rules() {
        let email: Email = serde_json::from_str(r#""ADA@Example.com""#).unwrap();
        assert_eq!(email.as_str(), "ada@example.com");
        assert!(serde_json::from_str::<Email>(r#""not-an-email""#).is_err());
        assert_eq!(serde_json::to_string(&email).unwrap(), r#""ada@example.com""#);
    }

    proptest! {
        #[test]
        fn valid_addresses_round_trip_lowercased(
            local in "[a-zA-Z0-9_+-]{1,20}(\\.[a-zA-Z0-9_+-]{1,10})?",
            domain in "[a-zA-Z0-9]{1,20}(-[a-zA-Z0-9]{1,10})?\\.[a-zA-Z]{2,8}",
            pad in "[ \t]{0,3}",
        ) {
            let raw = format!("{pad}{local}@{domain}{pad}");
            let email = Email::parse(&raw).unwrap();
            prop_assert_eq!(email.as_str(), format!("{local}@{domain}").to_lowercase());
            // Normalising is idempotent: parsing the stored form gives it back.
            prop_assert_eq!(Email::parse(email.as_str()).unwrap(), email);
        }

        #[test]
        fn strings_without_at_sign_are_rejected(raw in "[^@]*") {
            prop_assert!(Email::parse(&raw).is_err());
        }

        #[test]
        fn accepted_addresses_respect_the_length_limits(raw in "[a-z.]{0,70}@[a-z.-]{0,200}") {
            if let Ok(email) = Email::parse(&raw) {
                let (local, _) = email.as_str().split_once('@').unwrap();
                prop_assert!(!local.is_empty() && local.len() <= Email::MAX_LOCAL_LEN);
                prop_assert!(email.as_str().len() <= Email::MAX_LEN);
            }
        }
    }
}
