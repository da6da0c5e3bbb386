//! The transactional outbox: the only way a service publishes.
//!
//! A handler that changes state stages its messages with [`Outbox::stage`] in
//! the same database transaction as the change, commits, then calls
//! [`Outbox::notify`]. Either both the change and the messages are stored, or
//! neither is; there is no window in which a crash publishes a message about a
//! change that never happened, or loses one about a change that did. The
//! [`crate::Relay`] then moves the rows to the bus.

use std::sync::Arc;

use chassis::db::{Db, DbError};
use sqlx::{Any, AnyConnection, Transaction};
use tokio::sync::Notify;

use crate::envelope::Envelope;
use crate::error::BusError;

/// Staging and waking for one service's outbox table.
#[derive(Debug, Clone)]
pub struct Outbox {
    db: Db,
    /// Shared with the relay of this process: rung after each commit that staged messages.
    wake: Arc<Notify>,
}

/// How far the relay is behind: what `/metrics` reports as outbox lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLag {
    /// Rows committed but not yet stored by the transport.
    pub messages: u64,
    /// Age of the oldest such row, in milliseconds (0 when there is none).
    pub oldest_ms: u64,
}

impl Outbox {
    /// The outbox in `db` (run [`crate::migrate`] first).
    pub fn new(db: Db) -> Self {
        Self { db, wake: Arc::new(Notify::new()) }
    }

    /// Stages `envelope` in the transaction open on `tx`: it is published if
    /// and only if that transaction commits. (`&mut tx` of a `Transaction` coerces.)
    /// A type no transport accepts is refused here, where the caller can see
    /// it, rather than blocking the relay later.
    pub async fn stage(tx: &mut AnyConnection, envelope: &Envelope) -> Result<(), BusError> {
        crate::check_message_type(&envelope.message_type)
            .map_err(|problem| BusError::Rejected(format!("message type {:?}: {problem}", envelope.message_type)))?;
        sqlx::query("INSERT INTO bus_outbox (message_id, envelope, created_at_ms) VALUES ($1, $2, $3)")
            .bind(envelope.id.to_string())
            .bind(serde_json::to_string(envelope)?)
            .bind(crate::now_ms())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Wakes this process's relay. Call it after committing a transaction that
    /// staged messages; without it they still go out, at the relay's next poll.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Commits `tx` and wakes the relay.
    pub async fn commit(&self, tx: Transaction<'static, Any>) -> Result<(), BusError> {
        tx.commit().await?;
        self.notify();
        Ok(())
    }

    /// How many rows wait for the relay and how old the oldest is.
    pub async fn lag(&self) -> Result<OutboxLag, BusError> {
        let (count, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MIN(created_at_ms) FROM bus_outbox").fetch_one(self.db.reader()).await?;
        let oldest_ms = oldest.map_or(0, |created| crate::now_ms().saturating_sub(created).max(0));
        Ok(OutboxLag { messages: u64::try_from(count).unwrap_or(0), oldest_ms: u64::try_from(oldest_ms).unwrap_or(0) })
    }

    /// Up to `limit` messages waiting for the relay, oldest first.
    pub async fn waiting(&self, limit: usize) -> Result<Vec<Envelope>, BusError> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT envelope FROM bus_outbox ORDER BY position LIMIT $1")
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.db.reader())
            .await?;
        rows.iter().map(|row| serde_json::from_str(row).map_err(BusError::from)).collect()
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Resolves when [`Outbox::notify`] has been called on this outbox or a clone.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// Creates or upgrades the bus tables (outbox, relay lease, inbox) in a
/// service's database. Safe on every start and from several replicas at once.
pub async fn migrate(db: &Db) -> Result<(), DbError> {
    db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await
}

/// The history table of the bus's own migrations, apart from the service's.
const MIGRATIONS_TABLE: &str = "_bus_migrations";

static SQLITE_MIGRATIONS: std::sync::LazyLock<sqlx::migrate::Migrator> = std::sync::LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
});

static POSTGRES_MIGRATIONS: std::sync::LazyLock<sqlx::migrate::Migrator> = std::sync::LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
});
