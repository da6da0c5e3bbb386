//! The edge handler: every request that is not the gateway's own goes through
//! here, in this order: route match -> strip client-sent identity and
//! hop-by-hop headers -> verify the token -> check the route's policy -> rate
//! limit -> serve from cache -> forward to an upstream instance (streaming,
//! pooled keep-alive) -> cache or invalidate -> answer with edge headers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chassis::extract::{USER_ID_HEADER, USER_ROLES_HEADER};
use chassis::problem::Problem;
use chassis::server::{ProxyNote, RouteLabel};
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::cache::{self, CacheControl, CacheKey, Lookup, ResponseCache, X_CACHE};
use crate::clock::MonotonicClock;
use crate::jwt::{AuthError, HttpJwksSource, JwtVerifier, Principal, unix_now};
use crate::ratelimit::{ClientKey, ClientLimits};
use crate::routing::{Denial, Instance, RouteTable, Upstreams};

/// The request id header, set on the way in and echoed on the way out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Metric: requests forwarded upstream, by service and status.
pub const UPSTREAM_REQUESTS: &str = "gateway_upstream_requests_total";
/// Metric: time until the upstream's response headers, by service.
pub const UPSTREAM_DURATION: &str = "gateway_upstream_duration_seconds";
/// Metric: requests refused at the edge, by reason.
pub const EDGE_REJECTIONS: &str = "gateway_rejections_total";
/// Metric: instances ejected after consecutive failures, by service.
pub const UPSTREAM_EJECTIONS: &str = "gateway_upstream_ejections_total";
/// Metric: cache lookups, by result (hit, miss, stale).
pub const CACHE_LOOKUPS: &str = "gateway_cache_lookups_total";

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Everything the edge handler needs, shared by all requests.
pub struct Edge {
    /// The routing table.
    pub routes: RouteTable,
    /// The upstream instance pools.
    pub upstreams: Upstreams,
    /// Per-client rate limits, when enabled.
    pub limits: Option<ClientLimits>,
    /// The response cache, when enabled.
    pub cache: Option<ResponseCache>,
    /// Access-token verification.
    pub verifier: JwtVerifier<HttpJwksSource>,
    /// Pooled keep-alive connections to upstreams.
    pub client: Client<HttpConnector, Body>,
    /// The clock the edge modules read.
    pub clock: MonotonicClock,
    /// How long an upstream may take to start answering.
    pub upstream_timeout: Duration,
}

impl Edge {
    /// Records an upstream outcome for passive ejection; an ejection is logged and counted.
    fn report(&self, instance: &Instance, success: bool) {
        if let Some(cooldown) = self.upstreams.report(instance, success, self.clock.now()) {
            metrics::counter!(UPSTREAM_EJECTIONS, "service" => instance.service().to_owned()).increment(1);
            tracing::warn!(
                service = instance.service(),
                instance = instance.base_url(),
                cooldown_secs = cooldown.as_secs(),
                "instance ejected after consecutive failures"
            );
        }
    }
}

/// The pooled upstream client: HTTP/1.1 keep-alive, no TLS (upstreams are on loopback or a private network).
pub fn upstream_client() -> Client<HttpConnector, Body> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Strips hop-by-hop headers, and any header the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// Removes every `X-User-*` header: only the gateway may assert who the caller is.
fn strip_client_identity(headers: &mut HeaderMap) {
    let forged: Vec<HeaderName> = headers.keys().filter(|name| name.as_str().starts_with("x-user-")).cloned().collect();
    for name in forged {
        headers.remove(name);
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(AuthError::Malformed),
    }
}

fn reject(reason: &'static str, problem: Problem) -> Response {
    metrics::counter!(EDGE_REJECTIONS, "reason" => reason).increment(1);
    let unauthorized = problem.status == StatusCode::UNAUTHORIZED.as_u16();
    let mut response = problem.into_response();
    if unauthorized {
        // RFC 6750: a 401 names the scheme the client should use.
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"bazaar\""));
    }
    response
}

/// The 429 answer for a limited client, with its `Retry-After` and `RateLimit` headers.
fn rate_limited(decision: crate::ratelimit::Decision) -> Response {
    let retry = decision.retry_after_secs().unwrap_or(1);
    let problem = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("Too many requests from this client; retry in {retry} s."),
    )
    .with_retry_after(retry);
    let mut response = reject("rate_limit", problem);
    for (name, value) in decision.headers() {
        // Insert, not append: the problem already set a Retry-After.
        response.headers_mut().insert(name, value);
    }
    response
}

/// Describes the gateway's metrics for `/metrics` (Prometheus wants help text for each).
pub fn describe_metrics() {
    // Descriptions go to the installed recorder: install it first.
    chassis::metrics::handle();
    metrics::describe_counter!(UPSTREAM_REQUESTS, "Requests forwarded to an upstream, by service and status.");
    metrics::describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "Time until an upstream's response headers."
    );
    metrics::describe_counter!(EDGE_REJECTIONS, "Requests refused at the edge, by reason.");
    metrics::describe_counter!(
        UPSTREAM_EJECTIONS,
        "Upstream instances ejected after consecutive failures, by service."
    );
    metrics::describe_counter!(CACHE_LOOKUPS, "Response cache lookups, by result (hit, miss, stale).");
}

fn auth_problem(error: &AuthError) -> Problem {
    // The code already carries its `token_` prefix; the problem type is derived from it.
    Problem::new(StatusCode::UNAUTHORIZED, error.code(), format!("The access token was refused: {error}."))
}

/// A request id: the client's if it is a sane token, else a new UUIDv7.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&REQUEST_ID)
        .filter(|v| v.len() <= 64 && v.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).unwrap_or(HeaderValue::from_static("-"))
        })
}

/// The edge handler.
pub async fn handle(State(edge): State<Arc<Edge>>, request: Request) -> Response {
    let client_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |info| info.0.ip());
    let (mut parts, body) = request.into_parts();
    let Some(route) = edge.routes.match_path(parts.uri.path()) else {
        return reject("no_route", Problem::not_found(format!("No resource at {}", parts.uri.path())));
    };
    let label = RouteLabel(Arc::from(route.prefix()));
    let request_id = request_id(&parts.headers);
    strip_client_identity(&mut parts.headers);
    strip_hop_by_hop(&mut parts.headers);

    let now = edge.clock.now();
    let token = match bearer_token(&parts.headers) {
        Ok(token) => token,
        Err(error) => return with_label(reject("token", auth_problem(&error)), label),
    };
    // Authentication: a token that is present must be valid, whatever the route's policy.
    let principal: Option<Arc<Principal>> = match token {
        None => None,
        Some(token) => {
            let unix = unix_now();
            // A token not seen before costs a signature check: those are limited per
            // IP like anonymous calls, so a flood of forged tokens is throttled too.
            if let Some(limits) = &edge.limits
                && !edge.verifier.is_cached(token, unix)
            {
                let decision = limits.check(&ClientKey::Ip(client_ip), now);
                if !decision.is_allowed() {
                    return with_label(rate_limited(decision), label);
                }
            }
            match edge.verifier.verify_or_refresh(token, unix).await {
                Ok(principal) => Some(principal),
                Err(error) => return with_label(reject("token", auth_problem(&error)), label),
            }
        }
    };
    // Authorization by the route's policy for this method.
    let roles = principal.as_ref().map(|p| p.roles());
    if let Err(denial) = route.policy_for_method(&parts.method).authorize(roles) {
        let problem = match denial {
            Denial::Unauthenticated => Problem::unauthorized("Sign in: this operation needs a bearer token."),
            Denial::Forbidden => Problem::forbidden("Your account's roles do not allow this operation."),
        };
        return with_label(reject("policy", problem), label);
    }
    // Rate limit per user when signed in, else per IP.
    let mut limit_headers = Vec::new();
    if let Some(limits) = &edge.limits {
        let key = principal.as_ref().map_or(ClientKey::Ip(client_ip), |p| ClientKey::User(p.user_id()));
        let decision = limits.check(&key, now);
        if !decision.is_allowed() {
            return with_label(rate_limited(decision), label);
        }
        limit_headers = decision.headers();
    }

    let had_authorization = cache::has_authorization(&parts.headers);
    let cache_key = match &edge.cache {
        Some(_) if parts.method == Method::GET && !had_authorization => {
            Some(CacheKey::from_request_parts(&parts.method, &parts.uri, &parts.headers))
        }
        _ => None,
    };
    let user_id = principal.as_ref().map(|p| p.user_id().to_string());
    let note = |upstream: Option<&Instance>, cache: Option<&'static str>| ProxyNote {
        upstream: upstream.map(Instance::shared_base_url),
        cache,
        user_id: user_id.clone(),
    };
    let mut stale = None;
    if let (Some(cache), Some(key)) = (&edge.cache, &cache_key) {
        match cache.get(key, now) {
            Lookup::Fresh(hit) => {
                metrics::counter!(CACHE_LOOKUPS, "result" => "hit").increment(1);
                let mut response = cached_response(&hit, "hit", now);
                finish(&mut response, &request_id, limit_headers, note(None, Some("hit")));
                return with_label(response, label);
            }
            Lookup::Stale(entry) => stale = Some(entry),
            Lookup::Miss => {}
        }
    }

    // Forward.
    let path_and_query = {
        let path = route.rewrite(parts.uri.path());
        match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        }
    };
    let headers = &mut parts.headers;
    headers.insert(&REQUEST_ID, request_id.clone());
    // This hop's client span: the upstream's server span will be its child.
    let client_span = chassis::trace::current().map_or_else(chassis::trace::TraceContext::new_root, |c| c.child());
    if let Ok(value) = HeaderValue::from_str(&client_span.header_value()) {
        headers.insert(chassis::trace::HEADER, value);
    }
    if let (Some(principal), Some(user_id)) = (&principal, &user_id) {
        if let Ok(value) = HeaderValue::from_str(user_id) {
            headers.insert(USER_ID_HEADER, value);
        }
        if let Ok(value) = HeaderValue::from_str(&principal.roles().join(",")) {
            headers.insert(USER_ROLES_HEADER, value);
        }
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {client_ip}"),
        None => client_ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    let service = route.service().to_owned();
    let method = parts.method.clone();
    // A request without a body can be sent again to another instance if the first could not be reached.
    let retryable = body_is_empty(&parts.headers)
        && matches!(method, Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE);
    let mut body = Some(body);
    let mut attempt = 0;
    let upstream = loop {
        attempt += 1;
        let Some(instance) = edge.upstreams.pick(&service, edge.clock.now()) else {
            return with_label(
                reject(
                    "no_instance",
                    Problem::unavailable("no_upstream", format!("No instance of {service} is configured."), 5),
                ),
                label,
            );
        };
        let uri: Uri = match format!("{}{}", instance.base_url(), path_and_query).parse() {
            Ok(uri) => uri,
            Err(_) => {
                return with_label(
                    Problem::bad_request("bad_path", "The request path cannot be forwarded.").into_response(),
                    label,
                );
            }
        };
        let mut builder = axum::http::Request::builder().method(method.clone()).uri(uri.clone());
        if let Some(h) = builder.headers_mut() {
            *h = parts.headers.clone();
            if let Some(authority) = uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                h.insert(header::HOST, authority);
            }
        }
        let outgoing_body = body.take().unwrap_or_else(Body::empty);
        let Ok(outgoing) = builder.body(outgoing_body) else {
            return with_label(
                Problem::bad_request("bad_request", "The request cannot be forwarded.").into_response(),
                label,
            );
        };
        let started = Instant::now();
        let started_at = std::time::SystemTime::now();
        let result = tokio::time::timeout(edge.upstream_timeout, edge.client.request(outgoing)).await;
        let took = started.elapsed();
        metrics::histogram!(UPSTREAM_DURATION, "service" => service.clone()).record(took.as_secs_f64());
        if chassis::otel::enabled() {
            chassis::otel::record(chassis::otel::SpanRecord {
                context: client_span,
                name: format!("{method} {}", route.prefix()),
                kind: chassis::otel::SpanKind::Client,
                start: started_at,
                end: started_at + took,
                status: match &result {
                    Ok(Ok(response)) => response.status().as_u16(),
                    _ => 0,
                },
                attributes: vec![("peer.service", service.clone()), ("server.address", instance.base_url().to_owned())],
            });
        }
        match result {
            Ok(Ok(response)) => {
                edge.report(&instance, !response.status().is_server_error());
                break Ok((instance, response));
            }
            Ok(Err(error)) => {
                // A body the client broke off or sent too much of is the client's fault, not the instance's.
                if let Some(status) = client_body_fault(&error) {
                    let problem = if status == StatusCode::PAYLOAD_TOO_LARGE {
                        Problem::new(
                            status,
                            "body_too_large",
                            "The request body is too large: it was refused before it was all sent.",
                        )
                    } else {
                        Problem::bad_request("unreadable_body", "The request body could not be read to its end.")
                    };
                    return with_label(reject("client_body", problem), label);
                }
                edge.report(&instance, false);
                tracing::warn!(service = %service, instance = instance.base_url(), error = %error, "upstream call failed");
                if error.is_connect() && retryable && attempt < 2 {
                    continue;
                }
                break Err(StatusCode::BAD_GATEWAY);
            }
            Err(_) => {
                edge.report(&instance, false);
                tracing::warn!(service = %service, instance = instance.base_url(), "upstream timed out");
                break Err(StatusCode::GATEWAY_TIMEOUT);
            }
        }
    };
    let (instance, upstream) = match upstream {
        Ok(ok) => ok,
        Err(status) => {
            metrics::counter!(UPSTREAM_REQUESTS, "service" => service.clone(), "status" => status.as_u16().to_string())
                .increment(1);
            if let Some(entry) = stale {
                metrics::counter!(CACHE_LOOKUPS, "result" => "stale").increment(1);
                let mut response = cached_response(&entry, "stale", edge.clock.now());
                finish(&mut response, &request_id, limit_headers, note(None, Some("stale")));
                return with_label(response, label);
            }
            let problem = if status == StatusCode::GATEWAY_TIMEOUT {
                Problem::new(status, "upstream_timeout", format!("The {service} service did not answer in time."))
            } else {
                Problem::new(status, "upstream_unavailable", format!("The {service} service could not be reached."))
                    .with_retry_after(1)
            };
            return with_label(problem.into_response(), label);
        }
    };
    let status = upstream.status();
    metrics::counter!(UPSTREAM_REQUESTS, "service" => service.clone(), "status" => status.as_u16().to_string())
        .increment(1);

    // Serve stale instead of an upstream server error, when there is a stale copy.
    if status.is_server_error()
        && let Some(entry) = stale
    {
        metrics::counter!(CACHE_LOOKUPS, "result" => "stale").increment(1);
        let mut response = cached_response(&entry, "stale", edge.clock.now());
        finish(&mut response, &request_id, limit_headers, note(Some(&instance), Some("stale")));
        return with_label(response, label);
    }
    if let Some(cache) = &edge.cache
        && cache::is_write(&method)
        && status.is_success()
    {
        cache.invalidate_after(&method, parts.uri.path());
    }

    let cache_consulted = cache_key.is_some().then_some("miss");
    let (mut head, incoming) = upstream.into_parts();
    strip_hop_by_hop(&mut head.headers);
    let mut response = match (&edge.cache, cache_key) {
        (Some(cache), Some(key)) if worth_buffering(status, &head.headers, cache) => {
            metrics::counter!(CACHE_LOOKUPS, "result" => "miss").increment(1);
            match incoming.collect().await {
                Ok(collected) => {
                    let bytes: Bytes = collected.to_bytes();
                    cache.store_if_cacheable(
                        key,
                        status,
                        &head.headers,
                        bytes.clone(),
                        had_authorization,
                        edge.clock.now(),
                    );
                    head.headers.insert(X_CACHE, HeaderValue::from_static("miss"));
                    Response::from_parts(head, Body::from(bytes))
                }
                Err(_) => Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    format!("The {service} service broke off its answer."),
                )
                .into_response(),
            }
        }
        (_, Some(_)) => {
            metrics::counter!(CACHE_LOOKUPS, "result" => "miss").increment(1);
            head.headers.insert(X_CACHE, HeaderValue::from_static("miss"));
            Response::from_parts(head, Body::new(incoming))
        }
        // Bodies stream through untouched when there is nothing to cache.
        _ => Response::from_parts(head, Body::new(incoming)),
    };
    finish(&mut response, &request_id, limit_headers, note(Some(&instance), cache_consulted));
    with_label(response, label)
}

/// Whether a failed upstream call failed over the client's request body
/// rather than because the instance is unwell: the body went over the limit
/// (413), broke off (400), or the upstream stopped reading it, as a service
/// does when it refuses a body too large for it (413). None of these count
/// against the instance.
fn client_body_fault(error: &(dyn std::error::Error + 'static)) -> Option<StatusCode> {
    let chain = || std::iter::successors(Some(error), |e| e.source());
    if chain().any(|e| e.is::<http_body_util::LengthLimitError>()) {
        return Some(StatusCode::PAYLOAD_TOO_LARGE);
    }
    // The request body is an axum body: an error of that type came from the client's side.
    if chain().any(|e| e.is::<axum::Error>()) {
        return Some(StatusCode::BAD_REQUEST);
    }
    // The upstream closed while the body was still being written: it answered
    // (most likely 413) without reading it all. hyper names that failure only in
    // its message, so the message is what is matched. An instance that really
    // died is caught by the connection errors of the requests that follow.
    chain()
        .filter_map(|e| e.downcast_ref::<hyper::Error>())
        .any(|e| e.is_body_write_aborted() || e.to_string() == BODY_WRITE_FAILED)
        .then_some(StatusCode::PAYLOAD_TOO_LARGE)
}

/// hyper's message for a failure while writing a request body.
const BODY_WRITE_FAILED: &str = "error writing a body to connection";

/// Whether a response may be stored, judged from its headers before reading its body.
fn worth_buffering(status: StatusCode, headers: &HeaderMap, cache: &ResponseCache) -> bool {
    let control = CacheControl::from_headers(headers);
    let small_enough = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_none_or(|len| len <= cache.max_body_bytes());
    status == StatusCode::OK && control.allows_shared_storage() && control.shared_max_age().is_some() && small_enough
}

fn body_is_empty(headers: &HeaderMap) -> bool {
    !headers.contains_key(header::TRANSFER_ENCODING)
        && headers.get(header::CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0")
}

fn cached_response(entry: &cache::CachedResponse, state: &'static str, now: crate::clock::Nanos) -> Response {
    let mut response = (entry.status, entry.body.clone()).into_response();
    let headers = response.headers_mut();
    for (name, value) in &entry.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(header::AGE, HeaderValue::from(entry.age_secs(now)));
    headers.insert(X_CACHE, HeaderValue::from_static(state));
    if state == "stale" {
        headers.insert(header::WARNING, HeaderValue::from_static("110 bazaar-gateway \"Response is Stale\""));
    }
    response
}

/// Adds the edge's response headers, and what the access log should say.
fn finish(
    response: &mut Response,
    request_id: &HeaderValue,
    limit_headers: Vec<(HeaderName, HeaderValue)>,
    note: ProxyNote,
) {
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, request_id.clone());
    headers.extend(limit_headers);
    response.extensions_mut().insert(note);
}

fn with_label(mut response: Response, label: RouteLabel) -> Response {
    response.extensions_mut().insert(label);
    response
}
