//! The gateway: bazaar's single public entry point. It routes each request to a
//! replica of the service that owns its path, authenticates the caller from an
//! identity-issued JWT, enforces per-client rate limits, serves public reads from
//! a shared response cache, and rewrites headers on the way through.
//!
//! The edge's rules (rate limits, cache, routing, token checks) are pure
//! building blocks that take the current time as an argument, so they are
//! tested by moving time by hand; `proxy` and `docs` do the I/O around them.
//!
//! # Layout
//!
//! - [`clock`]: monotonic [`clock::Nanos`] readings passed into the other modules.
//! - [`ratelimit`]: per-IP and per-user token buckets (GCRA) and the IETF `RateLimit` headers.
//! - [`cache`]: the response cache for public `GET`s, its `Cache-Control` rules and write invalidation.
//! - [`routing`]: the precompiled route table, access policies and round-robin upstream pools with passive ejection.
//! - [`jwt`]: access-token verification against the identity service's JWKS, with a verified-token cache.
//! - [`proxy`]: the edge handler: auth, policy, rate limit, cache, forwarding with header rewrites.
//! - [`docs`]: the merged public OpenAPI document and Swagger UI.
//! - [`config`]: the routing table, upstreams and edge policies from configuration.

pub mod cache;
pub mod clock;
pub mod config;
pub mod docs;
pub mod jwt;
pub mod proxy;
pub mod ratelimit;
pub mod routing;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use chassis::health::{CheckResult, Health, Status};
use chassis::server::Shutdown;
use chassis::service::{ServeOptions, Service, StartError};

pub use config::Config;

/// The service's name: its config section and log tag.
pub const NAME: &str = "gateway";

/// How often idle rate-limit buckets, expired cache entries and verified tokens are swept.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);

/// Builds the gateway from a validated configuration.
pub fn build(config: &Config) -> Result<Service, StartError> {
    config.validate()?;
    let rule = |key: &str, problem: String| chassis::config::ConfigError::Rule { key: key.into(), problem };
    let routes = routing::RouteTable::new(config.routes.clone()).map_err(|e| rule("gateway.routes", e.to_string()))?;
    let ejection = routing::EjectionPolicy {
        consecutive_failures: config.ejection.consecutive_failures.max(1),
        base_cooldown: Duration::from_secs(config.ejection.base_secs),
        max_cooldown: Duration::from_secs(config.ejection.max_secs),
    };
    let upstreams = routing::Upstreams::new(config.upstreams.clone(), ejection)
        .map_err(|e| rule("gateway.upstreams", e.to_string()))?;
    let limits = if config.rate_limit.enabled {
        let quota = |q: config::QuotaSettings| {
            ratelimit::Quota::new(q.rate_per_sec, q.burst).map_err(|e| rule("gateway.rate_limit", e.to_string()))
        };
        Some(ratelimit::ClientLimits::new(quota(config.rate_limit.anonymous)?, quota(config.rate_limit.user)?))
    } else {
        None
    };
    let cache = config.cache.enabled.then(|| {
        cache::ResponseCache::new(config.cache.max_entries, config.cache.max_body_bytes)
            .with_default_stale_grace(Duration::from_secs(config.cache.stale_grace_secs))
    });
    let jwks_urls: Vec<String> = config
        .upstreams
        .get(&config.auth.jwks_service)
        .filter(|instances| !instances.is_empty())
        .ok_or_else(|| {
            rule(&format!("gateway.upstreams.{}", config.auth.jwks_service), "must name the JWKS service".into())
        })?
        .iter()
        .map(|base| format!("{base}{}", config.auth.jwks_path))
        .collect();
    let source = jwt::HttpJwksSource::new(chassis::client::HttpClient::default(), jwks_urls);
    let verifier = jwt::JwtVerifier::new(
        source,
        jwt::VerifierOptions { refresh_interval: Duration::from_secs(config.auth.refresh_secs), ..Default::default() },
    );
    let edge = Arc::new(proxy::Edge {
        routes,
        upstreams,
        limits,
        cache,
        verifier,
        client: proxy::upstream_client(),
        clock: clock::MonotonicClock::new(),
        upstream_timeout: Duration::from_secs(config.upstream_timeout_secs),
    });

    let mut health = Health::builder(chassis::VERSION);
    for (service, instances) in &config.upstreams {
        health = health.dependency(service, instances.clone());
    }
    let keys_edge = edge.clone();
    let health = health
        .check("signing_keys", move || {
            let keys = keys_edge.verifier.key_count();
            async move {
                if keys > 0 {
                    CheckResult::new(Status::Healthy, Duration::ZERO, None)
                } else {
                    CheckResult::new(
                        Status::Degraded,
                        Duration::ZERO,
                        Some("No signing keys fetched yet; they load on the first signed-in request".into()),
                    )
                }
            }
        })
        .build();

    chassis::task::spawn("gateway-maintenance", maintain(edge.clone()));
    proxy::describe_metrics();

    let docs = Arc::new(docs::ApiDocs::new(edge.clone()));
    let routes = Router::new()
        .route("/", any(proxy::handle))
        .route("/{*path}", any(proxy::handle))
        .with_state(edge)
        .merge(docs.router());
    Ok(Service::new(NAME, routes, health, &config.http))
}

/// Sweeps idle rate-limit buckets, expired cache entries and verified tokens,
/// and refreshes the signing keys when due; runs for the life of the process.
async fn maintain(edge: Arc<proxy::Edge>) -> Result<(), std::convert::Infallible> {
    let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
    loop {
        tick.tick().await;
        let now = edge.clock.now();
        if let Some(limits) = &edge.limits {
            limits.sweep(now);
        }
        if let Some(cache) = &edge.cache {
            cache.purge_expired(now);
        }
        let unix = jwt::unix_now();
        edge.verifier.purge_expired(unix);
        if let Err(error) = edge.verifier.refresh_if_due(unix).await {
            tracing::warn!(error = %error, "could not refresh the signing keys");
        }
    }
}

/// `bazaar serve gateway`: loads the configuration, builds and serves until shutdown.
pub async fn serve(opts: ServeOptions, shutdown: Shutdown) -> Result<(), StartError> {
    let config: Config = chassis::config::load(NAME, &opts.sources)?;
    build(&config)?.serve(shutdown).await
}
