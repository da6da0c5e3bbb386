//! The ways bus operations fail.

/// Why a bus operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The transport (broker process or NATS) could not be reached or did not
    /// answer in time. Transient: retry later.
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    /// The transport refused the request (a bad group name, an unknown dead letter).
    #[error("the bus refused the request: {0}")]
    Rejected(String),
    /// Nothing answered a query before its deadline.
    #[error("no reply to {message_type} within {timeout_ms} ms")]
    Timeout {
        /// The query's type.
        message_type: String,
        /// The deadline that passed.
        timeout_ms: u64,
    },
    /// No dead letter has this id.
    #[error("no dead letter {0}")]
    NotFound(String),
    /// A message could not be encoded or decoded.
    #[error("message encoding: {0}")]
    Codec(#[from] serde_json::Error),
    /// The service's database (outbox or inbox) failed.
    #[error("bus database error")]
    Db(#[from] sqlx::Error),
}
