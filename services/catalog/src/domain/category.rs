//! Categories: the slug that products and URLs refer to, and its display name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// A category's URL-safe identifier, e.g. `electronics`: 2 to 40 characters of
/// `a-z`, `0-9` and `-`, neither starting nor ending with `-`.
///
/// Input is trimmed and lower-cased before it is checked, so `?category=Books`
/// finds the `books` category.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, example = "electronics")]
pub struct CategorySlug(String);

impl CategorySlug {
    /// The fewest characters a slug may have.
    pub const MIN_LEN: usize = 2;
    /// The most characters a slug may have.
    pub const MAX_LEN: usize = 40;

    /// Normalises and validates `input` into a slug.
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let slug = input.trim().to_ascii_lowercase();
        if slug.is_empty() {
            return Err(InvalidValue::Empty);
        }
        if !slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(InvalidValue::Format("may contain only letters a-z, digits and '-'"));
        }
        // Only ASCII remains, so the byte length is the character count.
        if slug.len() < Self::MIN_LEN {
            return Err(InvalidValue::TooShort { min: Self::MIN_LEN });
        }
        if slug.len() > Self::MAX_LEN {
            return Err(InvalidValue::TooLong { max: Self::MAX_LEN });
        }
        if slug.starts_with('-') || slug.ends_with('-') {
            return Err(InvalidValue::Format("must not start or end with '-'"));
        }
        Ok(Self(slug))
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CategorySlug {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl FromStr for CategorySlug {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for CategorySlug {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CategorySlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A category of products: its slug and the name shown to people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Category {
    /// The identifier products and URLs use.
    pub slug: CategorySlug,
    /// The display name, e.g. "Home & Living".
    #[schema(example = "Electronics")]
    pub name: String,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn lowercases_and_trims_input() {
        assert_eq!(CategorySlug::parse(" Books ").map(|s| s.to_string()), Ok("books".to_owned()));
    }

    #[test]
    fn rejects_slugs_with_leading_or_trailing_dash() {
        assert!(CategorySlug::parse("-books").is_err());
        assert!(CategorySlug::parse("books-").is_err());
        assert!(CategorySlug::parse("board-games").is_ok());
    }

    #[test]
    fn rejects_slugs_with_spaces_underscores_or_accents() {
        for bad in ["board games", "board_games", "café", "a/b"] {
            assert!(CategorySlug::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn rejects_slugs_outside_length_bounds() {
        assert_eq!(CategorySlug::parse("a"), Err(InvalidValue::TooShort { min: 2 }));
        assert_eq!(CategorySlug::parse(&"a".repeat(41)), Err(InvalidValue::TooLong { max: 40 }));
    }

    #[test]
    fn category_serialises_slug_as_plain_string() {
        let category = Category { slug: CategorySlug::parse("toys").unwrap(), name: "Toys & Games".into() };
        assert_eq!(
            serde_json::to_value(&category).unwrap(),
            serde_json::json!({"slug": "toys", "name": "Toys & Games"})
        );
    }

    fn valid_slug() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?".prop_filter("at least two characters", |s| s.len() >= 2)
    }

    proptest! {
        #[test]
        fn valid_slugs_round_trip_through_json(raw in valid_slug()) {
            let slug = CategorySlug::parse(&raw).unwrap();
            prop_assert_eq!(slug.as_str(), raw.as_str());
            let json = serde_json::to_string(&slug).unwrap();
            prop_assert_eq!(serde_json::from_str::<CategorySlug>(&json).unwrap(), slug);
        }

        #[test]
        fn uppercase_input_means_the_same_slug(raw in valid_slug()) {
            prop_assert_eq!(CategorySlug::parse(&raw.to_uppercase()), CategorySlug::parse(&raw));
        }

        #[test]
        fn rejects_any_slug_holding_a_character_outside_the_alphabet(
            prefix in "[a-z0-9]{1,10}",
            bad in "[^A-Za-z0-9\\-\\s]",
            suffix in "[a-z0-9]{1,10}",
        ) {
            let raw = format!("{prefix}{bad}{suffix}");
            prop_assert!(CategorySlug::parse(&raw).is_err());
        }

        #[test]
        fn parsing_is_idempotent(raw in "\\PC{0,45}") {
            if let Ok(slug) = CategorySlug::parse(&raw) {
                prop_assert_eq!(CategorySlug::parse(slug.as_str()), Ok(slug.clone()));
            }
        }
    }
}
