//! The names of the bus's metrics, and the one place consumers record theirs.

use std::time::Duration;

use crate::consumer::Outcome;

/// Messages the relay has published from the outbox.
pub const RELAYED: &str = "bazaar_outbox_relayed_total";
/// Relay rounds that failed (bus unreachable, database error).
pub const RELAY_FAILURES: &str = "bazaar_outbox_relay_failures_total";
/// Outbox rows not yet published.
pub const OUTBOX_LAG: &str = "bazaar_outbox_lag_messages";
/// Age of the oldest unpublished outbox row.
pub const OUTBOX_OLDEST: &str = "bazaar_outbox_oldest_seconds";
/// Deliveries settled by consumers, by group and outcome.
pub const CONSUMED: &str = "bazaar_bus_consumed_total";
/// Time from fetch to settled, per delivery.
pub const HANDLE_SECONDS: &str = "bazaar_bus_handle_seconds";

/// Gives the bus's metrics their help text (Prometheus wants it on every
/// metric). Called by every relay and consumer as it is made; idempotent.
pub fn describe() {
    // Descriptions go to the installed recorder, so install it first.
    chassis::metrics::handle();
    metrics::describe_counter!(RELAYED, "Messages the outbox relay has published to the bus.");
    metrics::describe_counter!(RELAY_FAILURES, "Outbox relay rounds that failed (bus unreachable, database error).");
    metrics::describe_gauge!(OUTBOX_LAG, "Outbox rows committed but not yet published.");
    metrics::describe_gauge!(OUTBOX_OLDEST, metrics::Unit::Seconds, "Age of the oldest unpublished outbox row.");
    metrics::describe_counter!(CONSUMED, "Deliveries settled by consumers, by group and outcome.");
    metrics::describe_histogram!(
        HANDLE_SECONDS,
        metrics::Unit::Seconds,
        "Time to handle a fetched batch, per delivery."
    );
}

pub(crate) fn record_consumed(group: &str, outcome: &Outcome, took: Duration) {
    let outcome = match outcome {
        Outcome::Handled => "handled",
        Outcome::Duplicate => "duplicate",
        Outcome::Retried(_) => "retried",
        Outcome::DeadLettered(_) => "dead_lettered",
    };
    metrics::counter!(CONSUMED, "group" => group.to_owned(), "outcome" => outcome).increment(1);
    metrics::histogram!(HANDLE_SECONDS, "group" => group.to_owned()).record(took.as_secs_f64());
}
