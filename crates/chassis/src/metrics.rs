//! Prometheus metrics: one recorder per process, rendered at `GET /metrics`,
//! and the per-route request metrics every HTTP server records.
//!
//! Names are constants here so handlers never spell a metric by hand.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests handled, by route, method and status.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// Requests answered with a 5xx status, by route, method and status.
pub const HTTP_ERRORS: &str = "http_request_errors_total";
/// Request latency, by route, method and status.
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
/// Requests currently in flight.
pub const HTTP_IN_FLIGHT: &str = "http_requests_in_flight";

/// Latency buckets in seconds, from sub-millisecond to ten seconds.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. Tests that start several
/// services in one process share it, which is why it is installed once.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; the handle still renders ours.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests handled, by route, method and status.");
    metrics::describe_counter!(HTTP_ERRORS, "HTTP requests answered with a server error (5xx).");
    metrics::describe_histogram!(HTTP_DURATION, metrics::Unit::Seconds, "HTTP request latency.");
    metrics::describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being handled now.");
}

/// Records one finished request.
pub fn record_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let labels = [("route", route.to_owned()), ("method", method.to_owned()), ("status", status.to_string())];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    if status >= 500 {
        metrics::counter!(HTTP_ERRORS, &labels).increment(1);
    }
    metrics::histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// The `/metrics` route.
pub fn router() -> Router {
    handle();
    Router::new().route("/metrics", get(render))
}

async fn render() -> impl IntoResponse {
    let handle = handle();
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render())
}
