//! The message bus of bazaar, as every service uses it: typed messages in a
//! versioned [`Envelope`], published only through a transactional outbox and
//! consumed at least once through an inbox, over one of two transports: the
//! embedded broker process (one machine) or NATS JetStream (many).
//!
//! # Layout
//!
//! - `envelope`: the envelope, message kinds and the typed [`Message`] trait.
//! - `transport`: the one interface over both transports; the contract they keep.
//! - `embedded`: the client of the embedded broker (`services/broker`).
//! - `jetstream`: the NATS JetStream transport.
//! - `error`: [`BusError`].

mod embedded;
mod envelope;
mod error;
mod jetstream;
mod transport;

pub use embedded::EmbeddedTransport;
pub use envelope::{Envelope, Kind, Message, SUBJECT_PREFIX, bus_subject};
pub use error::BusError;
pub use jetstream::{JetStreamOptions, JetStreamTransport};
pub use transport::{DeadLetter, Delivery, IncomingQuery, Subscription, Transport};
