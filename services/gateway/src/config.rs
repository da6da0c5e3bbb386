//! The gateway's configuration (`[gateway]` in bazaar.toml): the routing
//! table, the upstream instances, and the edge policies (rate limits, cache,
//! token verification, passive ejection).

use std::collections::BTreeMap;

use chassis::config::{ConfigError, HttpSettings};
use serde::{Deserialize, Serialize};

use crate::routing::{Policy, RouteSpec};

/// The gateway's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The public listener (port 8080 by default).
    pub http: HttpSettings,
    /// Instance base URLs per service (`catalog = ["http://127.0.0.1:4001"]`).
    pub upstreams: BTreeMap<String, Vec<String>>,
    /// Path prefix -> service, with the access policy of each.
    pub routes: Vec<RouteSpec>,
    /// Per-client token buckets.
    pub rate_limit: RateLimitSettings,
    /// The response cache for public reads.
    pub cache: CacheSettings,
    /// Where the token-signing keys come from.
    pub auth: AuthSettings,
    /// Passive ejection of failing instances.
    pub ejection: EjectionSettings,
    /// How long an upstream may take to start answering, in seconds (504 after).
    pub upstream_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // The public entry point listens on every interface; the services stay on loopback.
            http: HttpSettings { host: "0.0.0.0".into(), port: 8080, ..HttpSettings::default() },
            upstreams: BTreeMap::new(),
            routes: default_routes(),
            rate_limit: RateLimitSettings::default(),
            cache: CacheSettings::default(),
            auth: AuthSettings::default(),
            ejection: EjectionSettings::default(),
            upstream_timeout_secs: 30,
        }
    }
}

/// The public API's routing table.
pub fn default_routes() -> Vec<RouteSpec> {
    vec![
        RouteSpec::new("/api/v1/users", "identity", Policy::Public),
        RouteSpec::new("/api/v1/users/me", "identity", Policy::Customer),
        RouteSpec::new("/api/v1/auth", "identity", Policy::Public),
        RouteSpec::new("/.well-known/jwks.json", "identity", Policy::Public),
        RouteSpec::new("/api/v1/products", "catalog", Policy::Public).with_write_policy(Policy::Admin),
        RouteSpec::new("/api/v1/categories", "catalog", Policy::Public).with_write_policy(Policy::Admin),
    ]
}

/// One token bucket: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    /// Requests per second, sustained.
    pub rate_per_sec: u32,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

/// Rate limits per client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Whether limits apply at all.
    pub enabled: bool,
    /// Anonymous callers, per IP address.
    pub anonymous: QuotaSettings,
    /// Signed-in callers, per user.
    pub user: QuotaSettings,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            anonymous: QuotaSettings { rate_per_sec: 100, burst: 200 },
            user: QuotaSettings { rate_per_sec: 50, burst: 100 },
        }
    }
}

/// The response cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Whether public reads are cached.
    pub enabled: bool,
    /// The most responses kept.
    pub max_entries: usize,
    /// The largest body kept, in bytes.
    pub max_body_bytes: usize,
    /// How long an expired response may still be served when the upstream fails, in seconds.
    pub stale_grace_secs: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { enabled: true, max_entries: 10_000, max_body_bytes: 256 * 1024, stale_grace_secs: 300 }
    }
}

/// Token verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// The service that serves the JWKS.
    pub jwks_service: String,
    /// The JWKS path on that service.
    pub jwks_path: String,
    /// How often the key set is refetched, in seconds.
    pub refresh_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self { jwks_service: "identity".into(), jwks_path: "/.well-known/jwks.json".into(), refresh_secs: 300 }
    }
}

/// Passive ejection of failing instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EjectionSettings {
    /// Consecutive failures (connection errors or 5xx) that eject an instance.
    pub consecutive_failures: u32,
    /// The first ejection's length in seconds; repeated ejections double it.
    pub base_secs: u64,
    /// The longest ejection, in seconds.
    pub max_secs: u64,
}

impl Default for EjectionSettings {
    fn default() -> Self {
        Self { consecutive_failures: 3, base_secs: 10, max_secs: 60 }
    }
}

impl Config {
    /// Checks what parsing cannot: every routed service has instances, quotas are positive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for route in &self.routes {
            let instances = self.upstreams.get(&route.service).map_or(0, Vec::len);
            if instances == 0 {
                return Err(ConfigError::Rule {
                    key: format!("gateway.upstreams.{}", route.service),
                    problem: format!("is empty, but route {} sends requests to it", route.prefix),
                });
            }
        }
        for (name, quota) in [("anonymous", self.rate_limit.anonymous), ("user", self.rate_limit.user)] {
            if quota.rate_per_sec == 0 || quota.burst == 0 {
                return Err(ConfigError::Rule {
                    key: format!("gateway.rate_limit.{name}"),
                    problem: "needs rate_per_sec and burst above zero".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_listens_on_every_interface_on_8080_by_default() {
        let config = Config::default();
        assert_eq!((config.http.host.as_str(), config.http.port), ("0.0.0.0", 8080));
    }

    #[test]
    fn every_default_route_needs_its_service_to_have_instances() {
        let error = Config::default().validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("gateway.upstreams."), "{error}");
    }
}
