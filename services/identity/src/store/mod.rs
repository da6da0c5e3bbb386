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

use crate::domain::{Email, SignInKey, User, UserEvent, UserId};

pub use sql::SqlUserStore;

/// The schema; one set of migrations serves both engines, since identity's SQL is portable.
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Brings `db` to the current schema.
pub async fn migrate(db: &chassis::db::Db) -> Result<(), chassis::db::DbError> {
    db.migrate(&MIGRATIONS, &MIGRATIONS).await
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
    /// The attempt was recorded; check the password.
    Allowed,
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
    /// there are fewer than `max_attempts`, records this one (at `now`) and
    /// answers [`AttemptOutcome::Allowed`]; otherwise records nothing and
    /// answers [`AttemptOutcome::Throttled`] with the seconds until the oldest
    /// counted attempt leaves the window (at least 1).
    ///
    /// Count and record are one atomic step, also across processes sharing the
    /// database: of any number of concurrent calls for one key, at most
    /// `max_attempts` are allowed per window. The attempt is recorded before
    /// the outcome is known so that slow verifications running in parallel
    /// cannot all pass a check made before any of them failed; a sign-in that
    /// succeeds withdraws it with [`UserStore::clear_attempts`].
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

    /// Forgets every attempt recorded for `key`: the sign-in succeeded.
    fn clear_attempts(&self, key: &SignInKey) -> impl Future<Output = Result<(), StoreError>> + Send;
}
