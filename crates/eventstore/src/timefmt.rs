//! How `recorded_at` is stored: RFC 3339 in UTC with exactly six fractional
//! digits, so that text order is time order and `recorded_at <= $n` compares
//! instants correctly in SQL on both engines.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

const STORED: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The stored text of `at`, truncated to microseconds.
pub(crate) fn format(at: OffsetDateTime) -> Result<String, time::error::Format> {
    at.to_offset(UtcOffset::UTC).format(STORED)
}

/// Parses a stored `recorded_at`.
pub(crate) fn parse(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stored_times_are_rfc3339_in_utc() {
        let at = time::macros::datetime!(2026-11-25 16:20:01.5 +01:00);
        let text = format(at).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "2026-11-25T15:20:01.500000Z");
        assert_eq!(parse(&text).unwrap_or_else(|e| panic!("{e}")), at);
    }

    proptest! {
        #[test]
        fn text_order_is_time_order(a in 0i64..253_402_300_799_000_000, b in 0i64..253_402_300_799_000_000) {
            let at = |micros: i64| OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
                .unwrap_or_else(|e| panic!("{e}"));
            let (ta, tb) = (format(at(a)).unwrap_or_else(|e| panic!("{e}")), format(at(b)).unwrap_or_else(|e| panic!("{e}")));
            prop_assert_eq!(ta.cmp(&tb), a.cmp(&b));
        }
    }
}
