//! [`EventStore`]: appends with optimistic concurrency, stream and global
//! reads, temporal reads and snapshots. The SQL is shared by both engines
//! except for how appends are serialised.

use std::sync::Arc;

use chassis::db::{Db, Dialect};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row as _, Transaction};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::error::{AppendError, EventStoreError};
use crate::model::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent, Snapshot};
use crate::timefmt;

/// The key of the PostgreSQL advisory lock every append takes for the rest of
/// its transaction ("bazaar-es" in ASCII), so that appends, and with them
/// global positions, commit one after another.
const APPEND_LOCK_KEY: i64 = 0x6261_7a61_6172_6573;

/// Rows per INSERT statement: 7 parameters each stays far below SQLite's
/// 32766 and PostgreSQL's 65535 bind parameter limits.
const ROWS_PER_INSERT: usize = 1_000;

const EVENT_COLUMNS: &str = "global_position, stream_id, version, event_type, data, metadata, recorded_at";

/// The event store in one service's database (see the crate docs for its guarantees).
#[derive(Debug, Clone)]
pub struct EventStore {
    db: Db,
    /// Bumped after every committed append through this store or its clones,
    /// to wake their waiting [`crate::Subscription`]s before the next poll.
    appended: Arc<watch::Sender<u64>>,
}

/// A number stored as BIGINT. Versions and positions never come near `i64::MAX`,
/// so a bound beyond it is clamped rather than failed.
pub(crate) fn to_db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn from_db(n: i64, what: &str) -> Result<u64, EventStoreError> {
    u64::try_from(n).map_err(|_| EventStoreError::Corrupt(format!("negative {what} {n}")))
}

fn corrupt(what: impl std::fmt::Display) -> EventStoreError {
    EventStoreError::Corrupt(what.to_string())
}

pub(crate) fn event_from_row(row: &AnyRow) -> Result<RecordedEvent, EventStoreError> {
    let data: String = row.try_get("data")?;
    let metadata: String = row.try_get("metadata")?;
    let recorded_at: String = row.try_get("recorded_at")?;
    Ok(RecordedEvent {
        global_position: from_db(row.try_get("global_position")?, "global position")?,
        stream_id: row.try_get("stream_id")?,
        version: from_db(row.try_get("version")?, "version")?,
        event_type: row.try_get("event_type")?,
        data: serde_json::from_str(&data).map_err(corrupt)?,
        metadata: serde_json::from_str(&metadata).map_err(corrupt)?,
        recorded_at: timefmt::parse(&recorded_at).map_err(corrupt)?,
    })
}

/// Events after global position `after`, at most `limit`, in global order, on any executor
/// (the pool, or a projection's open transaction).
pub(crate) async fn read_all_on<'e, E>(
    executor: E,
    after: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, EventStoreError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2"
    )))
    .bind(to_db(after))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(executor)
    .await?;
    rows.iter().map(event_from_row).collect()
}

impl EventStore {
    /// The store on `db`, whose tables [`crate::migrate`] has created.
    pub fn new(db: Db) -> Self {
        Self { db, appended: Arc::new(watch::Sender::new(0)) }
    }

    /// Wakes this store's waiting subscriptions (and those of its clones). Call
    /// it after committing a transaction that used [`Self::append_in`];
    /// [`Self::append`] does it itself. Without it those events still arrive,
    /// by the subscriptions' next poll.
    pub fn notify_appended(&self) {
        // `send_modify` stores the new value even when no subscription is listening.
        self.appended.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A receiver of the append signal, for a new subscription.
    pub(crate) fn appended_signal(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// The database the store lives in, for read models that share it.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Opens a write transaction for [`Self::append_in`] plus the caller's own
    /// writes (`BEGIN IMMEDIATE` on SQLite). Commit it to make both visible at once.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        self.db.begin_write().await
    }

    /// Appends `events` to `stream_id` in their own transaction if the stream
    /// is where `expected` says; otherwise fails with [`AppendError::Conflict`]
    /// and writes nothing.
    pub async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let mut tx = self.begin().await?;
        let appended = self.append_in(&mut tx, stream_id, expected, events).await?;
        tx.commit().await?;
        self.notify_appended();
        Ok(appended)
    }

    /// Appends inside the caller's open write transaction (from [`Self::begin`]),
    /// which the caller commits. On PostgreSQL this takes the append lock until
    /// that transaction ends, so keep the transaction short.
    ///
    /// After an error the transaction must be rolled back (dropping it does that).
    /// After the commit, call [`Self::notify_appended`] so subscriptions see the
    /// events at once rather than at their next poll.
    pub async fn append_in(
        &self,
        conn: &mut AnyConnection,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        if events.is_empty() {
            return Err(AppendError::NoEvents);
        }
        if stream_id.is_empty() {
            return Err(AppendError::EmptyStreamId);
        }
        if self.db.dialect() == Dialect::Postgres {
            // Under READ COMMITTED, every statement after this one sees the
            // appends committed before the lock was granted, and no other
            // append can commit until this transaction ends.
            sqlx::query("SELECT 1::bigint FROM pg_advisory_xact_lock($1)")
                .bind(APPEND_LOCK_KEY)
                .execute(&mut *conn)
                .await?;
        }
        let actual: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_one(&mut *conn)
            .await?;
        let actual = u64::try_from(actual).unwrap_or(0);
        if !expected.admits(actual) {
            return Err(AppendError::Conflict { expected, actual });
        }
        let last_position: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(global_position), 0) FROM events").fetch_one(&mut *conn).await?;
        let recorded_at = timefmt::format(OffsetDateTime::now_utc())
            .map_err(|e| AppendError::Db(sqlx::Error::Encode(Box::new(e))))?;
        let count = events.len() as u64;
        let first_version = actual + 1;
        let first_position = u64::try_from(last_position).unwrap_or(0) + 1;
        let mut offset = 0u64;
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let placeholders: Vec<String> = (0..chunk.len())
                .map(|row| {
                    let p = row * 7;
                    format!("(${}, ${}, ${}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5, p + 6, p + 7)
                })
                .collect();
            let sql = format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES {}", placeholders.join(", "));
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for event in chunk {
                insert = insert
                    .bind(to_db(first_position + offset))
                    .bind(stream_id)
                    .bind(to_db(first_version + offset))
                    .bind(event.event_type.as_str())
                    .bind(event.data.to_string())
                    .bind(event.metadata.to_string())
                    .bind(recorded_at.as_str());
                offset += 1;
            }
            match insert.execute(&mut *conn).await {
                Ok(_) => {}
                // Appends are serialised, so this means a writer bypassed the store;
                // it is still a lost race for the version, never an overwrite.
                Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                    return Err(AppendError::Conflict { expected, actual });
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(AppendResult {
            first_version,
            last_version: actual + count,
            last_global_position: first_position + count - 1,
        })
    }

    /// The stream's current version: that of its last event, 0 when it has none.
    pub async fn stream_version(&self, stream_id: &str) -> Result<u64, EventStoreError> {
        let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_one(self.db.reader())
            .await?;
        from_db(version, "version")
    }

    /// The stream's events from `from_version` (inclusive; 1 for all) in version order.
    pub async fn read_stream(&self, stream_id: &str, from_version: u64) -> Result<Vec<RecordedEvent>, EventStoreError> {
        self.read_stream_range(stream_id, from_version, u64::MAX).await
    }

    /// The stream's events up to and including `version`: what to fold for the
    /// state as of that version.
    pub async fn read_stream_to_version(
        &self,
        stream_id: &str,
        version: u64,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        self.read_stream_range(stream_id, 1, version).await
    }

    async fn read_stream_range(
        &self,
        stream_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version >= $2 AND version <= $3 ORDER BY version"
        )))
        .bind(stream_id)
        .bind(to_db(from))
        .bind(to_db(to))
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The stream as it stood at instant `at`: its events up to the last one
    /// recorded at or before `at` (empty if the stream did not exist yet).
    ///
    /// Always a prefix of the stream, so the fold sees no gaps even if the
    /// clock stepped back between two appends.
    pub async fn read_stream_until(
        &self,
        stream_id: &str,
        at: OffsetDateTime,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        // Stored times are truncated to microseconds; truncating the bound the same
        // way keeps an event recorded within the same microsecond as `at` inside it.
        let bound = timefmt::format(at).map_err(corrupt)?;
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = $1 AND recorded_at <= $2",
        )
        .bind(stream_id)
        .bind(bound)
        .fetch_one(self.db.reader())
        .await?;
        let version = from_db(version, "version")?;
        if version == 0 {
            return Ok(Vec::new());
        }
        self.read_stream_range(stream_id, 1, version).await
    }

    /// At most `limit` events after global position `after` (exclusive; 0 for
    /// the start), in global order. Page on with the last event's position.
    pub async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, EventStoreError> {
        read_all_on(self.db.reader(), after, limit).await
    }

    /// The highest global position committed so far (0 for an empty store).
    pub async fn head_position(&self) -> Result<u64, EventStoreError> {
        let position: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(global_position), 0) FROM events")
            .fetch_one(self.db.reader())
            .await?;
        from_db(position, "global position")
    }

    /// Stores `state` as the stream's state as of `version`, replacing a
    /// snapshot saved earlier for the same version.
    pub async fn save_snapshot(&self, stream_id: &str, version: u64, state: Value) -> Result<(), EventStoreError> {
        let recorded_at = timefmt::format(OffsetDateTime::now_utc()).map_err(corrupt)?;
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO snapshots (stream_id, version, state, recorded_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (stream_id, version) DO UPDATE SET state = excluded.state, recorded_at = excluded.recorded_at",
        )
        .bind(stream_id)
        .bind(to_db(version))
        .bind(state.to_string())
        .bind(recorded_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The stream's snapshot with the highest version, if any.
    pub async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, EventStoreError> {
        let row =
            sqlx::query("SELECT version, state FROM snapshots WHERE stream_id = $1 ORDER BY version DESC LIMIT 1")
                .bind(stream_id)
                .fetch_optional(self.db.reader())
                .await?;
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get("state")?;
        Ok(Some(Snapshot {
            version: from_db(row.try_get("version")?, "version")?,
            state: serde_json::from_str(&state).map_err(corrupt)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_beyond_bigint_are_clamped() {
        assert_eq!(to_db(u64::MAX), i64::MAX);
        assert_eq!(to_db(7), 7);
    }

    #[test]
    fn a_negative_stored_number_is_corrupt() {
        assert!(matches!(from_db(-1, "version"), Err(EventStoreError::Corrupt(_))));
        assert_eq!(from_db(3, "version").ok(), Some(3));
    }
}
