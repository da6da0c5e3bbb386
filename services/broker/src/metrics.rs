//! The broker's metric names, in one place, and their help texts.
//!
//! Counters are per consumer group (label `group`) where a group is involved;
//! the two gauges are refreshed from the log every `stats_interval_ms`.

/// Messages stored by publishes (duplicates not counted).
pub const PUBLISHED: &str = "broker_messages_published_total";
/// Publishes of an envelope id already in the log, skipped.
pub const DUPLICATES: &str = "broker_messages_duplicate_total";
/// Messages handed to a fetcher, first deliveries and redeliveries, by group.
pub const DELIVERIES: &str = "broker_deliveries_total";
/// Deliveries beyond the first (lease expired, nak, replay), by group.
pub const REDELIVERIES: &str = "broker_redeliveries_total";
/// Deliveries acked, by group.
pub const ACKS: &str = "broker_acks_total";
/// Deliveries handed back with a delay, by group.
pub const NAKS: &str = "broker_naks_total";
/// Deliveries moved to the dead-letter queue, by group.
pub const DEAD_LETTERS: &str = "broker_dead_letters_total";
/// Dead letters replayed to their group, by group.
pub const REPLAYS: &str = "broker_replays_total";
/// Fetches waiting for messages right now (long polls), by group.
pub const PARKED_FETCHES: &str = "broker_parked_fetches";
/// Messages deleted from the log for being older than the retention and held by no group.
pub const EXPIRED: &str = "broker_messages_expired_total";
/// Messages of a group's types not yet acked by it (new, in flight or due again), by group.
pub const CONSUMER_LAG: &str = "broker_consumer_lag";
/// Messages delivered to a group and neither acked nor dead-lettered yet, by group.
pub const IN_FLIGHT: &str = "broker_in_flight";
/// Dead letters waiting in the queue, by group.
pub const DEAD_LETTER_QUEUE: &str = "broker_dead_letter_queue_size";
/// Write transactions committed by the writer (each one fsync).
pub const COMMITS: &str = "broker_commits_total";
/// Operations carried by those transactions; divided by commits, the batching factor.
pub const COMMITTED_OPERATIONS: &str = "broker_committed_operations_total";
/// Time from a transaction's first statement to its fsynced commit.
pub const COMMIT_DURATION: &str = "broker_commit_duration_seconds";
/// Queries by outcome (`answered` or `timed_out`).
pub const QUERIES: &str = "broker_queries_total";

/// Gives every metric its help text, so `/metrics` passes `promtool check metrics`.
pub fn describe() {
    metrics::describe_counter!(PUBLISHED, "Messages stored by publishes (duplicates not counted).");
    metrics::describe_counter!(DUPLICATES, "Publishes of an envelope id already in the log, skipped.");
    metrics::describe_counter!(DELIVERIES, "Messages handed to a fetcher, by consumer group.");
    metrics::describe_counter!(REDELIVERIES, "Deliveries beyond the first, by consumer group.");
    metrics::describe_counter!(ACKS, "Deliveries acked, by consumer group.");
    metrics::describe_counter!(NAKS, "Deliveries handed back to be redelivered after a delay, by consumer group.");
    metrics::describe_counter!(DEAD_LETTERS, "Deliveries moved to the dead-letter queue, by consumer group.");
    metrics::describe_counter!(REPLAYS, "Dead letters replayed to their consumer group, by consumer group.");
    metrics::describe_gauge!(PARKED_FETCHES, "Fetches waiting for messages right now (long polls), by consumer group.");
    metrics::describe_counter!(EXPIRED, "Messages deleted from the log after the retention, held by no group.");
    metrics::describe_gauge!(CONSUMER_LAG, "Messages of a consumer group's types it has not acked yet.");
    metrics::describe_gauge!(IN_FLIGHT, "Messages delivered to a consumer group and not yet acked or dead-lettered.");
    metrics::describe_gauge!(DEAD_LETTER_QUEUE, "Dead letters waiting in the queue, by consumer group.");
    metrics::describe_counter!(COMMITS, "Write transactions committed to the log.");
    metrics::describe_counter!(COMMITTED_OPERATIONS, "Operations carried by the committed write transactions.");
    metrics::describe_histogram!(
        COMMIT_DURATION,
        metrics::Unit::Seconds,
        "Time from a write transaction's first statement to its flushed commit."
    );
    metrics::describe_counter!(QUERIES, "Queries sent over the bus, by outcome.");
}
