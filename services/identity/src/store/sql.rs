//! The identity store on SQL; the same statements run on SQLite and PostgreSQL,
//! except where the sign-in throttle serialises attempts and prunes old ones.

use std::time::Duration;

use chassis::db::{Db, Dialect};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{AttemptOutcome, Profile, StoreError, UserStore};
use crate::domain::{AttemptId, DisplayName, Email, PasswordHash, Role, SignInKey, User, UserEvent, UserId};

/// The identity store on a [`Db`] of either dialect.
#[derive(Debug, Clone)]
pub struct SqlUserStore {
    db: Db,
    outbox: bus::Outbox,
}

impl SqlUserStore {
    /// A store on `db` (already migrated), publishing through the outbox in `db`.
    pub fn new(db: Db) -> Self {
        Self { outbox: bus::Outbox::new(db.clone()), db }
    }

    /// The outbox the store stages its events in, for the relay.
    pub fn outbox(&self) -> &bus::Outbox {
        &self.outbox
    }
}

fn roles_text(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn parse_time(text: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(corrupt)
}

fn format_time(at: OffsetDateTime) -> Result<String, StoreError> {
    at.format(&Rfc3339).map_err(corrupt)
}

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let id: String = row.try_get("id")?;
    let email: String = row.try_get("email")?;
    let name: String = row.try_get("name")?;
    let hash: String = row.try_get("password_hash")?;
    let roles: String = row.try_get("roles")?;
    let created_at: String = row.try_get("created_at")?;
    Ok(User::restore(
        UserId::from_uuid(id.parse().map_err(corrupt)?),
        Email::parse(&email).map_err(corrupt)?,
        DisplayName::parse(&name).map_err(corrupt)?,
        PasswordHash::from_phc(hash).map_err(corrupt)?,
        roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(|r| r.parse::<Role>().map_err(corrupt))
            .collect::<Result<_, _>>()?,
        parse_time(&created_at)?,
    ))
}

impl UserStore for SqlUserStore {
    async fn register(&self, user: &User, event: &UserEvent) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, roles, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id().to_string())
        .bind(user.email().as_str())
        .bind(user.name().as_str())
        .bind(user.password_hash().as_str())
        .bind(roles_text(user.roles()))
        .bind(format_time(user.created_at())?)
        .execute(&mut *tx)
        .await;
        if let Err(sqlx::Error::Database(db)) = &inserted
            && db.is_unique_violation()
        {
            return Err(StoreError::EmailTaken);
        }
        inserted?;
        // The projection: the read model learns of the user from the event, as
        // a separate process would, but in the same transaction.
        match event {
            UserEvent::Registered(registered) => {
                sqlx::query(
                    "INSERT INTO user_profiles (id, email, name, roles, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(registered.user_id.to_string())
                .bind(registered.email.as_str())
                .bind(registered.name.as_str())
                .bind(roles_text(user.roles()))
                .bind(format_time(user.created_at())?)
                .execute(&mut *tx)
                .await?;
            }
        }
        // Published if and only if the user exists.
        let envelope = crate::messages::envelope(event).map_err(corrupt)?;
        bus::Outbox::stage(&mut tx, &envelope).await?;
        self.outbox.commit(tx).await?;
        Ok(())
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, name, password_hash, roles, created_at FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(self.db.reader())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn profile(&self, id: UserId) -> Result<Option<Profile>, StoreError> {
        let row = sqlx::query("SELECT id, email, name, roles, created_at FROM user_profiles WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id")?;
        let roles: String = row.try_get("roles")?;
        let created_at: String = row.try_get("created_at")?;
        Ok(Some(Profile {
            id: id.parse().map_err(corrupt)?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            roles: roles.split(',').filter(|r| !r.is_empty()).map(str::to_owned).collect(),
            created_at: parse_time(&created_at)?,
        }))
    }

    async fn try_begin_attempt(
        &self,
        key: &SignInKey,
        now: OffsetDateTime,
        window: Duration,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StoreError> {
        let key = key.to_string();
        let now = now.unix_timestamp();
        let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        let window_start = now.saturating_sub(window);
        let mut tx = self.db.begin_write().await?;
        match self.db.dialect() {
            // BEGIN IMMEDIATE already holds the database's single write lock.
            Dialect::Sqlite => {
                sqlx::query("DELETE FROM sign_in_attempts WHERE at_unix < $1")
                    .bind(window_start)
                    .execute(&mut *tx)
                    .await?;
            }
            Dialect::Postgres => {
                // Read committed would let two transactions both count four and
                // both insert: the advisory lock, released at commit, serialises
                // the attempts on one key (and only those).
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?;
                // Rows another attempt is pruning are skipped, not waited for:
                // they are out of the window anyway, and a sign-in should not
                // queue behind another key's housekeeping.
                sqlx::query(
                    "DELETE FROM sign_in_attempts WHERE ctid IN \
                     (SELECT ctid FROM sign_in_attempts WHERE at_unix < $1 FOR UPDATE SKIP LOCKED)",
                )
                .bind(window_start)
                .execute(&mut *tx)
                .await?;
            }
        }
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(at_unix) AS oldest FROM sign_in_attempts WHERE attempt_key = $1 AND at_unix >= $2",
        )
        .bind(&key)
        .bind(window_start)
        .fetch_one(&mut *tx)
        .await?;
        let counted: i64 = row.try_get("n")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        let outcome = if counted < i64::from(max_attempts) {
            let id = AttemptId::new();
            sqlx::query("INSERT INTO sign_in_attempts (attempt_id, attempt_key, at_unix) VALUES ($1, $2, $3)")
                .bind(id.to_string())
                .bind(&key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            AttemptOutcome::Allowed(id)
        } else {
            let retry = oldest.map_or(window, |oldest| oldest.saturating_add(window).saturating_sub(now));
            AttemptOutcome::Throttled { retry_after_secs: u64::try_from(retry).unwrap_or(0).max(1) }
        };
        // Committed either way: the prune is worth keeping.
        tx.commit().await?;
        Ok(outcome)
    }

    async fn withdraw_attempt(&self, id: AttemptId) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM sign_in_attempts WHERE attempt_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
