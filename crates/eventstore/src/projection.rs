//! Projections: read models derived from the events, kept in the same
//! database, whose checkpoint commits in the same transaction as the read
//! model's changes. A crash between two batches therefore loses nothing and
//! repeats nothing: the read model and its checkpoint always agree.

use std::future::Future;

use chassis::db::Dialect;
use sqlx::AnyConnection;

use crate::error::{BoxError, EventStoreError};
use crate::model::RecordedEvent;
use crate::store::{EventStore, from_db, read_all_on, to_db};

/// Events per batch when [`EventStore::rebuild`] replays a projection.
const REBUILD_BATCH: usize = 500;

/// A read model fed from the event store in global order.
///
/// `apply` and `reset` run inside the store's write transaction: they must
/// write only through the connection they are given, so that their changes
/// commit (or roll back) together with the checkpoint.
pub trait Projection: Send + Sync {
    /// The projection's name, the key of its checkpoint. Changing it starts over.
    fn name(&self) -> &str;

    /// Folds one event into the read model. An error rolls back the whole
    /// batch, checkpoint included; the batch is tried again on the next run.
    fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Empties the read model (creating its tables if needed) before a rebuild.
    fn reset(&self, conn: &mut AnyConnection) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Makes sure `name` has a checkpoint row and returns its position, locked
/// until the transaction ends on PostgreSQL so that two runners of one
/// projection take turns instead of applying one batch twice (on SQLite the
/// write transaction already excludes every other writer).
async fn lock_checkpoint(conn: &mut AnyConnection, dialect: Dialect, name: &str) -> Result<u64, EventStoreError> {
    sqlx::query("INSERT INTO projection_checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let sql = match dialect {
        Dialect::Sqlite => "SELECT position FROM projection_checkpoints WHERE name = $1",
        Dialect::Postgres => "SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
    };
    let position: i64 = sqlx::query_scalar(sql).bind(name).fetch_one(&mut *conn).await?;
    from_db(position, "checkpoint")
}

async fn set_checkpoint(conn: &mut AnyConnection, name: &str, position: u64) -> Result<(), EventStoreError> {
    sqlx::query("UPDATE projection_checkpoints SET position = $2 WHERE name = $1")
        .bind(name)
        .bind(to_db(position))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl EventStore {
    /// The global position the projection `name` has applied up to (0 if it never ran).
    pub async fn checkpoint(&self, name: &str) -> Result<u64, EventStoreError> {
        let position: Option<i64> = sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db().reader())
            .await?;
        from_db(position.unwrap_or(0), "checkpoint")
    }

    /// Applies up to `batch` events after the projection's checkpoint and
    /// advances the checkpoint past them, all in one write transaction.
    /// Returns how many events were applied (0 when the projection is caught up).
    ///
    /// If `apply` fails, nothing of the batch is visible: neither the read
    /// model's changes nor the checkpoint's advance.
    pub async fn run_projection_batch<P: Projection>(
        &self,
        projection: &P,
        batch: usize,
    ) -> Result<usize, EventStoreError> {
        let name = projection.name();
        let mut tx = self.db().begin_write().await?;
        let after = lock_checkpoint(&mut tx, self.db().dialect(), name).await?;
        let events = read_all_on(&mut *tx, after, batch.max(1)).await?;
        let Some(last) = events.last().map(|e| e.global_position) else {
            tx.commit().await?;
            return Ok(0);
        };
        for event in &events {
            projection.apply(&mut tx, event).await.map_err(|source| EventStoreError::Projection {
                name: name.to_owned(),
                position: event.global_position,
                source,
            })?;
        }
        set_checkpoint(&mut tx, name, last).await?;
        tx.commit().await?;
        Ok(events.len())
    }

    /// Runs batches of `batch` until the projection has applied every event
    /// committed when it started; returns how many it applied.
    pub async fn catch_up<P: Projection>(&self, projection: &P, batch: usize) -> Result<usize, EventStoreError> {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            let applied = self.run_projection_batch(projection, batch).await?;
            total += applied;
            // A short batch means the end was reached; stopping there keeps a
            // steady stream of new events from holding the caller forever.
            if applied < batch {
                return Ok(total);
            }
        }
    }

    /// Rebuilds the projection from zero: resets its read model and its
    /// checkpoint in one transaction, then replays every event. Returns how
    /// many events were applied.
    pub async fn rebuild<P: Projection>(&self, projection: &P) -> Result<usize, EventStoreError> {
        let name = projection.name();
        let mut tx = self.db().begin_write().await?;
        lock_checkpoint(&mut tx, self.db().dialect(), name).await?;
        projection.reset(&mut tx).await.map_err(|source| EventStoreError::Projection {
            name: name.to_owned(),
            position: 0,
            source,
        })?;
        set_checkpoint(&mut tx, name, 0).await?;
        tx.commit().await?;
        self.catch_up(projection, REBUILD_BATCH).await
    }
}
