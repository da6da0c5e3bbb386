//! Persistence of identity: the store contract and its SQL implementation,
//! shared by SQLite and PostgreSQL (their SQL agrees for everything here).
//!
//! The write side (`users`) and the read side (`user_profiles`) are separate
//! tables: a command changes `users` and the same transaction applies the
//! resulting event to the profile projection, which is all queries read.

mod sql;

use std::future::Future;

use time::OffsetDateTime;

use crate::domain::{Email, User, UserEvent, UserId};

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

/// The identity store contract.
pub trait UserStore: Send + Sync + 'static {
    /// Saves a new user and applies `event` to the read model, atomically.
    fn register(&self, user: &User, event: &UserEvent) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The user with this email, from the write side (for sign-in).
    fn user_by_email(&self, email: &Email) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// The profile of a user, from the read side.
    fn profile(&self, id: UserId) -> impl Future<Output = Result<Option<Profile>, StoreError>> + Send;

    /// Records a failed sign-in for `email_key` at `at_unix`.
    fn record_login_failure(
        &self,
        email_key: &str,
        at_unix: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How many sign-ins for `email_key` failed since `since_unix`, and when the oldest of them was.
    fn login_failures_since(
        &self,
        email_key: &str,
        since_unix: i64,
    ) -> impl Future<Output = Result<(i64, Option<i64>), StoreError>> + Send;

    /// Forgets the failures of `email_key` (after a successful sign-in) and
    /// every failure older than `before_unix` (housekeeping).
    fn clear_login_failures(
        &self,
        email_key: &str,
        before_unix: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
