//! The message bus of bazaar, as every service uses it: typed messages in a
//! versioned [`Envelope`], published only through a transactional [`Outbox`]
//! and consumed at least once through an inbox, over one of two transports:
//! the embedded broker process (one machine) or NATS JetStream (many).
//!
//! A service wires it up like this:
//! 1. [`migrate`] its database (adds the outbox, relay lease and inbox tables);
//! 2. stage messages with [`Outbox::stage`] in the transaction that changes
//!    state, then [`Outbox::commit`] (or commit and [`Outbox::notify`]);
//! 3. run one [`Relay`] per process, which moves committed rows to the bus;
//! 4. run a [`Consumer`] per consumer group with a [`Handler`] that applies
//!    each message inside the inbox transaction.
//!
//! # Layout
//!
//! - `envelope`: the envelope, message kinds and the typed [`Message`] trait.
//! - `outbox`: staging messages in the caller's transaction; the bus tables' migrations.
//! - `relay`: moving outbox rows to the bus, in order, one replica at a time.
//! - `consumer`: inbox, handler, ack after commit, retries, dead letters.
//! - `backoff`: exponential backoff with jitter.
//! - `query`: request-reply with a deadline.
//! - `settings`: `[<service>.bus]` and connecting to the transport it names.
//! - `transport`: the one interface over both transports and the contract they keep.
//! - `embedded`: the client of the embedded broker (`services/broker`).
//! - `jetstream`: the NATS JetStream transport.
//! - `metric`: metric names.
//! - `error`: [`BusError`].

mod backoff;
mod consumer;
mod embedded;
mod envelope;
mod error;
mod jetstream;
pub mod metric;
mod outbox;
mod query;
mod relay;
mod settings;
mod transport;

pub use backoff::Backoff;
pub use consumer::{Consumer, ConsumerOptions, Handler, HandlerError, Outcome, prune_inbox};
pub use embedded::EmbeddedTransport;
pub use envelope::{
    Envelope, Kind, MAX_GROUP_NAME, MAX_TYPE_LEN, Message, SUBJECT_PREFIX, bus_subject, check_group_name,
    check_message_type,
};
pub use error::BusError;
pub use jetstream::{JetStreamOptions, JetStreamTransport};
pub use outbox::{Outbox, OutboxLag, migrate};
pub use query::{request, serve_queries};
pub use relay::{Drained, Relay, RelayOptions};
pub use settings::{BusSettings, TransportKind, connect_until_stopped, with_relay};
pub use transport::{DeadLetter, Delivery, IncomingQuery, Subscription, Transport};

/// Milliseconds since the Unix epoch, as the bus tables and the broker's log store times.
pub fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(nanos).unwrap_or(i64::MAX)
}
