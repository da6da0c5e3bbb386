//! The catalog service: products and categories as JSON documents with
//! full-text search and cursor pagination, public cacheable reads, and
//! admin-only writes guarded by ETag / If-Match. On first start it loads a
//! deterministic demo catalog.
//!
//! # Layout
//!
//! - `domain`: products, categories, prices, cursors and their rules; no I/O.
//! - `seed`: the deterministic demo catalog loaded into an empty database.
//! - `store`: the store contract and its SQL implementation (SQLite FTS5, PostgreSQL tsvector).
//! - `messages`: what the catalog publishes on the bus (through the outbox).
//! - `app`: commands and queries the handlers call.
//! - `http`: routes, handlers and the OpenAPI document.

pub mod app;
pub mod domain;
pub mod http;
pub mod messages;
pub mod seed;
pub mod store;

use std::path::Path;
use std::sync::Arc;

use chassis::config::{DatabaseSettings, HttpSettings};
use chassis::db::Db;
use chassis::health::Health;
use chassis::server::Shutdown;
use chassis::service::{ServeOptions, Service, StartError};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi as _;

/// The service's name: its config section, log tag and database name.
pub const NAME: &str = "catalog";

/// The catalog's configuration (`[catalog]` in bazaar.toml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP listener.
    pub http: HttpSettings,
    /// The database.
    pub database: DatabaseSettings,
    /// Load the demo catalog into an empty database.
    pub seed_demo: bool,
    /// `max-age` of cacheable reads, in seconds.
    pub cache_max_age_secs: u32,
    /// Where the bus is (`bazaar up` sets it).
    pub bus: bus::BusSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            database: DatabaseSettings::default(),
            seed_demo: true,
            cache_max_age_secs: 30,
            bus: bus::BusSettings::default(),
        }
    }
}

/// Opens the database, migrates it, seeds it if empty, and builds the service.
pub async fn build(config: &Config, data_dir: &Path) -> Result<Service, StartError> {
    let db = Db::connect(&config.database.url_or_default(data_dir, NAME), config.database.max_connections).await?;
    store::migrate(&db).await?;
    let products = store::SqlCatalogStore::new(db.clone());
    let outbox = products.outbox().clone();
    let catalog = Arc::new(app::Catalog::new(products));
    if config.seed_demo
        && catalog.seed_demo().await.map_err(|e| StartError::Setup(format!("seeding the demo catalog: {e}")))?
    {
        tracing::info!("loaded the demo catalog");
    }
    let health = config.bus.declare_health(Health::builder(chassis::VERSION).database(db.clone())).build();
    let routes = http::router(http::ApiState { catalog, cache_max_age_secs: config.cache_max_age_secs })
        .merge(chassis::openapi::router(http::ApiDoc::openapi()));
    let service = Service::new(NAME, routes, health, &config.http).with_db(db);
    bus::with_relay(service, &config.bus, &outbox).map_err(|e| StartError::Setup(format!("bus settings: {e}")))
}

/// `bazaar serve catalog`: loads the configuration, builds and serves until shutdown.
pub async fn serve(opts: ServeOptions, shutdown: Shutdown) -> Result<(), StartError> {
    let config: Config = chassis::config::load(NAME, &opts.sources)?;
    build(&config, &opts.data_dir).await?.serve(shutdown).await
}
