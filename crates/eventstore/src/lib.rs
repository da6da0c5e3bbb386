//! The event store of bazaar: append-only streams of events on SQLite or
//! PostgreSQL, the source of truth for event-sourced aggregates (the Order).
//!
//! What it guarantees:
//! - **Optimistic concurrency.** [`EventStore::append`] takes an
//!   [`ExpectedVersion`]; when the stream is not where the caller expected, the
//!   append fails with [`AppendError::Conflict`] and writes nothing. Of any
//!   number of concurrent appenders expecting one version, exactly one wins.
//! - **One global order.** Every event gets a `global_position`, assigned as
//!   `MAX + 1` inside the write transaction. Appends are serialised (SQLite's
//!   single writer under `BEGIN IMMEDIATE`; a transaction-scoped advisory lock on
//!   PostgreSQL), so positions commit in order and without gaps: a reader that
//!   has seen position `n` never later finds a new event below `n`. That is
//!   what lets [`EventStore::read_all`] and projections keep a plain number as
//!   their checkpoint.
//! - **Temporal queries.** [`EventStore::read_stream_to_version`] and
//!   [`EventStore::read_stream_until`] return the prefix of a stream as it
//!   stood at a version or an instant, to fold into the state as of then.
//! - **Snapshots.** [`EventStore::save_snapshot`] stores a folded state at a
//!   version; [`EventStore::load_snapshot`] returns the latest, so a load reads
//!   only the events after it.
//! - **Projections.** A [`Projection`] keeps a read model in the same database;
//!   [`EventStore::run_projection_batch`] applies the next events and advances
//!   the projection's checkpoint in one transaction, so the read model never
//!   sees an event twice or misses one, and [`EventStore::rebuild`] replays it
//!   from zero.
//! - **Subscriptions.** [`EventStore::subscribe_all`] returns a [`Subscription`]
//!   that catches up on the events after a position and then waits for new
//!   ones: woken at once by appends through the same store (or
//!   [`EventStore::notify_appended`]), and by polling for the rest.
//!
//! Writers that keep a read model in step with the append (the order detail a
//! GET must find right after the 202) open a transaction with
//! [`EventStore::begin`], call [`EventStore::append_in`] and their own writes,
//! and commit once, then call [`EventStore::notify_appended`].
//!
//! Tables: `events`, `snapshots`, `projection_checkpoints`, created by
//! [`migrate`] in the service's own database. The store's migrations keep their
//! own history table (`_eventstore_migrations`) so they never clash with the
//! service's numbering.

mod error;
mod model;
mod projection;
mod store;
mod subscription;
mod timefmt;

pub use error::{AppendError, BoxError, EventStoreError};
pub use model::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent, Snapshot};
pub use projection::Projection;
pub use store::EventStore;
pub use subscription::{DEFAULT_POLL_INTERVAL, Subscription};

use std::sync::LazyLock;

use chassis::db::{Db, DbError};
use sqlx::migrate::Migrator;

/// The history table of the store's own migrations, apart from the service's.
const MIGRATIONS_TABLE: &str = "_eventstore_migrations";

static SQLITE_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
});

static POSTGRES_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
});

/// Creates or upgrades the event store's tables in `db`. Safe to call on every
/// start and from several replicas at once.
pub async fn migrate(db: &Db) -> Result<(), DbError> {
    db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await
}
