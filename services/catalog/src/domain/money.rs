//! Prices: an amount in minor units (cents) and an ISO 4217 currency code.
//! Integers only, so no price is ever rounded on its way through the system.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// A three-letter ISO 4217 currency code such as `USD`.
///
/// Input is trimmed and upper-cased before it is checked. Whether the code is
/// one ISO actually assigned is not checked: the shape is what keeps data clean,
/// and the list changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, example = "USD")]
pub struct Currency(String);

impl Currency {
    /// Normalises and validates `input` into a currency code.
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let code = input.trim().to_ascii_uppercase();
        if code.is_empty() {
            return Err(InvalidValue::Empty);
        }
        if code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(InvalidValue::Format("must be a three-letter ISO 4217 currency code such as USD"));
        }
        Ok(Self(code))
    }

    /// US dollars, the currency of the seeded catalog.
    pub fn usd() -> Self {
        Self("USD".to_owned())
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl FromStr for Currency {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An amount of money: `{"amount": 1999, "currency": "USD"}` is 19.99 US dollars.
///
/// The amount is in minor units, from 0 to [`Money::MAX_AMOUNT`]; zero is allowed
/// because a free item is a real thing, negative prices are not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "MoneyRepr")]
pub struct Money {
    /// The amount in minor units (cents for USD).
    #[schema(minimum = 0, maximum = 10_000_000_000_i64, example = 1999)]
    amount: i64,
    /// The ISO 4217 currency code.
    currency: Currency,
}

impl Money {
    /// The largest amount allowed, in minor units: 100 million in major units,
    /// far above any real price, far below where sums of many lines overflow.
    pub const MAX_AMOUNT: i64 = 10_000_000_000;

    /// Builds a price, checking the amount lies in `0..=MAX_AMOUNT`.
    pub fn new(amount: i64, currency: Currency) -> Result<Self, InvalidValue> {
        check_amount(amount)?;
        Ok(Self { amount, currency })
    }

    /// The amount in minor units.
    pub fn amount(&self) -> i64 {
        self.amount
    }

    /// The currency.
    pub fn currency(&self) -> &Currency {
        &self.currency
    }
}

/// Checks an amount in minor units lies in the range a price may have.
pub(super) fn check_amount(amount: i64) -> Result<(), InvalidValue> {
    if (0..=Money::MAX_AMOUNT).contains(&amount) {
        Ok(())
    } else {
        Err(InvalidValue::OutOfRange { min: 0, max: Money::MAX_AMOUNT })
    }
}

/// The wire shape of [`Money`], checked by `TryFrom` on the way in.
#[derive(Deserialize)]
struct MoneyRepr {
    amount: i64,
    currency: Currency,
}

impl TryFrom<MoneyRepr> for Money {
    type Error = InvalidValue;

    fn try_from(repr: MoneyRepr) -> Result<Self, Self::Error> {
        Self::new(repr.amount, repr.currency)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn serialises_as_amount_and_currency() {
        let price = Money::new(1999, Currency::usd()).unwrap();
        assert_eq!(serde_json::to_value(&price).unwrap(), serde_json::json!({"amount": 1999, "currency": "USD"}));
    }

    #[test]
    fn accepts_zero_and_the_maximum() {
        assert!(Money::new(0, Currency::usd()).is_ok());
        assert!(Money::new(Money::MAX_AMOUNT, Currency::usd()).is_ok());
    }

    #[test]
    fn rejects_negative_amounts() {
        assert_eq!(Money::new(-1, Currency::usd()), Err(InvalidValue::OutOfRange { min: 0, max: Money::MAX_AMOUNT }));
    }

    #[test]
    fn rejects_amounts_above_the_maximum_when_deserialising() {
        let json = serde_json::json!({"amount": Money::MAX_AMOUNT + 1, "currency": "USD"});
        assert!(serde_json::from_value::<Money>(json).is_err());
    }

    #[test]
    fn uppercases_currency_codes() {
        assert_eq!(Currency::parse(" eur ").map(|c| c.to_string()), Ok("EUR".to_owned()));
    }

    #[test]
    fn rejects_currency_codes_of_the_wrong_shape() {
        for bad in ["US", "USDD", "U$D", "12A", "€€€"] {
            assert!(Currency::parse(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(Currency::parse(""), Err(InvalidValue::Empty));
    }

    proptest! {
        #[test]
        fn valid_prices_round_trip_through_json(amount in 0..=Money::MAX_AMOUNT, code in "[A-Z]{3}") {
            let price = Money::new(amount, Currency::parse(&code).unwrap()).unwrap();
            let json = serde_json::to_string(&price).unwrap();
            prop_assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), price);
        }

        #[test]
        fn rejects_every_negative_amount(amount in i64::MIN..0) {
            prop_assert!(Money::new(amount, Currency::usd()).is_err());
        }

        #[test]
        fn rejects_every_amount_above_the_maximum(amount in (Money::MAX_AMOUNT + 1)..=i64::MAX) {
            prop_assert!(Money::new(amount, Currency::usd()).is_err());
        }

        #[test]
        fn rejects_currency_codes_that_are_not_three_letters(code in "\\PC{0,6}") {
            let trimmed = code.trim();
            let is_three_letters = trimmed.len() == 3 && trimmed.chars().all(|c| c.is_ascii_alphabetic());
            prop_assert_eq!(Currency::parse(&code).is_ok(), is_three_letters);
        }
    }
}
