//! What the `bazaar` binary needs to run any service: the options of
//! `bazaar serve <name>` and the error a service's start-up can end in.
//! Every service crate exposes `pub async fn serve(ServeOptions, Shutdown) -> Result<(), StartError>`.

use std::path::PathBuf;

use crate::config::{ConfigError, Sources};
use crate::db::DbError;

/// How `bazaar serve <name>` runs one service process.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The data directory (`./.bazaar` by default): databases, keys and logs live under it.
    pub data_dir: PathBuf,
    /// Which replica this process is (1-based), for log lines and file names.
    pub instance: u32,
    /// Where configuration comes from (files, env, flags).
    pub sources: Sources,
}

/// Why a service could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A socket or file could not be used.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Any other set-up step failed; the message says which and why.
    #[error("{0}")]
    Setup(String),
}

/// How long background workers get to finish after the server has drained.
const WORKER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A background worker's body: given the shutdown signal, runs until it fires.
type Worker = Box<dyn FnOnce(crate::server::Shutdown) -> tokio::task::JoinHandle<()> + Send>;

/// A built service, ready to serve: its full router (own routes inside the
/// chassis stack), its health, its background workers (outbox relay,
/// consumers) and what to close on the way out.
pub struct Service {
    name: &'static str,
    router: axum::Router,
    health: crate::health::Health,
    db: Option<crate::db::Db>,
    http: crate::config::HttpSettings,
    workers: Vec<Worker>,
}

impl Service {
    /// Wraps `routes` in the chassis stack (health, metrics, problems, limits, tracing).
    pub fn new(
        name: &'static str,
        routes: axum::Router,
        health: crate::health::Health,
        http: &crate::config::HttpSettings,
    ) -> Self {
        let router = crate::server::stack(routes, &health, http.body_limit_bytes);
        Self { name, router, health, db: None, http: http.clone(), workers: Vec::new() }
    }

    /// Runs `worker` beside the server from the moment it serves. It gets the
    /// same shutdown signal, and the database is closed only after it has
    /// finished (or had a few seconds to), so a relay can flush its outbox.
    pub fn with_worker<F, Fut, E>(mut self, name: &'static str, worker: F) -> Self
    where
        F: FnOnce(crate::server::Shutdown) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.workers.push(Box::new(move |shutdown| crate::task::spawn(name, worker(shutdown))));
        self
    }

    /// Closes `db` after the server has drained.
    pub fn with_db(mut self, db: crate::db::Db) -> Self {
        self.db = Some(db);
        self
    }

    /// The complete router, for tests that drive it without a socket.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// Binds the configured `http.host:http.port` and serves until `shutdown`.
    pub async fn serve(self, shutdown: crate::server::Shutdown) -> Result<(), StartError> {
        let listener = crate::server::bind(&self.http.host, self.http.port).await?;
        Ok(self.run(listener, shutdown).await?)
    }

    /// Serves on `listener` until `shutdown`, drains, then closes the database.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: crate::server::Shutdown,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        tracing::info!(service = self.name, address = %addr, version = crate::VERSION, "listening");
        let grace = std::time::Duration::from_secs(self.http.shutdown_grace_secs);
        let workers: Vec<_> = self.workers.into_iter().map(|start| start(shutdown.clone())).collect();
        crate::server::run(listener, self.router, self.health, shutdown, grace).await?;
        for worker in workers {
            if tokio::time::timeout(WORKER_GRACE, worker).await.is_err() {
                tracing::warn!(service = self.name, "a background worker did not stop in time");
            }
        }
        if let Some(db) = self.db {
            db.close().await;
        }
        tracing::info!(service = self.name, "stopped");
        Ok(())
    }
}
