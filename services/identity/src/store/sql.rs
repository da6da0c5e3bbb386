//! The identity store on SQL; the same statements run on SQLite and PostgreSQL.

use chassis::db::Db;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Profile, StoreError, UserStore};
use crate::domain::{DisplayName, Email, PasswordHash, Role, User, UserEvent, UserId};

/// The identity store on a [`Db`] of either dialect.
#[derive(Debug, Clone)]
pub struct SqlUserStore {
    db: Db,
}

impl SqlUserStore {
    /// A store on `db` (already migrated).
    pub fn new(db: Db) -> Self {
        Self { db }
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
        tx.commit().await?;
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

    async fn record_login_failure(&self, email_key: &str, at_unix: i64) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("INSERT INTO login_failures (email_key, at_unix) VALUES ($1, $2)")
            .bind(email_key)
            .bind(at_unix)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn login_failures_since(&self, email_key: &str, since_unix: i64) -> Result<(i64, Option<i64>), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(at_unix) AS oldest FROM login_failures WHERE email_key = $1 AND at_unix >= $2",
        )
        .bind(email_key)
        .bind(since_unix)
        .fetch_one(self.db.reader())
        .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }

    async fn clear_login_failures(&self, email_key: &str, before_unix: i64) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM login_failures WHERE email_key = $1 OR at_unix < $2")
            .bind(email_key)
            .bind(before_unix)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
