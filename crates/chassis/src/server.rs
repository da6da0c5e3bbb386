//! The incoming side of every process: the middleware stack, the problem
//! fallbacks, and `run`, which serves until shutdown and then drains.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

use crate::health::Health;
use crate::problem::{self, Problem};
use crate::trace::{self, TraceContext};

/// The response header naming the trace of the request, for clients to quote.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// A route label a handler puts in its response's extensions when the router's
/// matched path does not say what the request was (the gateway's catch-all
/// proxy labels requests by the route-table prefix they matched).
#[derive(Debug, Clone)]
pub struct RouteLabel(pub std::sync::Arc<str>);

/// What a proxy adds to a request's access-log line, put in the response's
/// extensions: which instance answered, what the cache did, and who called.
#[derive(Debug, Clone, Default)]
pub struct ProxyNote {
    /// The upstream instance's base URL.
    pub upstream: Option<std::sync::Arc<str>>,
    /// `hit`, `miss` or `stale` when the cache was consulted.
    pub cache: Option<&'static str>,
    /// The verified caller's user id.
    pub user_id: Option<String>,
}

/// Put in a response's extensions by routes whose requests are machine
/// traffic at a high rate (the broker's fetches and acks): their access-log
/// line goes out at `debug` instead of `info` unless the answer is an error,
/// and metrics still count them.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietLog;

/// A shutdown signal passed down to everything that must stop: cloneable,
/// and every clone sees the trigger.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending half of [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl ShutdownTrigger {
    /// Tells every [`Shutdown`] clone to stop.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// A new signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Self) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger { tx }, Self { rx })
    }

    /// A signal that fires on SIGTERM or SIGINT (Ctrl-C).
    pub fn on_os_signal() -> Self {
        let (trigger, shutdown) = Self::new();
        crate::task::spawn("os-signal", async move {
            os_signal().await;
            trigger.trigger();
            Ok::<(), std::convert::Infallible>(())
        });
        shutdown
    }

    /// Resolves when the trigger fires (or was dropped).
    pub async fn wait(mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    /// Whether the trigger has fired.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }
}

async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Wraps a service's routes in the standard stack, in the order a request passes through it.
///
/// `routes` are the service's own routes; health, metrics and problem
/// fallbacks are added here so every process answers them the same way.
pub fn stack(routes: Router, health: &Health, body_limit: usize) -> Router {
    routes
        .merge(health.router())
        .merge(crate::metrics::router())
        .fallback(problem::route_not_found)
        // Extractors refuse bodies over the limit (their rejection becomes a 413 problem).
        .layer(DefaultBodyLimit::max(body_limit))
        // Bodies that declare or stream more than the limit are cut off before a handler reads them.
        .layer(RequestBodyLimitLayer::new(body_limit))
        // Any error response that is not yet a problem document becomes one (405, 413, ...).
        .layer(middleware::from_fn(ensure_problem))
        // Metrics and the access log see the final status, including converted errors.
        .layer(middleware::from_fn(observe))
        // A panicking handler yields a 500 problem instead of a dropped connection.
        .layer(CatchPanicLayer::custom(|_| Problem::internal(&"handler panicked").into_response()))
        // Outermost: the trace context and the request path, so every line logged
        // below carries the trace id and every problem names its instance.
        .layer(middleware::from_fn(trace_context))
}

/// Reads or starts the W3C trace context and runs the rest of the request
/// inside it, with the request path as the `instance` of any problem.
async fn trace_context(request: Request, next: Next) -> Response {
    let incoming = request.headers().get(trace::HEADER).and_then(|v| v.to_str().ok());
    let ctx = TraceContext::from_incoming(incoming);
    // A Uri clone shares its bytes: no copy of the path per request.
    let uri = request.uri().clone();
    let mut response = ctx.scope(problem::scope_instance(uri, next.run(request))).await;
    if let Ok(value) = HeaderValue::from_str(&ctx.trace_id_hex()) {
        response.headers_mut().insert(TRACE_ID_HEADER, value);
    }
    response
}

/// Records the request's metrics and writes its access log line.
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let method = request.method().clone();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // A Uri clone shares its bytes with the request's: no copy of the path.
    let uri = request.uri().clone();
    let path = uri.path();
    metrics::gauge!(crate::metrics::HTTP_IN_FLIGHT).increment(1.0);
    let response = next.run(request).await;
    metrics::gauge!(crate::metrics::HTTP_IN_FLIGHT).decrement(1.0);
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route = response.extensions().get::<RouteLabel>().map_or(route, |label| label.0.to_string());
    crate::metrics::record_request(&route, method.as_str(), status, elapsed);
    if crate::otel::enabled()
        && let Some(context) = trace::current()
    {
        crate::otel::record(crate::otel::SpanRecord {
            context,
            name: format!("{method} {route}"),
            kind: crate::otel::SpanKind::Server,
            start: started_at,
            end: started_at + elapsed,
            status,
            attributes: vec![("url.path", path.to_owned())],
        });
    }
    // Probes and scrapes would drown the access log; they are counted in metrics instead.
    if status < 400 && response.extensions().get::<QuietLog>().is_some() {
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        tracing::debug!(method = %method, path = %path, route = %route, status, duration_ms, "request handled");
    } else if !path.starts_with("/health") && path != "/metrics" {
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        match response.extensions().get::<ProxyNote>() {
            Some(note) => tracing::info!(
                method = %method, path = %path, route = %route, status, duration_ms,
                upstream = note.upstream.as_deref().unwrap_or("-"), cache = note.cache.unwrap_or("-"),
                user_id = note.user_id.as_deref().unwrap_or("-"), "request handled"
            ),
            None => {
                tracing::info!(method = %method, path = %path, route = %route, status, duration_ms, "request handled")
            }
        }
    }
    response
}

/// Turns any error response without a problem body into a problem document.
async fn ensure_problem(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(problem::CONTENT_TYPE.as_bytes()));
    if is_problem {
        return response;
    }
    let (code, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "This resource does not support that method.".to_owned())
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", "The request body is too large.".to_owned()),
        StatusCode::NOT_FOUND => ("not_found", format!("No resource at {path}")),
        s if s.is_server_error() => ("internal", "The service failed to handle the request.".to_owned()),
        _ => ("bad_request", "The request could not be handled.".to_owned()),
    };
    let mut problem = Problem::new(status, code, detail);
    if let Some(retry) = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()?.parse().ok()) {
        problem = problem.with_retry_after(retry);
    }
    let mut converted = problem.into_response();
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            converted.headers_mut().append(name.clone(), value.clone());
        }
    }
    converted
}

/// Serves `app` on `listener` until `shutdown` fires, then stops accepting,
/// marks the process as draining and waits up to `grace` for in-flight requests.
pub async fn run(
    listener: TcpListener,
    app: Router,
    health: Health,
    shutdown: Shutdown,
    grace: Duration,
) -> std::io::Result<()> {
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.wait().await;
            health.set_draining();
            tracing::info!(grace_secs = grace.as_secs(), "shutting down: draining in-flight requests");
            let _ = drained_tx.send(());
        }
    };
    // Answers go out as soon as they are written, not held back by Nagle's algorithm.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(error = %error, "could not set TCP_NODELAY");
        }
    });
    let server =
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(signal);
    let deadline = async {
        let _ = drained_rx.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("shutdown grace period ended with requests still in flight");
            Ok(())
        }
    }
}

/// Binds `host:port`, naming the address in the error so the operator knows what to fix.
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {host}:{port}: {e}")))
}

/// Drives a future to completion when shutdown fires, for tasks that must stop with the process.
pub async fn until_shutdown<F: Future<Output = ()>>(shutdown: Shutdown, fut: F) {
    tokio::select! {
        () = shutdown.wait() => {}
        () = fut => {}
    }
}
