//! Keyset pagination: the opaque cursor that says where the next page starts,
//! and the page size a client may ask for.
//!
//! A cursor holds the sort key of the last item of the page just returned; the
//! next query asks for items strictly after it in the same order. Unlike an
//! offset, that stays correct while products are added or removed, and costs
//! the same on page 1 and page 1000.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{InvalidValue, Sku};

/// Where the next page of a product collection starts: the sort key of the last
/// item already returned. Each variant belongs to one ordering, and a query
/// must reject a cursor made for the other one.
///
/// On the wire it is `next_cursor`/`cursor`: URL-safe base64 (no padding) of a
/// small JSON object, opaque to clients. Its contents may change between
/// versions; an old cursor then fails to decode and the client starts over.
#[derive(Debug, Clone, PartialEq)]
pub enum Cursor {
    /// Browsing without a search term, ordered by SKU then id, ascending. The
    /// next page holds items with `(sku, id) > (sku, id)` of this cursor.
    Sku {
        /// The SKU of the last item returned.
        sku: Sku,
        /// The id of the last item returned.
        id: Uuid,
    },
    /// Searching with a term, ordered by relevance rank (best first, in the
    /// store's own rank direction), then id ascending. The next page holds items
    /// ranked after `rank`, or ranked equal with an id greater than `id`. The
    /// rank must be finite; it is kept bit for bit, so comparing it with the
    /// rank the store computes again is exact.
    Rank {
        /// The relevance rank of the last item returned.
        rank: f64,
        /// The id of the last item returned.
        id: Uuid,
    },
}

/// Why a cursor string was refused. Clients only ever see that it is invalid:
/// the cause would tell them about a format they must not depend on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not a cursor this service issued")]
pub struct InvalidCursor;

/// The JSON inside a cursor. Short keys keep URLs short; the rank travels as
/// its IEEE-754 bits because a decimal float does not always parse back to the
/// same number.
#[derive(Serialize, Deserialize)]
#[serde(tag = "o", deny_unknown_fields)]
enum CursorRepr {
    #[serde(rename = "s")]
    Sku {
        #[serde(rename = "k")]
        sku: Sku,
        #[serde(rename = "i")]
        id: Uuid,
    },
    #[serde(rename = "r")]
    Rank {
        #[serde(rename = "k")]
        rank_bits: u64,
        #[serde(rename = "i")]
        id: Uuid,
    },
}

impl Cursor {
    /// The longest string [`Cursor::decode`] looks at; anything longer was not
    /// issued here, and refusing it early bounds the work a request can cause.
    pub const MAX_ENCODED_LEN: usize = 256;

    /// The cursor as the opaque string handed to clients.
    pub fn encode(&self) -> String {
        let repr = match self {
            Cursor::Sku { sku, id } => CursorRepr::Sku { sku: sku.clone(), id: *id },
            Cursor::Rank { rank, id } => CursorRepr::Rank { rank_bits: rank.to_bits(), id: *id },
        };
        // A map of strings and integers always serialises; the fallback is
        // never reached, and would only produce a cursor that fails to decode.
        let json = serde_json::to_vec(&repr).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a cursor string a client sent back.
    pub fn decode(encoded: &str) -> Result<Self, InvalidCursor> {
        if encoded.is_empty() || encoded.len() > Self::MAX_ENCODED_LEN {
            return Err(InvalidCursor);
        }
        let json = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| InvalidCursor)?;
        let repr: CursorRepr = serde_json::from_slice(&json).map_err(|_| InvalidCursor)?;
        Ok(match repr {
            CursorRepr::Sku { sku, id } => Cursor::Sku { sku, id },
            CursorRepr::Rank { rank_bits, id } => {
                let rank = f64::from_bits(rank_bits);
                if !rank.is_finite() {
                    return Err(InvalidCursor);
                }
                Cursor::Rank { rank, id }
            }
        })
    }

    /// The id of the last item returned, whichever the ordering.
    pub fn id(&self) -> Uuid {
        match self {
            Cursor::Sku { id, .. } | Cursor::Rank { id, .. } => *id,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::decode(s)
    }
}

/// How many items a page may hold: 1 to 100, 20 when the client does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Limit(u32);

impl Limit {
    /// The smallest page size.
    pub const MIN: u32 = 1;
    /// The largest page size.
    pub const MAX: u32 = 100;
    /// The page size when none is given.
    pub const DEFAULT: Limit = Limit(20);

    /// Checks `n` lies in `MIN..=MAX`.
    pub fn new(n: i64) -> Result<Self, InvalidValue> {
        u32::try_from(n)
            .ok()
            .filter(|n| (Self::MIN..=Self::MAX).contains(n))
            .map(Self)
            .ok_or(InvalidValue::OutOfRange { min: i64::from(Self::MIN), max: i64::from(Self::MAX) })
    }

    /// The page size.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<i64> for Limit {
    type Error = InvalidValue;

    fn try_from(n: i64) -> Result<Self, Self::Error> {
        Self::new(n)
    }
}

impl From<Limit> for u32 {
    fn from(limit: Limit) -> Self {
        limit.0
    }
}

impl FromStr for Limit {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n: i64 = s.trim().parse().map_err(|_| InvalidValue::Format("must be a whole number between 1 and 100"))?;
        Self::new(n)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id() -> Uuid {
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)
    }

    #[test]
    fn sku_cursor_round_trips() {
        let cursor = Cursor::Sku { sku: Sku::parse("ELE-0001").unwrap(), id: id() };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn rank_cursor_keeps_the_rank_bit_for_bit() {
        let rank = 0.1 + 0.2;
        let cursor = Cursor::Rank { rank, id: id() };
        match Cursor::decode(&cursor.encode()).unwrap() {
            Cursor::Rank { rank: back, .. } => assert_eq!(back.to_bits(), rank.to_bits()),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn encoded_cursor_is_url_safe_and_short() {
        let cursor = Cursor::Sku { sku: Sku::parse(&"A".repeat(32)).unwrap(), id: id() };
        let encoded = cursor.encode();
        assert!(encoded.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert!(encoded.len() <= Cursor::MAX_ENCODED_LEN);
    }

    #[test]
    fn rejects_garbage_empty_and_overlong_cursors() {
        for bad in ["", "not base64!", "e30", "AAAA", &"A".repeat(300)] {
            assert_eq!(Cursor::decode(bad), Err(InvalidCursor), "{bad:?} was accepted");
        }
    }

    #[test]
    fn rejects_cursor_holding_an_invalid_sku() {
        let forged = URL_SAFE_NO_PAD.encode(format!(r#"{{"o":"s","k":"1nvalid sku","i":"{}"}}"#, id()));
        assert_eq!(Cursor::decode(&forged), Err(InvalidCursor));
    }

    #[test]
    fn rejects_cursor_holding_a_non_finite_rank() {
        let forged = URL_SAFE_NO_PAD.encode(format!(r#"{{"o":"r","k":{},"i":"{}"}}"#, f64::NAN.to_bits(), id()));
        assert_eq!(Cursor::decode(&forged), Err(InvalidCursor));
    }

    #[test]
    fn limit_defaults_to_20() {
        assert_eq!(Limit::default().get(), 20);
    }

    #[test]
    fn limit_accepts_1_to_100_only() {
        assert_eq!(Limit::new(1).map(Limit::get), Ok(1));
        assert_eq!(Limit::new(100).map(Limit::get), Ok(100));
        for bad in [0, -1, 101, i64::MAX, i64::MIN] {
            assert_eq!(Limit::new(bad), Err(InvalidValue::OutOfRange { min: 1, max: 100 }));
        }
    }

    #[test]
    fn limit_parses_from_query_text() {
        assert_eq!("50".parse::<Limit>().map(Limit::get), Ok(50));
        assert!("fifty".parse::<Limit>().is_err());
        assert!("0".parse::<Limit>().is_err());
        assert_eq!(serde_json::from_str::<Limit>("7").map(Limit::get).ok(), Some(7));
        assert!(serde_json::from_str::<Limit>("1000").is_err());
    }

    proptest! {
        #[test]
        fn sku_cursors_round_trip(sku in "[A-Z][A-Z0-9-]{2,31}", id in any::<u128>()) {
            let cursor = Cursor::Sku { sku: Sku::parse(&sku).unwrap(), id: Uuid::from_u128(id) };
            prop_assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        }

        #[test]
        fn rank_cursors_round_trip(rank in any::<f64>().prop_filter("finite", |r| r.is_finite()), id in any::<u128>()) {
            let cursor = Cursor::Rank { rank, id: Uuid::from_u128(id) };
            let encoded = cursor.encode();
            prop_assert!(encoded.len() <= Cursor::MAX_ENCODED_LEN);
            prop_assert_eq!(Cursor::decode(&encoded), Ok(cursor));
        }

        #[test]
        fn decoding_arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = Cursor::decode(&text);
        }

        #[test]
        fn limit_accepts_exactly_1_to_100(n in -1000_i64..1000) {
            prop_assert_eq!(Limit::new(n).is_ok(), (1..=100).contains(&n));
        }
    }
}
