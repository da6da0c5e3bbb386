//! The values going into and coming out of the event store.

use serde_json::Value;
use time::OffsetDateTime;

/// Where the caller believes a stream stands, checked by an append.
///
/// A stream's version is the version of its last event: 0 before the first
/// event, then 1, 2, ... with no gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream must have no events yet (the aggregate is being created).
    NoStream,
    /// The stream must be exactly at this version (`Exact(0)` is the same as `NoStream`).
    Exact(u64),
    /// No check: append after whatever is there.
    Any,
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn admits(self, actual: u64) -> bool {
        match self {
            Self::NoStream => actual == 0,
            Self::Exact(expected) => actual == expected,
            Self::Any => true,
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "version {version}"),
            Self::Any => f.write_str("any version"),
        }
    }
}

/// An event to append: its type (versioned, e.g. `order-placed.v1`), its data
/// and metadata (correlation and causation ids, the trace, the actor).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event type.
    pub event_type: String,
    /// The event's data, stored as JSON text.
    pub data: Value,
    /// The event's metadata, stored as JSON text.
    pub metadata: Value,
}

impl NewEvent {
    /// An event of `event_type` with `data` and empty metadata (`{}`).
    pub fn new(event_type: impl Into<String>, data: Value) -> Self {
        Self { event_type: event_type.into(), data, metadata: Value::Object(serde_json::Map::new()) }
    }

    /// The same event carrying `metadata`.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The event's place in the order of all events (from 1, no gaps).
    pub global_position: u64,
    /// The stream (aggregate id) it belongs to.
    pub stream_id: String,
    /// Its version within the stream (from 1, no gaps).
    pub version: u64,
    /// The event type.
    pub event_type: String,
    /// The event's data.
    pub data: Value,
    /// The event's metadata.
    pub metadata: Value,
    /// When it was appended (UTC, microsecond precision; one instant per append).
    pub recorded_at: OffsetDateTime,
}

/// What a successful append recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// The version of the first appended event.
    pub first_version: u64,
    /// The version of the last appended event: the stream's version now.
    pub last_version: u64,
    /// The global position of the last appended event.
    pub last_global_position: u64,
}

/// A folded state of a stream as of a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The version of the last event folded into `state`.
    pub version: u64,
    /// The state, as the aggregate serialised it.
    pub state: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_stream_admits_only_an_empty_stream() {
        assert!(ExpectedVersion::NoStream.admits(0));
        assert!(!ExpectedVersion::NoStream.admits(1));
    }

    #[test]
    fn exact_admits_only_its_version() {
        assert!(ExpectedVersion::Exact(3).admits(3));
        assert!(!ExpectedVersion::Exact(3).admits(2));
        assert!(!ExpectedVersion::Exact(3).admits(4));
        assert!(ExpectedVersion::Exact(0).admits(0));
    }

    #[test]
    fn any_admits_every_version() {
        assert!([0, 1, u64::MAX].into_iter().all(|v| ExpectedVersion::Any.admits(v)));
    }

    #[test]
    fn a_new_event_has_empty_object_metadata() {
        let event = NewEvent::new("t.v1", serde_json::json!({"a": 1}));
        assert_eq!(event.metadata, serde_json::json!({}));
        assert_eq!(event.with_metadata(serde_json::json!({"k": "v"})).metadata["k"], "v");
    }
}
