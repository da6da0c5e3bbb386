//! Database access for both profiles: SQLite files (embedded) and PostgreSQL
//! databases (distributed), behind one pool type so that a store's SQL is
//! shared wherever the dialects agree and branches on [`Dialect`] where they
//! do not (upserts, JSON, full-text search, locking).
//!
//! SQLite runs in WAL mode with a busy timeout; it gets a pool of readers and
//! a single writer connection, and every writing transaction starts with
//! `BEGIN IMMEDIATE` so concurrent writers (also across processes sharing the
//! file, as replicas do) queue on the lock instead of failing on upgrade.

use std::path::Path;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, ConnectOptions as _, Connection as _, Executor as _, Transaction};

/// How long an SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// When an SQLite commit reaches the disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// `NORMAL`, the default: in WAL mode a commit survives a crash of the
    /// process, but the last commits may be lost if the machine loses power.
    #[default]
    Normal,
    /// `FULL`: every commit is flushed to the disk before it returns, so no
    /// acknowledged commit is lost even to a power cut. Costs one fsync per
    /// commit; for stores that acknowledge durability to others (the broker's log).
    Full,
}

impl SqliteSync {
    fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

/// The SQL dialect of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3 (embedded profile).
    Sqlite,
    /// PostgreSQL (distributed profile).
    Postgres,
}

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names neither `sqlite:` nor `postgres:`.
    #[error("database url `{0}` is neither sqlite:// nor postgres://")]
    UnknownScheme(String),
    /// The directory of an SQLite file cannot be created or written.
    #[error("cannot use {path} for the database")]
    Directory {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// One service's database: a read pool and a write pool (the same pool on PostgreSQL).
#[derive(Debug, Clone)]
pub struct Db {
    dialect: Dialect,
    read: AnyPool,
    write: AnyPool,
    /// The SQLite file, for the cross-process migration lock.
    sqlite_path: Option<std::path::PathBuf>,
}

impl Db {
    /// Opens the database at `url`, creating an SQLite file (and its directory) if missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        Self::connect_with_sync(url, max_connections, SqliteSync::Normal).await
    }

    /// Like [`Db::connect`], with SQLite commits flushed as `sync` says
    /// (PostgreSQL ignores it: its commits are durable by default).
    pub async fn connect_with_sync(url: &str, max_connections: u32, sync: SqliteSync) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(DbError::UnknownScheme(url.to_owned()));
        };
        match dialect {
            Dialect::Sqlite => Self::connect_sqlite(url, max_connections, sync).await,
            Dialect::Postgres => {
                let options = AnyConnectOptions::from_str(url).map_err(DbError::Connect)?.disable_statement_logging();
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(DbError::Connect)?;
                Ok(Self { dialect, read: pool.clone(), write: pool, sqlite_path: None })
            }
        }
    }

    async fn connect_sqlite(url: &str, max_connections: u32, sync: SqliteSync) -> Result<Self, DbError> {
        let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap_or(path);
        if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| DbError::Directory { path: dir.display().to_string(), source })?;
        }
        let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
        let options = AnyConnectOptions::from_str(&url).map_err(DbError::Connect)?.disable_statement_logging();
        let synchronous = sync.pragma();
        let pool = |size: u32| {
            AnyPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        conn.execute(sqlx::AssertSqlSafe(format!(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; \
                             PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
                        )))
                        .await?;
                        Ok(())
                    })
                })
                .connect_with(options.clone())
        };
        // The writer is opened first so WAL mode is set before any reader connects.
        let write = pool(1).await.map_err(DbError::Connect)?;
        let read = pool(max_connections.max(1)).await.map_err(DbError::Connect)?;
        Ok(Self { dialect: Dialect::Sqlite, read, write, sqlite_path: Some(path.into()) })
    }

    /// Applies the migrations of this database's engine.
    ///
    /// Replicas of a service may start together on one database. PostgreSQL
    /// migrations serialise on an advisory lock (sqlx takes it); SQLite has no
    /// such lock, so the replicas serialise on an exclusive lock of a file
    /// beside the database, and the later ones find the work done.
    pub async fn migrate(&self, sqlite: &Migrator, postgres: &Migrator) -> Result<(), DbError> {
        match (self.dialect, &self.sqlite_path) {
            (Dialect::Sqlite, Some(path)) => {
                let lock_path = path.with_extension("migrate-lock");
                let directory = |source| DbError::Directory { path: lock_path.display().to_string(), source };
                let file = std::fs::File::create(&lock_path).map_err(directory)?;
                let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                    .await
                    .map_err(|e| directory(std::io::Error::other(e)))?
                    .map_err(directory)?;
                let result = sqlite.run(&self.write).await;
                // Dropping the file releases the lock.
                drop(file);
                result?;
            }
            (Dialect::Sqlite, None) => sqlite.run(&self.write).await?,
            (Dialect::Postgres, _) => postgres.run(&self.write).await?,
        }
        Ok(())
    }

    /// The dialect, for the queries that differ between engines.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The pool for reads.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// Starts a transaction that will write: `BEGIN IMMEDIATE` on SQLite takes
    /// the write lock up front, so the transaction cannot fail later on upgrade.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.write.begin().await,
        }
    }

    /// One round trip to the database, timed: the health check.
    pub async fn ping(&self) -> Result<Duration, sqlx::Error> {
        let started = Instant::now();
        let mut conn = self.read.acquire().await?;
        conn.ping().await?;
        Ok(started.elapsed())
    }

    /// Closes both pools, waiting for connections in use to return.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Creates database `name` on the PostgreSQL server at `server_url` if it does
/// not exist yet, and returns the URL of that database.
pub async fn ensure_postgres_database(server_url: &str, name: &str) -> Result<String, DbError> {
    sqlx::any::install_default_drivers();
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(DbError::UnknownScheme(format!("database name {name}")));
    }
    let mut conn = AnyConnectOptions::from_str(server_url)
        .map_err(DbError::Connect)?
        .disable_statement_logging()
        .connect()
        .await
        .map_err(DbError::Connect)?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1::bigint FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await
        .map_err(DbError::Connect)?;
    if exists.is_none() {
        // The name was checked above to be a plain identifier, so it is safe to splice in.
        let created = conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await;
        // Two processes may race to create it; losing that race is fine.
        if let Err(error) = created
            && !error.to_string().contains("already exists")
        {
            return Err(DbError::Connect(error));
        }
    }
    let _ = conn.close().await;
    Ok(replace_database_in_url(server_url, name))
}

/// Swaps the database name in a PostgreSQL URL (`postgres://u@h:p/old?x` -> `.../name?x`).
pub fn replace_database_in_url(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_name_keeping_the_query() {
        assert_eq!(
            replace_database_in_url("postgres://u:p@127.0.0.1:5432/postgres?host=/tmp", "bazaar_catalog"),
            "postgres://u:p@127.0.0.1:5432/bazaar_catalog?host=/tmp"
        );
        assert_eq!(replace_database_in_url("postgres://h:1", "x"), "postgres://h:1/x");
    }

    #[tokio::test]
    async fn sqlite_file_and_its_directory_are_created_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("nested/svc.sqlite");
        let db = Db::connect(&format!("sqlite://{}", path.display()), 2).await.unwrap_or_else(|e| panic!("{e}"));
        let mode: String =
            sqlx::query_scalar("PRAGMA journal_mode").fetch_one(db.reader()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode, "wal");
        assert!(path.exists());
        assert!(db.ping().await.is_ok());
    }

    #[tokio::test]
    async fn replicas_migrating_one_sqlite_file_at_once_all_succeed() {
        static MIGRATIONS: Migrator = sqlx::migrate!("./tests/migrations");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = format!("sqlite://{}/shared.sqlite", dir.path().display());
        let replicas = (0..4).map(|_| {
            let url = url.clone();
            async move {
                let db = Db::connect(&url, 1).await?;
                db.migrate(&MIGRATIONS, &MIGRATIONS).await
            }
        });
        for result in futures_util::future::join_all(replicas).await {
            assert!(result.is_ok(), "{result:?}");
        }
    }

    #[tokio::test]
    async fn sqlite_commits_are_flushed_as_asked() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
        let synchronous = |db: Db| async move {
            let mut tx = db.begin_write().await.unwrap_or_else(|e| panic!("{e}"));
            let level: i64 =
                sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *tx).await.unwrap_or_else(|e| panic!("{e}"));
            level
        };
        let normal = Db::connect(&url("normal.sqlite"), 1).await.unwrap_or_else(|e| panic!("{e}"));
        let full =
            Db::connect_with_sync(&url("full.sqlite"), 1, SqliteSync::Full).await.unwrap_or_else(|e| panic!("{e}"));
        // SQLite reports NORMAL as 1 and FULL as 2.
        assert_eq!(synchronous(normal).await, 1);
        assert_eq!(synchronous(full).await, 2);
    }

    #[tokio::test]
    async fn rejects_an_unknown_scheme() {
        assert!(matches!(Db::connect("mysql://x", 1).await, Err(DbError::UnknownScheme(_))));
    }
}
