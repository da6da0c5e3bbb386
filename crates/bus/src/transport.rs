//! The one interface over the two transports: the embedded broker (a bazaar
//! process owning an SQLite log, reached over loopback HTTP) and NATS
//! JetStream. Everything above this module (relay, consumers, queries, the
//! `bazaar dlq` command) is written once against [`Transport`].
//!
//! The contract both transports keep, proved by the conformance suite in
//! `tests/conformance.rs`:
//! - `publish` returns only once the messages are durably stored; publishing
//!   an envelope id again is a no-op (dedupe by envelope id).
//! - A subscription is a named consumer group over some message types. Every
//!   group sees every message of its types (events fan out); the members of
//!   one group share them (competing consumers). A new group starts from the
//!   oldest stored message; a type added to an existing group is delivered to
//!   it from the group's current position on. Messages are kept for a
//!   retention period (7 days by default on both transports), after which a
//!   group that has not fetched them misses them.
//! - `fetch` waits up to `wait` for at least one message and returns a batch
//!   in publish order (first deliveries; a redelivery may come between them). A fetched message is leased to the fetcher for the
//!   group's `ack_wait`; not acked by then, it is delivered again with its
//!   attempt count raised.
//! - `ack` ends a delivery; `nak` hands it back to be redelivered after a
//!   delay; `dead_letter` moves it to the dead-letter queue (it is not
//!   delivered to the group again unless replayed).
//! - Dead letters can be listed, read and replayed to the one group they died in.
//! - Queries are request-reply with a deadline and are never stored.

use std::time::Duration;

use time::OffsetDateTime;

use crate::envelope::Envelope;
use crate::error::BusError;

/// A consumer group: who consumes, what, and how long a delivery is leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The group's durable name, e.g. `inventory` (letters, digits, `-` and `_`).
    pub group: String,
    /// The message types the group consumes, e.g. `catalog.product-changed.v1`.
    pub types: Vec<String>,
    /// How long a fetched message stays leased before it is delivered again.
    pub ack_wait: Duration,
}

/// One delivery of a message to a member of a consumer group.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub envelope: Envelope,
    /// 1 on the first delivery, raised by every redelivery (lease expiry or nak).
    pub attempt: u32,
    pub(crate) handle: Handle,
}

/// What a transport needs to ack, nak or dead-letter a delivery.
#[derive(Debug)]
pub(crate) enum Handle {
    /// The broker's sequence number of the message in the log.
    Embedded { seq: i64 },
    /// The JetStream message, which carries its own ack subject.
    JetStream(Box<async_nats::jetstream::Message>),
}

/// A message that failed too often and was taken out of its group's flow.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The dead letter's id in the transport's DLQ (what `bazaar dlq show|replay` take).
    pub id: String,
    /// The consumer group it died in.
    pub group: String,
    /// The message.
    pub envelope: Envelope,
    /// The last handler error.
    pub error: String,
    /// How many times it was delivered.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub dead_at: OffsetDateTime,
}

/// A query received by a responder, with what is needed to reply to it.
#[derive(Debug)]
pub struct IncomingQuery {
    /// The query.
    pub envelope: Envelope,
    pub(crate) reply_to: String,
}

/// The bus connection of one process.
#[derive(Debug, Clone)]
pub enum Transport {
    /// The embedded broker process (`services/broker`) over loopback HTTP.
    Embedded(crate::embedded::EmbeddedTransport),
    /// NATS JetStream.
    JetStream(crate::jetstream::JetStreamTransport),
}

/// Calls the same method on whichever transport this is.
macro_rules! dispatch {
    ($self:ident, $t:ident => $call:expr) => {
        match $self {
            Transport::Embedded($t) => $call,
            Transport::JetStream($t) => $call,
        }
    };
}

impl Transport {
    /// Stores `batch` durably, in order. Envelope ids already stored are skipped.
    pub async fn publish(&self, batch: &[Envelope]) -> Result<(), BusError> {
        dispatch!(self, t => t.publish(batch).await)
    }

    /// Creates the consumer group, or updates its types and lease. Idempotent.
    pub async fn subscribe(&self, subscription: &Subscription) -> Result<(), BusError> {
        dispatch!(self, t => t.subscribe(subscription).await)
    }

    /// Up to `max` deliveries for `group`, waiting up to `wait` for the first one.
    pub async fn fetch(&self, group: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        dispatch!(self, t => t.fetch(group, max, wait).await)
    }

    /// Ends these deliveries: the group is done with them.
    pub async fn ack(&self, group: &str, deliveries: &[Delivery]) -> Result<(), BusError> {
        dispatch!(self, t => t.ack(group, deliveries).await)
    }

    /// Hands a delivery back to be delivered again after `delay`.
    pub async fn nak(&self, group: &str, delivery: &Delivery, delay: Duration) -> Result<(), BusError> {
        dispatch!(self, t => t.nak(group, delivery, delay).await)
    }

    /// Moves a delivery to the dead-letter queue with the handler's last `error`.
    pub async fn dead_letter(&self, group: &str, delivery: &Delivery, error: &str) -> Result<(), BusError> {
        dispatch!(self, t => t.dead_letter(group, delivery, error).await)
    }

    /// Dead letters, oldest first, of one group or all.
    pub async fn dead_letters(&self, group: Option<&str>, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        dispatch!(self, t => t.dead_letters(group, limit).await)
    }

    /// One dead letter by id.
    pub async fn dead_letter_by_id(&self, id: &str) -> Result<DeadLetter, BusError> {
        dispatch!(self, t => t.dead_letter_by_id(id).await)
    }

    /// Delivers a dead letter again to the group it died in (and only that
    /// group), as a fresh first attempt, and removes it from the DLQ.
    pub async fn replay(&self, id: &str) -> Result<(), BusError> {
        dispatch!(self, t => t.replay(id).await)
    }

    /// Sends a query and waits up to `timeout` for its reply.
    pub async fn request(&self, query: &Envelope, timeout: Duration) -> Result<Envelope, BusError> {
        dispatch!(self, t => t.request(query, timeout).await)
    }

    /// Up to `max` queries of `types` for this responder, waiting up to `wait`
    /// for the first. Each query goes to one responder.
    pub async fn fetch_queries(
        &self,
        types: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<IncomingQuery>, BusError> {
        dispatch!(self, t => t.fetch_queries(types, max, wait).await)
    }

    /// Answers `query`. A reply after the requester's deadline is dropped.
    pub async fn reply(&self, query: &IncomingQuery, reply: &Envelope) -> Result<(), BusError> {
        dispatch!(self, t => t.reply(query, reply).await)
    }
}
