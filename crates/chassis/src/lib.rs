//! The service chassis: everything a bazaar service shares, so that each service
//! holds only its own domain. A service is a library with a `Config`, a `build`
//! step and a router; the chassis turns that router into a running process with
//! the same configuration loader, logs, traces, health, metrics, errors and
//! database access as every other service.
//!
//! # Layout
//! - [`config`]: one loader (defaults, `bazaar.toml`, `BAZAAR_*` env, flags), validated at start.
//! - [`telemetry`]: JSON log lines carrying the trace and span ids.
//! - [`trace`]: W3C `traceparent` parsing, creation and propagation.
//! - [`problem`]: RFC 9457 `application/problem+json` errors.
//! - [`extract`]: request extractors whose rejections are problems, and the caller's identity.
//! - [`health`]: `/health`, `/health/live`, `/health/ready` with real checks.
//! - [`metrics`]: the Prometheus recorder and the per-route request metrics.
//! - [`db`]: SQLite and PostgreSQL pools, dialects, migrations and write transactions.
//! - [`client`]: the outgoing HTTP client that carries the trace context.
//! - [`server`]: the incoming middleware stack, graceful shutdown and `run`.
//! - [`service`]: the options and start-up error shared by every `bazaar serve <name>`.
//! - [`task`]: the one way to spawn a background task.
//! - [`openapi`]: serving a service's OpenAPI document.
//! - [`otel`]: span export over OTLP/HTTP when a collector is configured.

pub mod client;
pub mod config;
pub mod db;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod otel;
pub mod problem;
pub mod server;
pub mod service;
pub mod task;
pub mod telemetry;
pub mod trace;

/// The version every service reports in `/health` and its OpenAPI document.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
