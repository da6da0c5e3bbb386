//! The name a user is shown by, in greetings, order confirmations and admin lists.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A user's display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

/// Why a string cannot be a display name. The `Display` text completes a
/// sentence that starts with "name" and is meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisplayNameError {
    /// Nothing but whitespace was given.
    #[error("must not be empty")]
    Empty,
    /// More characters than allowed, after trimming.
    #[error("must be at most {max} characters long", max = DisplayName::MAX_CHARS)]
    TooLong,
    /// A control character (newline, tab, escape, ...) would break the places
    /// the name is printed: emails, log lines, terminal tables.
    #[error("must not contain control characters such as newlines or tabs")]
    ControlCharacter,
}

impl DisplayName {
    /// The most characters a display name may have.
    pub const MAX_CHARS: usize = 100;

    /// Trims `raw` and checks it.
    pub fn parse(raw: &str) -> Result<Self, DisplayNameError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(DisplayNameError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(DisplayNameError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(DisplayNameError::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as given, trimmed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DisplayName {
    type Error = DisplayNameError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<DisplayName> for String {
    fn from(name: DisplayName) -> Self {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trims_surrounding_whitespace() {
        assert_eq!(DisplayName::parse("  Ada Lovelace \t").unwrap().as_str(), "Ada Lovelace");
    }

    #[test]
    fn rejects_blank_name() {
        assert_eq!(DisplayName::parse(" \n "), Err(DisplayNameError::Empty));
    }

    #[test]
    fn rejects_name_longer_than_100_characters() {
        assert_eq!(DisplayName::parse(&"x".repeat(101)), Err(DisplayNameError::TooLong));
        assert!(DisplayName::parse(&"ü".repeat(100)).is_ok());
    }

    #[test]
    fn rejects_control_characters_inside_the_name() {
        assert_eq!(DisplayName::parse("Ada\nLovelace"), Err(DisplayNameError::ControlCharacter));
        assert_eq!(DisplayName::parse("Ada\u{1b}[31m"), Err(DisplayNameError::ControlCharacter));
    }

    proptest! {
        #[test]
        fn printable_names_are_kept_trimmed(name in "[^\\p{Cc}\\s][^\\p{Cc}]{0,98}[^\\p{Cc}\\s]") {
            let parsed = DisplayName::parse(&format!("  {name} ")).unwrap();
            prop_assert_eq!(parsed.as_str(), name.trim());
        }

        #[test]
        fn accepted_names_are_within_the_rules(raw in "\\PC{0,120}|.{0,20}") {
            if let Ok(name) = DisplayName::parse(&raw) {
                let n = name.as_str().chars().count();
                prop_assert!((1..=DisplayName::MAX_CHARS).contains(&n));
                prop_assert!(!name.as_str().chars().any(char::is_control));
                prop_assert_eq!(name.as_str(), name.as_str().trim());
            }
        }
    }
}
