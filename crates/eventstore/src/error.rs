//! The ways event store operations fail.

use crate::model::ExpectedVersion;

/// Any error a [`crate::Projection`] returns from its own work.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an append did not happen. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The stream is not at the version the caller expected: someone else
    /// appended first. Reload the stream and decide again.
    #[error("stream is at version {actual}, expected {expected}")]
    Conflict {
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's current version (0 when it has no events).
        actual: u64,
    },
    /// The append carried no events, so there is nothing to record.
    #[error("an append needs at least one event")]
    NoEvents,
    /// The stream id is empty.
    #[error("a stream id must not be empty")]
    EmptyStreamId,
    /// The database failed.
    #[error("event store database error")]
    Db(#[from] sqlx::Error),
}

/// Why a read, a snapshot or a projection run failed.
#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    /// The database failed.
    #[error("event store database error")]
    Db(#[from] sqlx::Error),
    /// A stored row cannot be decoded (bad JSON, time or number).
    #[error("stored event data is corrupt: {0}")]
    Corrupt(String),
    /// A projection's `apply` or `reset` failed; its transaction was rolled back.
    #[error("projection {name} failed at global position {position}")]
    Projection {
        /// The projection's name.
        name: String,
        /// The event it failed on (0 for a reset).
        position: u64,
        /// What the projection reported.
        #[source]
        source: BoxError,
    },
}
