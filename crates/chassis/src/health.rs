//! Health checks in the shape every bazaar process answers:
//! `GET /health` (the full document: own checks with response times, and the
//! readiness of each declared dependency), `GET /health/live` (the process is
//! up) and `GET /health/ready` (its own checks pass and it is not draining).
//!
//! A dependency's status comes from its `/health/ready`, never its `/health`,
//! so health documents do not recurse through the topology; each answer is
//! cached for one second so a burst of probes costs one call.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::db::Db;

/// How long a dependency's readiness answer is reused.
const DEPENDENCY_CACHE: Duration = Duration::from_secs(1);
/// How long a dependency may take to answer before it counts as unhealthy.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(1);
/// A database round trip slower than this reports degraded.
const SLOW_DATABASE: Duration = Duration::from_millis(500);

/// The state of a check, a dependency or the whole process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Working as expected.
    Healthy,
    /// Working, but slow or with a dependency down.
    Degraded,
    /// Not working.
    Unhealthy,
}

/// The result of one check.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    /// The check's state.
    pub status: Status,
    /// How long the check took, as `"<n>ms"`.
    #[serde(rename = "responseTime")]
    pub response_time: String,
    /// Why the check is not healthy, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl CheckResult {
    /// A result from a status, the time taken and an optional message.
    pub fn new(status: Status, took: Duration, message: Option<String>) -> Self {
        Self { status, response_time: format!("{}ms", took.as_millis()), message }
    }
}

/// One dependency in the health document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DependencyStatus {
    /// The dependency's service name.
    pub name: String,
    /// Its state, from its `/health/ready`.
    pub status: Status,
    /// Its `/health` URL.
    pub url: String,
}

/// The `/health` document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// The worst of the checks, and degraded when a dependency is not healthy.
    pub status: Status,
    /// The running version.
    pub version: String,
    /// Own checks by name.
    pub checks: BTreeMap<String, CheckResult>,
    /// Declared dependencies.
    pub dependencies: Vec<DependencyStatus>,
}

type CheckFuture = Pin<Box<dyn Future<Output = CheckResult> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// A dependency: a service with one or more instances.
#[derive(Debug)]
struct Dependency {
    name: String,
    /// Base URLs of its instances (`http://127.0.0.1:4001`).
    instances: Vec<String>,
    cached: Mutex<Option<(Instant, Status)>>,
}

/// A process's health: its checks, its dependencies and whether it is draining.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    version: String,
    checks: Vec<(String, CheckFn)>,
    dependencies: Vec<Dependency>,
    draining: AtomicBool,
    client: crate::client::HttpClient,
}

/// Builds a [`Health`].
pub struct HealthBuilder {
    version: String,
    checks: Vec<(String, CheckFn)>,
    dependencies: Vec<Dependency>,
}

impl HealthBuilder {
    /// Adds a named check.
    pub fn check<F, Fut>(mut self, name: &str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckResult> + Send + 'static,
    {
        self.checks.push((name.to_owned(), Arc::new(move || Box::pin(check()))));
        self
    }

    /// Adds the `database` check: one timed round trip.
    pub fn database(self, db: Db) -> Self {
        self.check("database", move || {
            let db = db.clone();
            async move {
                let started = Instant::now();
                match db.ping().await {
                    Ok(took) if took > SLOW_DATABASE => {
                        CheckResult::new(Status::Degraded, took, Some("Slow response times".into()))
                    }
                    Ok(took) => CheckResult::new(Status::Healthy, took, None),
                    Err(_) => {
                        CheckResult::new(Status::Unhealthy, started.elapsed(), Some("Database unreachable".into()))
                    }
                }
            }
        })
    }

    /// Declares a dependency on service `name` with instances at `instances` (base URLs).
    pub fn dependency(mut self, name: &str, instances: Vec<String>) -> Self {
        self.dependencies.push(Dependency { name: name.to_owned(), instances, cached: Mutex::new(None) });
        self
    }

    /// Finishes the builder.
    pub fn build(self) -> Health {
        let client = crate::client::HttpClient::new(DEPENDENCY_TIMEOUT);
        Health {
            inner: Arc::new(Inner {
                version: self.version,
                checks: self.checks,
                dependencies: self.dependencies,
                draining: AtomicBool::new(false),
                client,
            }),
        }
    }
}

impl Health {
    /// Starts a builder for a process at `version`.
    pub fn builder(version: &str) -> HealthBuilder {
        HealthBuilder { version: version.to_owned(), checks: Vec::new(), dependencies: Vec::new() }
    }

    /// Marks the process as draining: readiness fails so load balancers stop sending work.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    async fn run_checks(&self) -> BTreeMap<String, CheckResult> {
        let runs = self.inner.checks.iter().map(|(name, check)| {
            let check = check.clone();
            async move { (name.clone(), check().await) }
        });
        futures_util::future::join_all(runs).await.into_iter().collect()
    }

    async fn dependency_status(&self, dep: &Dependency) -> Status {
        if let Ok(cached) = dep.cached.lock()
            && let Some((at, status)) = *cached
            && at.elapsed() < DEPENDENCY_CACHE
        {
            return status;
        }
        let probes = dep.instances.iter().map(|base| {
            let client = self.inner.client.clone();
            let url = format!("{base}/health/ready");
            async move {
                let request = client.get(&url);
                matches!(request.send().await, Ok(r) if r.status().is_success())
            }
        });
        let ready = futures_util::future::join_all(probes).await;
        let up = ready.iter().filter(|r| **r).count();
        let status = match up {
            0 => Status::Unhealthy,
            n if n == ready.len() => Status::Healthy,
            _ => Status::Degraded,
        };
        if let Ok(mut cached) = dep.cached.lock() {
            *cached = Some((Instant::now(), status));
        }
        status
    }

    /// The full health document.
    pub async fn report(&self) -> HealthReport {
        let deps = self.inner.dependencies.iter().map(|dep| async move {
            DependencyStatus {
                name: dep.name.clone(),
                status: self.dependency_status(dep).await,
                url: dep.instances.first().map(|base| format!("{base}/health")).unwrap_or_default(),
            }
        });
        let (checks, dependencies) = tokio::join!(self.run_checks(), futures_util::future::join_all(deps));
        let own = checks.values().map(|c| c.status).max().unwrap_or(Status::Healthy);
        let deps_worst = dependencies.iter().map(|d| d.status).max().unwrap_or(Status::Healthy);
        // A dependency down degrades this process; only its own checks make it unhealthy.
        let status = if own == Status::Healthy && deps_worst != Status::Healthy { Status::Degraded } else { own };
        HealthReport { status, version: self.inner.version.clone(), checks, dependencies }
    }

    /// Whether the process should receive traffic: own checks pass and it is not draining.
    pub async fn ready(&self) -> bool {
        !self.inner.draining.load(Ordering::Relaxed)
            && self.run_checks().await.values().all(|c| c.status != Status::Unhealthy)
    }

    /// The three health routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/health", get(health))
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .with_state(self.clone())
    }
}

/// The process's health document: 200 when healthy or degraded, 503 when unhealthy.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Healthy or degraded", body = HealthReport),
              (status = 503, description = "Unhealthy", body = HealthReport)))]
pub async fn health(State(health): State<Health>) -> Response {
    let report = health.report().await;
    let code = if report.status == Status::Unhealthy { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, Json(report)).into_response()
}

async fn live() -> Response {
    Json(serde_json::json!({"status": "live"})).into_response()
}

async fn ready(State(health): State<Health>) -> Response {
    if health.ready().await {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "not ready"}))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(status: Status) -> impl Fn() -> std::future::Ready<CheckResult> + Send + Sync + 'static {
        move || std::future::ready(CheckResult::new(status, Duration::from_millis(2), None))
    }

    #[tokio::test]
    async fn worst_check_sets_the_status() {
        let health =
            Health::builder("1.0.0").check("a", fixed(Status::Healthy)).check("b", fixed(Status::Degraded)).build();
        let report = health.report().await;
        assert_eq!(report.status, Status::Degraded);
        assert_eq!(report.checks["a"].response_time, "2ms");
        assert!(health.ready().await, "degraded is still ready");
    }

    #[tokio::test]
    async fn unreachable_dependency_degrades_but_does_not_fail_the_process() {
        // Port 9 on loopback has nothing listening: the probe fails fast.
        let health = Health::builder("1.0.0")
            .check("database", fixed(Status::Healthy))
            .dependency("catalog", vec!["http://127.0.0.1:9".into()])
            .build();
        let report = health.report().await;
        assert_eq!(report.status, Status::Degraded);
        assert_eq!(report.dependencies[0].status, Status::Unhealthy);
        assert_eq!(report.dependencies[0].url, "http://127.0.0.1:9/health");
        assert!(health.ready().await);
    }

    #[tokio::test]
    async fn draining_process_is_not_ready() {
        let health = Health::builder("1.0.0").build();
        assert!(health.ready().await);
        health.set_draining();
        assert!(!health.ready().await);
    }

    #[test]
    fn document_uses_the_documented_field_names() {
        let report = HealthReport {
            status: Status::Healthy,
            version: "1.2.3".into(),
            checks: BTreeMap::from([(
                "database".into(),
                CheckResult::new(Status::Healthy, Duration::from_millis(2), None),
            )]),
            dependencies: vec![DependencyStatus { name: "identity".into(), status: Status::Healthy, url: "u".into() }],
        };
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["checks"]["database"]["responseTime"], "2ms");
        assert_eq!(json["status"], "healthy");
        assert!(json["checks"]["database"].get("message").is_none());
    }
}
