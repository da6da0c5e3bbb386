//! The broker's vocabulary and its input rules, without I/O: group names,
//! message types, the envelope fields the broker relies on, and the limits of
//! a request. Anything a client sends passes through here before it reaches
//! the log, so a bad request is a named 422, never a stored message that its
//! consumers cannot read.

use chassis::problem::FieldError;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

pub use bus::{MAX_GROUP_NAME, MAX_TYPE_LEN};
/// The most message types one group may consume.
pub const MAX_GROUP_TYPES: usize = 100;
/// The longest lease accepted: one day.
pub const MAX_ACK_WAIT_MS: u64 = 24 * 60 * 60 * 1000;
/// The longest delay of a nak: one day.
pub const MAX_NAK_DELAY_MS: u64 = 24 * 60 * 60 * 1000;
/// The most sequence numbers one ack or nak may carry.
pub const MAX_SEQS: usize = 10_000;
/// The longest handler error kept with a dead letter; longer ones are cut.
pub const MAX_ERROR_CHARS: usize = 4_000;

/// A consumer group's name: 1-100 ASCII letters, digits, `-` and `_` (`bus::check_group_name`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupName(String);

impl GroupName {
    /// Checks `raw` against the naming rule every transport shares.
    pub fn parse(raw: &str) -> Result<Self, String> {
        bus::check_group_name(raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a message type against the rule every transport shares
/// (`bus::check_message_type`).
pub fn check_type(raw: &str) -> Result<(), String> {
    bus::check_message_type(raw)
}

/// An envelope the broker accepted: its id (canonical form), its type, and
/// the whole envelope as JSON text with the id written canonically, so the
/// dedupe key does not depend on how a client spelt the UUID.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedEnvelope {
    /// The envelope id.
    pub id: Uuid,
    /// The message type.
    pub message_type: String,
    /// The envelope as JSON text.
    pub json: String,
}

/// Checks that `value` (at `field` of the request, for error names) is an
/// envelope consumers can read: an object with a UUID `id`, a valid `type`,
/// string `source` and `subject`, an RFC 3339 `time` and a `data` member.
/// Unknown members are kept: readers ignore what they do not know.
pub fn check_envelope(field: &str, value: Value, errors: &mut Vec<FieldError>) -> Option<CheckedEnvelope> {
    let Value::Object(mut object) = value else {
        errors.push(FieldError::new(field, "must be an envelope object"));
        return None;
    };
    let before = errors.len();
    let mut error = |member: &str, message: &str| errors.push(FieldError::new(format!("{field}.{member}"), message));
    let id = match object.get("id").and_then(Value::as_str).map(Uuid::parse_str) {
        Some(Ok(id)) => Some(id),
        _ => {
            error("id", "must be a UUID");
            None
        }
    };
    let message_type = match object.get("type").and_then(Value::as_str) {
        Some(t) => match check_type(t) {
            Ok(()) => Some(t.to_owned()),
            Err(message) => {
                error("type", &message);
                None
            }
        },
        None => {
            error("type", "must be a message type such as orders.order-placed.v1");
            None
        }
    };
    for member in ["source", "subject"] {
        if !object.get(member).is_some_and(Value::is_string) {
            error(member, "must be a string");
        }
    }
    let time_ok =
        object.get("time").and_then(Value::as_str).is_some_and(|t| OffsetDateTime::parse(t, &Rfc3339).is_ok());
    if !time_ok {
        error("time", "must be an RFC 3339 timestamp");
    }
    if !object.contains_key("data") {
        error("data", "is required (null is allowed)");
    }
    for member in ["traceparent", "correlationId", "causationId"] {
        if object.get(member).is_some_and(|v| !v.is_string() && !v.is_null()) {
            error(member, "must be a string when present");
        }
    }
    let (Some(id), Some(message_type)) = (id, message_type) else { return None };
    if errors.len() > before {
        return None;
    }
    object.insert("id".into(), Value::String(id.hyphenated().to_string()));
    let json = Value::Object(object).to_string();
    Some(CheckedEnvelope { id, message_type, json })
}

/// Checks a list of message types for a group: 1-100 valid types; duplicates are dropped.
pub fn check_types(field: &str, types: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    if types.is_empty() || types.len() > MAX_GROUP_TYPES {
        errors.push(FieldError::new(field, format!("must list 1 to {MAX_GROUP_TYPES} message types")));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for (i, t) in types.iter().enumerate() {
        match check_type(t) {
            Ok(()) if !out.contains(t) => out.push(t.clone()),
            Ok(()) => {}
            Err(message) => errors.push(FieldError::new(format!("{field}[{i}]"), message)),
        }
    }
    out
}

/// Checks sequence numbers of an ack or nak: 1 to [`MAX_SEQS`] positive numbers.
pub fn check_seqs(field: &str, seqs: &[i64], errors: &mut Vec<FieldError>) {
    if seqs.is_empty() || seqs.len() > MAX_SEQS {
        errors.push(FieldError::new(field, format!("must list 1 to {MAX_SEQS} sequence numbers")));
    } else if let Some(i) = seqs.iter().position(|s| *s < 1) {
        errors.push(FieldError::new(format!("{field}[{i}]"), "must be a sequence number from a fetch (1 or more)"));
    }
}

/// Cuts a handler error to [`MAX_ERROR_CHARS`] characters.
pub fn clip_error(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &error[..cut]),
        None => error.to_owned(),
    }
}

/// Milliseconds since the Unix epoch, the broker's clock for leases and
/// timestamps: the same clock the bus client writes its tables with.
pub use bus::now_ms;

/// A millisecond timestamp as a date-time (the epoch for one out of range).
pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope() -> Value {
        json!({"id": "0190A6F0-0000-7000-8000-000000000001", "type": "orders.order-placed.v1",
               "source": "orders", "subject": "o-1", "time": "2026-11-25T10:00:00Z", "data": {"x": 1},
               "extra": true})
    }

    #[test]
    fn accepts_an_envelope_and_writes_its_id_canonically_keeping_unknown_members() {
        let mut errors = Vec::new();
        let checked = check_envelope("envelopes[0]", envelope(), &mut errors).expect("accepted");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(checked.message_type, "orders.order-placed.v1");
        let stored: Value = serde_json::from_str(&checked.json).expect("json");
        assert_eq!(stored["id"], "0190a6f0-0000-7000-8000-000000000001");
        assert_eq!(stored["extra"], true);
    }

    #[test]
    fn names_every_bad_member_of_an_envelope() {
        let mut errors = Vec::new();
        let bad = json!({"id": "nope", "type": "bad type", "source": 1, "time": "yesterday"});
        assert!(check_envelope("envelopes[2]", bad, &mut errors).is_none());
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for field in ["id", "type", "source", "subject", "time", "data"] {
            assert!(fields.contains(&format!("envelopes[2].{field}").as_str()), "{field} missing in {fields:?}");
        }
        let mut errors = Vec::new();
        assert!(check_envelope("e", json!([1]), &mut errors).is_none());
        assert_eq!(errors[0].field, "e");
    }

    #[test]
    fn group_names_and_types_follow_their_rules() {
        assert!(GroupName::parse("inventory_2-a").is_ok());
        assert!(GroupName::parse("").is_err());
        assert!(GroupName::parse("a/b").is_err());
        assert!(GroupName::parse(&"x".repeat(101)).is_err());
        assert!(check_type("catalog.product-changed.v1").is_ok());
        assert!(check_type("a..b").is_err());
        assert!(check_type("a b").is_err());
        assert!(check_type(".a").is_err());
    }

    #[test]
    fn types_of_a_group_are_deduplicated_and_each_bad_one_is_named() {
        let mut errors = Vec::new();
        let types = check_types("types", &["a.v1".into(), "a.v1".into(), "b c".into()], &mut errors);
        assert_eq!(types, vec!["a.v1".to_owned()]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "types[2]");
        let mut errors = Vec::new();
        check_types("types", &[], &mut errors);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn sequence_numbers_must_be_positive_and_bounded() {
        let mut errors = Vec::new();
        check_seqs("seqs", &[1, 2, 0], &mut errors);
        assert_eq!(errors[0].field, "seqs[2]");
        let mut errors = Vec::new();
        check_seqs("seqs", &[], &mut errors);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn long_errors_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_CHARS + 10);
        let clipped = clip_error(&long);
        assert_eq!(clipped.chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(clip_error("short"), "short");
    }

    #[test]
    fn milliseconds_round_trip_through_date_times() {
        let now = now_ms();
        let at = from_ms(now);
        assert_eq!(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).expect("fits"), now);
    }
}
