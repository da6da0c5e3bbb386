//! Persistence of identity: the store contract and its SQL implementation,
//! shared by SQLite and PostgreSQL (their SQL agrees for everything but how
//! the sign-in throttle serialises attempts for one key).
//!
//! The write side (`users`) and the read side (`user_profiles`) are separate
//! tables: a command changes `users` and the same transaction applies the
//! resulting event to the profile projection, which is all queries read.
//! Sign-in attempts, for the throttle, live in a table of their own.

mod sql;

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;

use crate::domain::{AttemptId, Email, SignInKey, User, UserEvent, UserId};

pub use sql::SqlUserStore;

/// The schema; one set of migrations serves both engines, since identity's SQL is portable.
///
/// A migration, once published, is never edited: databases record each
/// applied migration's checksum and refuse to start when a file no longer
/// matches it. A change to the schema is a new migration.
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Brings `db` to the current schema, with the bus's outbox and inbox tables.
pub async fn migrate(db: &chassis::db::Db) -> Result<(), chassis::db::DbError> {
    db.migrate(&MIGRATIONS, &MIGRATIONS).await?;
    bus::migrate(db).await
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another account has this email.
    #[error("email is taken")]
    EmailTaken,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A stored row no longer reads as a valid value.
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
}

impl From<bus::BusError> for StoreError {
    fn from(error: bus::BusError) -> Self {
        match error {
            bus::BusError::Db(db) => Self::Db(db),
            // Staging only writes to the database; anything else is a message that does not encode.
            other => Self::Corrupt(other.to_string()),
        }
    }
}

/// The read model of a user: what `GET /users/me` returns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Profile {
    /// The user's id.
    pub id: uuid::Uuid,
    /// The sign-in address.
    pub email: String,
    /// The display name.
    pub name: String,
    /// The roles (`customer`, `admin`).
    pub roles: Vec<String>,
    /// When the account was created (RFC 3339 UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// The answer of [`UserStore::try_begin_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The attempt was recorded under this id; check the password, and
    /// withdraw the attempt if it is right.
    Allowed(AttemptId),
    /// Too many attempts for this key in the window; nothing was recorded.
    Throttled {
        /// Seconds until an attempt is allowed again (at least 1).
        retry_after_secs: u64,
    },
}

/// The identity store contract.
pub trait UserStore: Send + Sync + 'static {
    /// Saves a new user and applies `event` to the read model, atomically.
    fn register(&self, user: &User, event: &UserEvent) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The user with this email, from the write side (for sign-in).
    fn user_by_email(&self, email: &Email) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// The profile of a user, from the read side.
    fn profile(&self, id: UserId) -> impl Future<Output = Result<Option<Profile>, StoreError>> + Send;

    /// The sign-in throttle's one step before a password is checked: counts
    /// the attempts recorded for `key` in the `window` up to `now` and, if
    /// there are fewer than `max_attempts`, records this one (at `now`, under
    /// a fresh id) and answers [`AttemptOutcome::Allowed`] with that id; otherwise records nothing and
    /// answers [`AttemptOutcome::Throttled`] with the seconds until the oldest
    /// counted attempt leaves the window (at least 1).
    ///
    /// Count and record are one atomic step, also across processes sharing the
    /// database: of any number of concurrent calls for one key, at most
    /// `max_attempts` are allowed per window. The attempt is recorded before
    /// the outcome is known so that slow verifications running in parallel
    /// cannot all pass a check made before any of them failed; a sign-in that
    /// succeeds withdraws its own attempt, and only that one, with
    /// [`UserStore::withdraw_attempt`]. So every failure counts for the whole
    /// window, whether or not a success comes between.
    ///
    /// The same step deletes every key's attempts older than the window, so
    /// the table holds at most one window of attempts. All callers must
    /// therefore use the same `window`.
    fn try_begin_attempt(
        &self,
        key: &SignInKey,
        now: OffsetDateTime,
        window: Duration,
        max_attempts: u32,
    ) -> impl Future<Output = Result<AttemptOutcome, StoreError>> + Send;

    /// Forgets the attempt recorded under `id`: that sign-in succeeded. Other
    /// attempts for the same key stay counted. Withdrawing an attempt that is
    /// gone already (pruned, or withdrawn before) does nothing.
    fn withdraw_attempt(&self, id: AttemptId) -> impl Future<Output = Result<(), StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    /// `migrations/0001_identity.sql` as first published: the bytes whose
    /// checksum every existing identity database has recorded for migration 1.
    const PUBLISHED_0001: &str = r#"-- Write side: the User aggregate's state, read only by commands (register, login).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,      -- comma-separated, sorted
    created_at    TEXT NOT NULL       -- RFC 3339 UTC
);

-- Read side: the profile query model, fed by the user events in the same
-- transaction as the write. Queries never touch `users`.
CREATE TABLE user_profiles (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL,
    roles      TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Failed sign-ins per submitted email (whether or not an account exists), for throttling.
CREATE TABLE login_failures (
    email_key TEXT NOT NULL,
    at_unix   BIGINT NOT NULL
);
CREATE INDEX login_failures_by_key ON login_failures (email_key, at_unix);
"#;

    #[test]
    fn the_first_migration_is_byte_for_byte_the_published_one() {
        let first = MIGRATIONS.iter().find(|m| m.version == 1).expect("migration 1 exists");
        let published = sqlx::migrate::Migration::new(
            1,
            "identity".into(),
            sqlx::migrate::MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(PUBLISHED_0001),
            false,
        );
        // The SHA-384 of the file as published, so the text above cannot drift either.
        let published_hex: String = published.checksum.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            published_hex,
            "6cef917bbf7c4fdb6d0726ddc311da0437fcfe8bfe6b45ef2b2d1f3bfd9b2a8ce061cad7eff7c29b4fb27df23dfade41"
        );
        assert!(
            first.checksum == published.checksum,
            "migrations/0001_identity.sql differs from the published file, so every existing database would \
             refuse to start (\"migration 1 was previously applied but has been modified\"). Restore it and \
             change the schema in a new migration instead."
        );
    }

    #[test]
    fn migrations_are_numbered_one_after_another() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<i64> = (1..=i64::try_from(versions.len()).expect("few migrations")).collect();
        assert_eq!(versions, expected);
    }
}
