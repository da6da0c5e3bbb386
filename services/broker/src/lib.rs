//! The broker: the embedded profile's message bus. One process owns an SQLite
//! log (`<data_dir>/broker/log.sqlite`, WAL, `synchronous = FULL`) and serves
//! every other process over loopback HTTP/JSON; `bus::EmbeddedTransport` is
//! its client.
//!
//! What it keeps:
//! - the log: messages in publish order (`seq`), deduplicated by envelope id;
//! - consumer groups: each sees every message of its types, starting from the
//!   oldest stored; members of a group compete (a message is leased to one
//!   fetcher at a time); per group, a position and the pending deliveries with
//!   their attempt count and the time they become deliverable again;
//! - the dead-letter queue, replayable to the one group a message died in;
//! - queries in flight (request-reply with a deadline), in memory only.
//!
//! Every write goes through one writer task that commits everything queued in
//! one transaction and one fsync, then answers: a publish is acknowledged only
//! once durable, and a SIGKILL loses no acknowledged publish, ack or lease.
//!
//! # HTTP API
//!
//! JSON bodies; errors are RFC 9457 problems (422 for bad input naming the
//! field, 404 for an unknown group or dead letter, 503 with `Retry-After`
//! when the log cannot be written). `/health`, `/metrics` and
//! `/openapi.json` come from the chassis.
//!
//! | method path | body | answer |
//! |---|---|---|
//! | `POST /v1/publish` | `{envelopes: [..]}` (1-10 000) | 200 `{stored, duplicates: [id]}` once committed |
//! | `PUT /v1/groups/{group}` | `{types: [..], ack_wait_ms?}` | 201 created / 200 updated: the group |
//! | `GET /v1/groups` | | 200 `{items: [group]}` |
//! | `GET /v1/groups/{group}` | | 200 `{group, types, ack_wait_ms, position, lag, in_flight, dead_letters}` |
//! | `POST /v1/groups/{group}/fetch` | `{max?, wait_ms?}` | 200 `{deliveries: [{seq, attempt, envelope}]}`, long poll |
//! | `POST /v1/groups/{group}/ack` | `{seqs: [..]}` | 200 `{acked}` |
//! | `POST /v1/groups/{group}/nak` | `{seqs: [..], delay_ms?}` | 200 `{naked}` |
//! | `POST /v1/groups/{group}/dead-letter` | `{seq, error}` | 200 `{dead_letter_id}` (null when no longer pending) |
//! | `GET /v1/dlq?group=&limit=` | | 200 `{items: [{id, group, seq, envelope, error, attempts, dead_at}]}`, oldest first |
//! | `GET /v1/dlq/{id}` | | 200 dead letter, 404 |
//! | `POST /v1/dlq/{id}/replay` | | 200 `{id, group, seq}`, 404 |
//! | `POST /v1/queries` | `{envelope, timeout_ms}` | 200 `{envelope}` (the reply), 504 on timeout |
//! | `POST /v1/queries/fetch` | `{types: [..], max?, wait_ms?}` | 200 `{queries: [{reply_to, envelope}]}`, long poll |
//! | `POST /v1/queries/{reply_to}/reply` | `{envelope}` | 200 `{delivered}` (false after the deadline) |
//!
//! # Layout
//!
//! - `model`: group names, message types, envelope checks, limits and the clock; no I/O.
//! - `log`: the SQL of the log file.
//! - `writer`: the one writer task and its group commit.
//! - `broker`: the operations (long-poll fetch, wake-ups, statistics) the handlers call.
//! - `queries`: request-reply queries, in memory.
//! - `http`: routes, bodies, checks, problems and the OpenAPI document.
//! - `metrics`: metric names and help texts.
//! - `ownership`: the lock that keeps a second broker off the same log.

mod broker;
mod http;
mod log;
pub mod metrics;
pub mod model;
mod ownership;
mod queries;
mod writer;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chassis::config::{ConfigError, HttpSettings};
use chassis::db::{Db, SqliteSync};
use chassis::health::{CheckResult, Health, Status};
use chassis::server::Shutdown;
use chassis::service::{ServeOptions, Service, StartError};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi as _;

use crate::broker::Broker;

/// The service's name: its config section and log tag.
pub const NAME: &str = "broker";

/// The log file under the data dir when `log_path` is not set.
pub const DEFAULT_LOG_FILE: &str = "broker/log.sqlite";

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The broker's configuration (`[broker]` in bazaar.toml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP listener. Its body limit is larger than other services' so a
    /// relay can publish big batches.
    pub http: HttpSettings,
    /// The log file; `<data_dir>/broker/log.sqlite` when absent.
    pub log_path: Option<PathBuf>,
    /// The lease of a group created without one, in milliseconds.
    pub default_ack_wait_ms: u64,
    /// The most operations committed in one transaction.
    pub max_batch_ops: usize,
    /// The most deliveries (or queries) one fetch may ask for.
    pub max_fetch: usize,
    /// The longest a fetch may wait, in milliseconds.
    pub max_wait_ms: u64,
    /// How often the per-group gauges are refreshed from the log, in milliseconds.
    pub stats_interval_ms: u64,
    /// Connections of the reader pool (dead-letter lists, statistics).
    pub readers: u32,
    /// How long the log keeps a message, in seconds (7 days by default, as the
    /// JetStream stream's `max_age`). Past it a message is deleted unless a
    /// group still has it in flight or in its dead-letter queue; a group down
    /// for longer misses it, and a group created later starts after it.
    pub retention_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpSettings { body_limit_bytes: 16 * 1024 * 1024, ..HttpSettings::default() },
            log_path: None,
            default_ack_wait_ms: 30_000,
            max_batch_ops: 512,
            max_fetch: 1_000,
            max_wait_ms: 60_000,
            stats_interval_ms: 1_000,
            readers: 2,
            retention_secs: 7 * 24 * 3600,
        }
    }
}

impl Config {
    /// The log file for `data_dir`.
    pub fn log_path(&self, data_dir: &Path) -> PathBuf {
        self.log_path.clone().unwrap_or_else(|| data_dir.join(DEFAULT_LOG_FILE))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let rule = |key: &str, problem: &str| {
            Err(ConfigError::Rule { key: format!("{NAME}.{key}"), problem: problem.to_owned() })
        };
        if !(1..=model::MAX_ACK_WAIT_MS).contains(&self.default_ack_wait_ms) {
            return rule("default_ack_wait_ms", "must be from 1 to 86400000");
        }
        if self.max_batch_ops == 0 {
            return rule("max_batch_ops", "must be at least 1");
        }
        if self.max_fetch == 0 {
            return rule("max_fetch", "must be at least 1");
        }
        if self.stats_interval_ms == 0 {
            return rule("stats_interval_ms", "must be at least 1");
        }
        if self.readers == 0 {
            return rule("readers", "must be at least 1");
        }
        if self.retention_secs == 0 {
            return rule("retention_secs", "must be at least 1");
        }
        Ok(())
    }
}

/// Opens (creating if needed) and migrates the log, starts the writer, and builds the service.
pub async fn build(config: &Config, data_dir: &Path) -> Result<Service, StartError> {
    assemble(config, data_dir).await.map(|(service, _)| service)
}

/// [`build`], also handing back the broker so `serve` can end its long polls on shutdown.
async fn assemble(config: &Config, data_dir: &Path) -> Result<(Service, Broker), StartError> {
    config.validate()?;
    let path = config.log_path(data_dir);
    // Before anything touches the file: one broker per log.
    let owner = ownership::claim(&path).await.map_err(|e| StartError::Setup(e.to_string()))?;
    let db = Db::connect_with_sync(&format!("sqlite://{}", path.display()), config.readers, SqliteSync::Full).await?;
    db.migrate(&MIGRATIONS, &MIGRATIONS).await?;
    // The recorder must exist before the help texts are given to it.
    chassis::metrics::handle();
    metrics::describe();
    let retention = Duration::from_secs(config.retention_secs);
    let broker = Broker::open(
        db.clone(),
        owner,
        config.max_batch_ops,
        Duration::from_millis(config.stats_interval_ms),
        retention,
    )
    .await
    .map_err(|e| StartError::Setup(format!("reading the broker log {}: {e}", path.display())))?;
    tracing::info!(log = %path.display(), "broker log open");
    let writing = broker.clone();
    let health = Health::builder(chassis::VERSION)
        .database(db.clone())
        .check("writer", move || {
            let running = writing.is_writing();
            async move {
                let started = Instant::now();
                if running {
                    CheckResult::new(Status::Healthy, started.elapsed(), None)
                } else {
                    CheckResult::new(Status::Unhealthy, started.elapsed(), Some("The log writer has stopped".into()))
                }
            }
        })
        .build();
    let state = http::ApiState {
        broker: broker.clone(),
        max_fetch: config.max_fetch,
        max_wait_ms: config.max_wait_ms,
        default_ack_wait_ms: config.default_ack_wait_ms,
    };
    let routes = http::router(state).merge(chassis::openapi::router(http::ApiDoc::openapi()));
    Ok((Service::new(NAME, routes, health, &config.http).with_db(db), broker))
}

/// `bazaar serve broker`: loads the configuration, builds and serves until shutdown.
pub async fn serve(opts: ServeOptions, shutdown: Shutdown) -> Result<(), StartError> {
    let config: Config = chassis::config::load(NAME, &opts.sources)?;
    let (service, broker) = assemble(&config, &opts.data_dir).await?;
    let stopping = shutdown.clone();
    // Parked fetches would otherwise hold the drain for their whole wait.
    chassis::task::spawn("broker-stop-waiting", async move {
        stopping.wait().await;
        broker.stop_waiting();
        Ok::<(), std::convert::Infallible>(())
    });
    service.serve(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_lives_under_the_data_dir_unless_configured() {
        let config = Config::default();
        assert_eq!(config.log_path(Path::new("/d")), PathBuf::from("/d/broker/log.sqlite"));
        let config = Config { log_path: Some("/elsewhere/log.sqlite".into()), ..Config::default() };
        assert_eq!(config.log_path(Path::new("/d")), PathBuf::from("/elsewhere/log.sqlite"));
    }

    #[test]
    fn nonsense_settings_are_refused_naming_the_key() {
        let config = Config { max_batch_ops: 0, ..Config::default() };
        let error = config.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("broker.max_batch_ops"), "{error}");
        assert!(Config::default().validate().is_ok());
    }
}
