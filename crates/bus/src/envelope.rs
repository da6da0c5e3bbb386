//! The envelope every message travels in, and the typed messages inside it.
//!
//! An envelope is CloudEvents-like JSON with camelCase keys:
//! `id` (UUIDv7), `type` (versioned, `orders.order-placed.v1`), `source` (the
//! publishing service), `subject` (the aggregate id), `time`, `traceparent`,
//! `correlationId` (the order id through a saga), `causationId` (the id of the
//! message that caused this one) and `data`. Readers ignore fields they do not
//! know, so a producer can add one without breaking its consumers; a breaking
//! change is a new type version, published side by side.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The prefix of every bus subject: a message of type `t` travels on `bazaar.t`.
pub const SUBJECT_PREFIX: &str = "bazaar.";

/// What a message asks of its receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A request to act, handled by one consumer group (the owning service).
    Command,
    /// A fact that happened, delivered to every subscribing group.
    Event,
    /// A read over the bus: request-reply with a deadline, never stored.
    Query,
}

/// A message type of the catalogue: its payload plus its versioned name and kind.
pub trait Message: Serialize + DeserializeOwned {
    /// The versioned type, e.g. `identity.user-registered.v1`.
    const TYPE: &'static str;
    /// Command, event or query.
    const KIND: Kind;
}

/// One message on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Unique id (UUIDv7): the dedupe key of the outbox, the broker, JetStream and the inbox.
    pub id: Uuid,
    /// The versioned message type.
    #[serde(rename = "type")]
    pub message_type: String,
    /// The service that published it.
    pub source: String,
    /// The aggregate the message is about (an order id, a user id).
    pub subject: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The W3C trace context of the work that published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Ties together every message of one business transaction (a saga's order id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the message whose handling published this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The payload.
    pub data: serde_json::Value,
}

impl Envelope {
    /// Wraps `message` for publishing by `source` about `subject`, in the current trace.
    pub fn new<M: Message>(source: &str, subject: &str, message: &M) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: Uuid::now_v7(),
            message_type: M::TYPE.to_owned(),
            source: source.to_owned(),
            subject: subject.to_owned(),
            time: OffsetDateTime::now_utc(),
            traceparent: Some(chassis::trace::outgoing_header()),
            correlation_id: None,
            causation_id: None,
            data: serde_json::to_value(message)?,
        })
    }

    /// Marks this message as caused by `cause`: same correlation id (or the
    /// cause's id when it had none) and the cause's id as causation.
    pub fn caused_by(mut self, cause: &Envelope) -> Self {
        self.correlation_id = Some(cause.correlation_id.clone().unwrap_or_else(|| cause.id.to_string()));
        self.causation_id = Some(cause.id.to_string());
        self
    }

    /// Sets the correlation id (the order id through a saga).
    pub fn correlated(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Whether this envelope carries a message of type `M`.
    pub fn is<M: Message>(&self) -> bool {
        self.message_type == M::TYPE
    }

    /// Decodes the payload as `M`, ignoring fields `M` does not know.
    pub fn decode<M: Message>(&self) -> Result<M, serde_json::Error> {
        M::deserialize(&self.data)
    }

    /// The bus subject this message travels on: `bazaar.<type>`.
    pub fn bus_subject(&self) -> String {
        bus_subject(&self.message_type)
    }

    /// The trace context to handle this message in: a child of the publisher's
    /// span, or a new root when the envelope carries none (or a malformed one).
    pub fn trace_context(&self) -> chassis::trace::TraceContext {
        chassis::trace::TraceContext::from_incoming(self.traceparent.as_deref())
    }
}

/// The longest consumer group name.
pub const MAX_GROUP_NAME: usize = 100;
/// The longest message type.
pub const MAX_TYPE_LEN: usize = 200;

/// Checks a consumer group name, the same on every transport: 1-100 ASCII
/// letters, digits, `-` and `_` (it is one NATS subject token and a consumer name).
pub fn check_group_name(raw: &str) -> Result<(), String> {
    if raw.is_empty() || raw.len() > MAX_GROUP_NAME {
        return Err(format!("must be 1 to {MAX_GROUP_NAME} characters"));
    }
    if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("may contain only ASCII letters, digits, '-' and '_'".into());
    }
    Ok(())
}

/// Checks a message type, the same on every transport: 1-200 ASCII letters,
/// digits, `.`, `-` and `_` in dot-separated non-empty parts
/// (`orders.order-placed.v1`), so it names a NATS subject; not starting with
/// `replay.`, which the JetStream transport keeps for replays of dead letters.
pub fn check_message_type(raw: &str) -> Result<(), String> {
    if raw.is_empty() || raw.len() > MAX_TYPE_LEN {
        return Err(format!("must be 1 to {MAX_TYPE_LEN} characters"));
    }
    if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
        return Err("may contain only ASCII letters, digits, '.', '-' and '_'".into());
    }
    if raw.starts_with('.') || raw.ends_with('.') || raw.contains("..") {
        return Err("must not start or end with '.' or contain '..'".into());
    }
    if raw.split('.').next() == Some("replay") {
        return Err("must not start with 'replay.' (kept for replays of dead letters)".into());
    }
    Ok(())
}

/// The bus subject of message type `message_type`.
pub fn bus_subject(message_type: &str) -> String {
    format!("{SUBJECT_PREFIX}{message_type}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct UserRegistered {
        user_id: String,
        email: String,
    }

    impl Message for UserRegistered {
        const TYPE: &'static str = "identity.user-registered.v1";
        const KIND: Kind = Kind::Event;
    }

    fn sample() -> Envelope {
        Envelope::new("identity", "u-1", &UserRegistered { user_id: "u-1".into(), email: "a@b.c".into() })
            .unwrap()
            .correlated("order-9")
    }

    #[test]
    fn serialises_with_the_camel_case_keys_of_the_architecture() {
        let json = serde_json::to_value(sample()).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        for key in ["id", "type", "source", "subject", "time", "traceparent", "correlationId", "data"] {
            assert!(keys.contains(&key), "missing {key} in {keys:?}");
        }
        assert_eq!(json["type"], "identity.user-registered.v1");
        assert_eq!(json["data"]["email"], "a@b.c");
        assert_eq!(json["id"].as_str().map(|id| Uuid::parse_str(id).unwrap().get_version_num()), Some(7));
    }

    #[test]
    fn round_trips_and_ignores_unknown_fields_in_the_envelope_and_the_payload() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json["specversion"] = "1.0".into();
        json["data"]["added_later"] = 42.into();
        let envelope: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(envelope.source, "identity");
        assert!(envelope.is::<UserRegistered>());
        assert_eq!(envelope.decode::<UserRegistered>().unwrap().user_id, "u-1");
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let json = serde_json::json!({
            "id": Uuid::now_v7(), "type": "x.y.v1", "source": "s", "subject": "1",
            "time": "2026-11-25T10:00:00Z", "data": {}
        });
        let envelope: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(envelope.traceparent, None);
        assert_eq!(envelope.bus_subject(), "bazaar.x.y.v1");
    }

    #[test]
    fn names_and_types_follow_one_rule_for_every_transport() {
        assert!(check_group_name("inventory-2_b").is_ok());
        for bad in ["", "with space", "dot.ted", "star*", &"g".repeat(101)] {
            assert!(check_group_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_message_type("orders.order-placed.v1").is_ok());
        for bad in ["", ".x", "x.", "a..b", "a b", "a.*", "a.>", "replay.x.v1", &"t".repeat(201)] {
            assert!(check_message_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_caused_message_carries_the_correlation_and_the_cause() {
        let cause = sample();
        let effect = Envelope::new("inventory", "u-1", &UserRegistered { user_id: "u".into(), email: "e".into() })
            .unwrap()
            .caused_by(&cause);
        assert_eq!(effect.correlation_id.as_deref(), Some("order-9"));
        assert_eq!(effect.causation_id, Some(cause.id.to_string()));
        let root = Envelope::new("x", "1", &UserRegistered { user_id: "u".into(), email: "e".into() }).unwrap();
        assert_eq!(effect.clone().caused_by(&root).correlation_id, Some(root.id.to_string()));
    }
}
