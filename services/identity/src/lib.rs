//! The identity service: user accounts and the access tokens that prove who a
//! caller is. It registers users (each registration is an
//! `identity.user-registered.v1` event, which feeds the profile read model),
//! checks passwords with Argon2id, signs short-lived EdDSA access tokens, and
//! publishes the public keys as a JWKS so the gateway can verify those tokens
//! without calling back.
//!
//! # Layout
//! - [`domain`]: the write side's values, the user aggregate and its events; no I/O.
//! - [`password`]: Argon2id hashing and verification (CPU-heavy: blocking pool only).
//! - [`keys`]: the persistent Ed25519 signing key ring, the JWKS and access-token claims.
//! - [`store`]: the store contract and its SQL implementation (write side and profile projection).
//! - [`messages`]: what identity publishes on the bus (through the outbox).
//! - [`app`]: commands (register, sign in, ensure the admin) and the profile query.
//! - [`http`]: routes, handlers and the OpenAPI document.

pub mod app;
pub mod domain;
pub mod http;
pub mod keys;
pub mod messages;
pub mod password;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chassis::config::{DatabaseSettings, HttpSettings};
use chassis::db::Db;
use chassis::health::Health;
use chassis::server::Shutdown;
use chassis::service::{ServeOptions, Service, StartError};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi as _;

/// The service's name: its config section, log tag and database name.
pub const NAME: &str = "identity";

/// Identity's configuration (`[identity]` in bazaar.toml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP listener.
    pub http: HttpSettings,
    /// The database.
    pub database: DatabaseSettings,
    /// Where the signing key lives; empty means `<data_dir>/services/identity/keys`.
    pub keys_dir: PathBuf,
    /// A file `{"email": ..., "password": ...}` naming the admin account to create if missing.
    pub admin_credentials_file: Option<PathBuf>,
    /// How many password hashes may run at once (each takes ~19 MiB and tens of ms of CPU).
    pub hashing_slots: usize,
    /// Where the bus is (`bazaar up` sets it).
    pub bus: bus::BusSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            database: DatabaseSettings::default(),
            keys_dir: PathBuf::new(),
            admin_credentials_file: None,
            hashing_slots: 2,
            bus: bus::BusSettings::default(),
        }
    }
}

/// Opens the database and the key ring, creates the admin if asked, and builds the service.
pub async fn build(config: &Config, data_dir: &Path) -> Result<Service, StartError> {
    let db = Db::connect(&config.database.url_or_default(data_dir, NAME), config.database.max_connections).await?;
    store::migrate(&db).await?;
    let keys_dir = if config.keys_dir.as_os_str().is_empty() {
        data_dir.join("services").join(NAME).join("keys")
    } else {
        config.keys_dir.clone()
    };
    let keys = keys::KeyRing::load_or_create(&keys_dir)
        .map_err(|e| StartError::Setup(format!("signing keys in {}: {e}", keys_dir.display())))?;
    let users = store::SqlUserStore::new(db.clone());
    let outbox = users.outbox().clone();
    let identity = Arc::new(app::Identity::new(users, Arc::new(keys), config.hashing_slots));
    if let Some(file) = &config.admin_credentials_file {
        identity.ensure_admin(file).await.map_err(|e| StartError::Setup(format!("creating the admin account: {e}")))?;
    }
    let health = config.bus.declare_health(Health::builder(chassis::VERSION).database(db.clone())).build();
    let routes = http::router(identity).merge(chassis::openapi::router(http::ApiDoc::openapi()));
    let service = Service::new(NAME, routes, health, &config.http).with_db(db);
    bus::with_relay(service, &config.bus, &outbox).map_err(|e| StartError::Setup(format!("bus settings: {e}")))
}

/// `bazaar serve identity`: loads the configuration, builds and serves until shutdown.
pub async fn serve(opts: ServeOptions, shutdown: Shutdown) -> Result<(), StartError> {
    let config: Config = chassis::config::load(NAME, &opts.sources)?;
    build(&config, &opts.data_dir).await?.serve(shutdown).await
}
