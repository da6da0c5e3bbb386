//! The stock-keeping unit that names a product across services, and the
//! deterministic product id derived from it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::InvalidValue;

/// A product's SKU: 3 to 32 characters of `A-Z`, `0-9` and `-`, starting with a
/// letter, e.g. `ELE-0001`.
///
/// Input is trimmed and upper-cased before it is checked, so `" ele-0001 "`
/// becomes `ELE-0001`: SKUs are typed by people and compared by machines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, example = "ELE-0001")]
pub struct Sku(String);

impl Sku {
    /// The fewest characters a SKU may have.
    pub const MIN_LEN: usize = 3;
    /// The most characters a SKU may have.
    pub const MAX_LEN: usize = 32;

    /// Normalises and validates `input` into a SKU.
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let sku = input.trim().to_ascii_uppercase();
        if sku.is_empty() {
            return Err(InvalidValue::Empty);
        }
        if !sku.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-') {
            return Err(InvalidValue::Format("may contain only letters A-Z, digits and '-'"));
        }
        // Only ASCII remains, so the byte length is the character count.
        if sku.len() < Self::MIN_LEN {
            return Err(InvalidValue::TooShort { min: Self::MIN_LEN });
        }
        if sku.len() > Self::MAX_LEN {
            return Err(InvalidValue::TooLong { max: Self::MAX_LEN });
        }
        if !sku.starts_with(|c: char| c.is_ascii_uppercase()) {
            return Err(InvalidValue::Format("must start with a letter"));
        }
        Ok(Self(sku))
    }

    /// The SKU as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl FromStr for Sku {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Sku {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The UUIDv5 namespace of product ids derived from SKUs. It is itself the
/// UUIDv5 of `https://bazaar.example/catalog/products` in the URL namespace, and
/// must never change: seeded products, stock rows and order lines in every
/// service refer to products by these ids.
pub const PRODUCT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x25b1_9b12_172d_5a81_872f_05bb_f1d2_2936);

/// The deterministic id of the product with `sku`: the UUIDv5 of the SKU text in
/// [`PRODUCT_ID_NAMESPACE`]. The seeded catalog uses it so that every fresh
/// start, on every machine, gives a product the same id.
pub fn product_id_for(sku: &Sku) -> Uuid {
    Uuid::new_v5(&PRODUCT_ID_NAMESPACE, sku.as_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_a_typical_sku() {
        assert_eq!(Sku::parse("ELE-0001").map(|s| s.to_string()), Ok("ELE-0001".to_owned()));
    }

    #[test]
    fn trims_and_uppercases_input() {
        assert_eq!(Sku::parse("  ele-0001\t").map(|s| s.to_string()), Ok("ELE-0001".to_owned()));
    }

    #[test]
    fn rejects_empty_and_blank_input() {
        assert_eq!(Sku::parse(""), Err(InvalidValue::Empty));
        assert_eq!(Sku::parse("   "), Err(InvalidValue::Empty));
    }

    #[test]
    fn rejects_sku_starting_with_a_digit_or_dash() {
        assert_eq!(Sku::parse("1ABC"), Err(InvalidValue::Format("must start with a letter")));
        assert_eq!(Sku::parse("-ABC"), Err(InvalidValue::Format("must start with a letter")));
    }

    #[test]
    fn rejects_sku_with_spaces_or_punctuation_inside() {
        assert!(Sku::parse("ELE 0001").is_err());
        assert!(Sku::parse("ELE_0001").is_err());
        assert!(Sku::parse("ÉLE-0001").is_err());
    }

    #[test]
    fn rejects_sku_outside_length_bounds() {
        assert_eq!(Sku::parse("AB"), Err(InvalidValue::TooShort { min: 3 }));
        assert_eq!(Sku::parse(&"A".repeat(33)), Err(InvalidValue::TooLong { max: 32 }));
        assert!(Sku::parse(&"A".repeat(32)).is_ok());
    }

    #[test]
    fn serialises_as_a_plain_string_and_validates_on_the_way_in() {
        let sku = Sku::parse("BOO-0042").unwrap();
        assert_eq!(serde_json::to_string(&sku).unwrap(), "\"BOO-0042\"");
        assert_eq!(serde_json::from_str::<Sku>("\"boo-0042\"").unwrap(), sku);
        assert!(serde_json::from_str::<Sku>("\"42\"").is_err());
    }

    #[test]
    fn namespace_is_the_url_uuid_of_the_catalog_products_address() {
        let derived = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://bazaar.example/catalog/products");
        assert_eq!(PRODUCT_ID_NAMESPACE, derived);
    }

    #[test]
    fn product_id_is_a_stable_v5_uuid_of_the_sku() {
        let id = product_id_for(&Sku::parse("ELE-0001").unwrap());
        assert_eq!(id.to_string(), "ff62f420-0ba0-5b06-9652-c8c98065de3e");
        assert_eq!(id.get_version_num(), 5);
    }

    fn valid_sku() -> impl Strategy<Value = String> {
        "[A-Z][A-Z0-9-]{2,31}"
    }

    proptest! {
        #[test]
        fn valid_skus_round_trip_through_json(raw in valid_sku()) {
            let sku = Sku::parse(&raw).unwrap();
            prop_assert_eq!(sku.as_str(), raw.as_str());
            let json = serde_json::to_string(&sku).unwrap();
            prop_assert_eq!(serde_json::from_str::<Sku>(&json).unwrap(), sku);
        }

        #[test]
        fn lowercase_input_means_the_same_sku(raw in valid_sku()) {
            prop_assert_eq!(Sku::parse(&raw.to_lowercase()), Sku::parse(&raw));
        }

        #[test]
        fn parsing_is_idempotent(raw in "\\PC{0,40}") {
            if let Ok(sku) = Sku::parse(&raw) {
                prop_assert_eq!(Sku::parse(sku.as_str()), Ok(sku.clone()));
            }
        }

        #[test]
        fn rejects_any_sku_holding_a_character_outside_the_alphabet(
            prefix in "[A-Z][A-Z0-9-]{1,10}",
            bad in "[^A-Za-z0-9\\-\\s]",
            suffix in "[A-Z0-9-]{0,10}",
        ) {
            let raw = format!("{prefix}{bad}{suffix}");
            prop_assert!(Sku::parse(&raw).is_err());
        }

        #[test]
        fn rejects_any_sku_longer_than_32_characters(raw in "[A-Z][A-Z0-9-]{32,60}") {
            prop_assert_eq!(Sku::parse(&raw), Err(InvalidValue::TooLong { max: 32 }));
        }

        #[test]
        fn distinct_skus_get_distinct_ids(a in valid_sku(), b in valid_sku()) {
            prop_assume!(a != b);
            let (a, b) = (Sku::parse(&a).unwrap(), Sku::parse(&b).unwrap());
            prop_assert_ne!(product_id_for(&a), product_id_for(&b));
        }
    }
}
