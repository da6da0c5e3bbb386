//! The gateway end to end: the real edge, built from its configuration and
//! served on a loopback socket, in front of small fake upstream services that
//! answer with what they received. Each test starts its own gateway and
//! upstreams, so rate-limit buckets, caches and ejections never leak between
//! tests; only the process-wide metrics recorder is shared.

// The helpers below are test code: a failed `expect` is a failed assertion with its message.
#![allow(clippy::expect_used, reason = "test helpers fail the test with a message")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chassis::server::{Shutdown, ShutdownTrigger};
use chassis::trace::TraceContext;
use gateway::Config;
use gateway::config::QuotaSettings;
use gateway::routing::{Policy, RouteSpec};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410); the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// How long any wait for the gateway to reach a state may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Signing keys and tokens
// ---------------------------------------------------------------------------

/// An Ed25519 signing key with its `kid`, as the identity service would hold it.
struct SigningKey {
    kid: String,
    key: EncodingKey,
}

impl SigningKey {
    fn generate(kid: &str) -> Self {
        let seed: [u8; 32] = rand::random();
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        SigningKey { kid: kid.to_owned(), key: EncodingKey::from_ed_der(&der) }
    }

    fn public_jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, Algorithm::EdDSA).expect("public JWK");
        jwk.common.key_id = Some(self.kid.clone());
        jwk
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("signed token")
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// The claims the identity service issues for `user` with `roles`.
fn claims(user: Uuid, roles: &[&str]) -> Value {
    let now = unix_now();
    json!({
        "iss": "bazaar-identity",
        "aud": "bazaar",
        "sub": user.to_string(),
        "roles": roles,
        "exp": now + 900,
        "iat": now,
        "jti": Uuid::now_v7().to_string(),
    })
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

// ---------------------------------------------------------------------------
// Fake upstream services
// ---------------------------------------------------------------------------

/// What a fake upstream serves and counts.
struct Upstream {
    name: String,
    /// Requests answered by the echo handler.
    echoes: AtomicUsize,
    /// `GET /api/v1/products` calls, the cacheable route.
    product_reads: AtomicUsize,
    /// When set, `GET /api/v1/products` answers 500.
    failing: AtomicBool,
    /// The `max-age` the cacheable route advertises.
    max_age: AtomicU64,
    /// The key set served at `/.well-known/jwks.json`.
    jwks: Value,
    /// The document served at `/openapi.json`.
    openapi: Value,
}

impl Upstream {
    fn new(name: &str) -> Self {
        Upstream {
            name: name.to_owned(),
            echoes: AtomicUsize::new(0),
            product_reads: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            max_age: AtomicU64::new(60),
            jwks: json!({"keys": []}),
            openapi: json!({"openapi": "3.1.0", "paths": {}}),
        }
    }

    fn echoes(&self) -> usize {
        self.echoes.load(Ordering::SeqCst)
    }

    fn product_reads(&self) -> usize {
        self.product_reads.load(Ordering::SeqCst)
    }
}

fn headers_as_json(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// Answers with what arrived: method, path, query and headers.
async fn echo(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    upstream.echoes.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "instance": upstream.name,
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "query": request.uri().query(),
        "headers": headers_as_json(request.headers()),
    }))
    .into_response()
}

/// A public, cacheable read that counts its calls.
async fn products(State(upstream): State<Arc<Upstream>>) -> Response {
    let n = upstream.product_reads.fetch_add(1, Ordering::SeqCst) + 1;
    if upstream.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream broke").into_response();
    }
    let max_age = upstream.max_age.load(Ordering::SeqCst);
    (
        [(header::CACHE_CONTROL, format!("public, max-age={max_age}"))],
        axum::Json(json!({"instance": upstream.name, "read": n, "items": [{"sku": "TEA-1"}]})),
    )
        .into_response()
}

/// A fake service listening on loopback until stopped.
struct Fake {
    url: String,
    state: Arc<Upstream>,
    stop: ShutdownTrigger,
    task: JoinHandle<()>,
}

impl Fake {
    async fn start(upstream: Upstream) -> Fake {
        let state = Arc::new(upstream);
        let router = Router::new()
            .route("/health/ready", get(|| async { axum::Json(json!({"status": "ready"})) }))
            .route(
                "/.well-known/jwks.json",
                get(|State(s): State<Arc<Upstream>>| async move { axum::Json(s.jwks.clone()) }),
            )
            .route("/openapi.json", get(|State(s): State<Arc<Upstream>>| async move { axum::Json(s.openapi.clone()) }))
            .route("/api/v1/products", get(products).post(echo))
            .fallback(echo)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake upstream");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, shutdown) = Shutdown::new();
        let task = chassis::task::spawn("fake-upstream", async move {
            axum::serve(listener, router).with_graceful_shutdown(shutdown.wait()).await
        });
        Fake { url, state, stop, task }
    }

    /// Stops accepting, closes every connection and frees the port.
    async fn shut_down(self) {
        self.stop.trigger();
        self.task.await.expect("fake upstream task");
    }
}

/// A loopback URL where nothing listens.
async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}

fn catalog_openapi() -> Value {
    json!({
        "openapi": "3.1.0",
        "paths": {
            "/api/v1/products": {
                "get": {"summary": "List products", "responses": {"200": {"description": "Products"}}},
                "post": {"summary": "Create a product", "responses": {"201": {"description": "Created"}}}
            },
            "/api/v1/products/{id}": {
                "get": {"summary": "One product", "responses": {"200": {"description": "A product"}}}
            },
            "/internal/reindex": {
                "post": {"summary": "Not routed by the gateway", "responses": {"204": {"description": "Done"}}}
            }
        },
        "components": {"schemas": {"Product": {"type": "object"}}},
        "tags": [{"name": "catalog"}]
    })
}

fn identity_openapi() -> Value {
    json!({
        "openapi": "3.1.0",
        "paths": {
            "/api/v1/users/me": {
                "get": {"summary": "The signed-in user", "responses": {"200": {"description": "The user"}}}
            }
        },
        "components": {"schemas": {"User": {"type": "object"}}},
        "tags": [{"name": "identity"}]
    })
}

// ---------------------------------------------------------------------------
// The gateway under test
// ---------------------------------------------------------------------------

/// A running gateway with its fake identity and catalog instances.
struct Edge {
    base: String,
    http: reqwest::Client,
    key: SigningKey,
    identity: Fake,
    catalogs: Vec<Fake>,
    _stop: ShutdownTrigger,
}

impl Edge {
    /// One catalog instance and the default configuration, adjusted by `tune`.
    async fn start(tune: impl FnOnce(&mut Config)) -> Edge {
        Edge::start_with(1, tune).await
    }

    /// `catalogs` catalog instances and the default configuration, adjusted by `tune`.
    async fn start_with(catalogs: usize, tune: impl FnOnce(&mut Config)) -> Edge {
        let key = SigningKey::generate("test-key-1");
        let mut identity = Upstream::new("identity-1");
        identity.jwks = serde_json::to_value(JwkSet { keys: vec![key.public_jwk()] }).expect("jwks json");
        identity.openapi = identity_openapi();
        let identity = Fake::start(identity).await;
        let mut fakes = Vec::new();
        for i in 1..=catalogs {
            let mut catalog = Upstream::new(&format!("catalog-{i}"));
            catalog.openapi = catalog_openapi();
            fakes.push(Fake::start(catalog).await);
        }

        let mut config = Config::default();
        config.upstreams.insert("identity".into(), vec![identity.url.clone()]);
        config.upstreams.insert("catalog".into(), fakes.iter().map(|f| f.url.clone()).collect());
        tune(&mut config);

        let service = gateway::build(&config).expect("gateway builds");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, shutdown) = Shutdown::new();
        chassis::task::spawn("gateway-under-test", service.run(listener, shutdown));
        let http = reqwest::Client::builder().no_proxy().build().expect("http client");
        Edge { base, http, key, identity, catalogs: fakes, _stop: stop }
    }

    fn catalog(&self) -> &Upstream {
        &self.catalogs[0].state
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path))
    }

    /// An admin's `POST /api/v1/products` with a streamed body of `chunks` x
    /// `chunk_bytes`: it has no Content-Length, so a limit trips mid-stream.
    fn streamed_upload(&self, token: &str, chunks: usize, chunk_bytes: usize) -> reqwest::RequestBuilder {
        let body =
            futures_util::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(vec![b'x'; chunk_bytes])));
        self.post("/api/v1/products")
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(body))
    }

    fn token(&self, user: Uuid, roles: &[&str]) -> String {
        self.key.sign(&claims(user, roles))
    }

    fn customer_token(&self) -> String {
        self.token(Uuid::now_v7(), &["customer"])
    }

    fn admin_token(&self) -> String {
        self.token(Uuid::now_v7(), &["customer", "admin"])
    }
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.expect("the gateway answers")
}

/// The request the upstream echoed back through the gateway.
async fn echoed(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK, "the request should reach the upstream");
    response.json().await.expect("echo body")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Asserts an RFC 9457 problem with `status` and returns its body.
async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(header(&response, "content-type"), Some("application/problem+json"));
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(), "{body}");
    body
}

// ---------------------------------------------------------------------------
// 1. Transformation
// ---------------------------------------------------------------------------

const CLIENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

fn with_forged_and_hop_headers(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header("X-User-Id", "00000000-0000-0000-0000-000000000001")
        .header("X-User-Roles", "admin")
        .header("X-User-Email", "root@example.com")
        .header("Connection", "x-secret")
        .header("x-secret", "do-not-forward")
        .header("Keep-Alive", "timeout=5")
        .header("TE", "trailers")
        .header("traceparent", format!("00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"))
        .header("x-custom", "kept")
}

#[tokio::test]
async fn client_sent_identity_and_hop_by_hop_headers_never_reach_the_upstream() {
    let edge = Edge::start(|_| {}).await;

    // The client really sends these headers: straight to the upstream they arrive.
    let direct =
        echoed(send(with_forged_and_hop_headers(edge.http.get(format!("{}/echo", edge.catalogs[0].url)))).await).await;
    for name in ["x-user-id", "x-user-roles", "x-secret", "keep-alive", "te"] {
        assert!(direct["headers"][name].is_string(), "the client did not send {name}: {direct}");
    }

    let response = send(with_forged_and_hop_headers(edge.get("/api/v1/products/echo?x=1&y=2"))).await;
    let echo = echoed(response).await;
    let headers = &echo["headers"];
    for name in ["x-user-id", "x-user-roles", "x-user-email", "x-secret", "keep-alive", "te"] {
        assert!(headers[name].is_null(), "{name} was forwarded: {headers}");
    }
    if let Some(connection) = headers["connection"].as_str() {
        assert!(!connection.contains("x-secret"), "Connection was forwarded: {connection}");
    }
    assert_eq!(headers["x-custom"], "kept", "end-to-end headers pass through");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/api/v1/products/echo", "the path arrives unchanged");
    assert_eq!(echo["query"], "x=1&y=2");
}

#[tokio::test]
async fn a_verified_token_sets_the_user_headers_from_its_claims() {
    let edge = Edge::start(|_| {}).await;
    let user = Uuid::now_v7();
    let token = edge.token(user, &["customer", "admin"]);
    let response = send(with_forged_and_hop_headers(edge.get("/api/v1/products/echo")).bearer_auth(&token)).await;
    let echo = echoed(response).await;
    assert_eq!(echo["headers"]["x-user-id"], user.to_string());
    assert_eq!(echo["headers"]["x-user-roles"], "customer,admin");
    assert!(echo["headers"]["x-user-email"].is_null());
}

#[tokio::test]
async fn traceparent_upstream_continues_the_clients_trace_with_a_new_span() {
    let edge = Edge::start(|_| {}).await;
    let response = send(
        edge.get("/api/v1/products/echo").header("traceparent", format!("00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01")),
    )
    .await;
    let echo = echoed(response).await;
    let sent = echo["headers"]["traceparent"].as_str().expect("traceparent forwarded");
    let ctx = TraceContext::parse(sent).expect("a valid traceparent");
    assert_eq!(ctx.trace_id_hex(), CLIENT_TRACE_ID);
    assert_ne!(ctx.span_id_hex(), CLIENT_SPAN_ID);
}

#[tokio::test]
async fn a_request_id_is_sent_upstream_and_echoed_to_the_client() {
    let edge = Edge::start(|_| {}).await;

    let response = send(edge.get("/api/v1/products/echo")).await;
    let returned = header(&response, "x-request-id").expect("x-request-id on the response").to_owned();
    let echo = echoed(response).await;
    assert!(!returned.is_empty());
    assert_eq!(echo["headers"]["x-request-id"], returned);

    let response = send(edge.get("/api/v1/products/echo").header("X-Request-Id", "req-42-abc")).await;
    assert_eq!(header(&response, "x-request-id"), Some("req-42-abc"));
    let echo = echoed(response).await;
    assert_eq!(echo["headers"]["x-request-id"], "req-42-abc", "a sane client id is kept");
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_address() {
    let edge = Edge::start(|_| {}).await;
    let echo = echoed(send(edge.get("/api/v1/products/echo")).await).await;
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");

    let echo = echoed(send(edge.get("/api/v1/products/echo").header("X-Forwarded-For", "203.0.113.7")).await).await;
    assert_eq!(echo["headers"]["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
}

#[tokio::test]
async fn a_route_with_a_rewrite_replaces_its_prefix_upstream() {
    let edge = Edge::start(|config| {
        config.routes.push(RouteSpec::new("/shop/catalog", "catalog", Policy::Public).with_rewrite("/api/v1/products"));
    })
    .await;
    let echo = echoed(send(edge.get("/shop/catalog/echo/7?page=2")).await).await;
    assert_eq!(echo["path"], "/api/v1/products/echo/7");
    assert_eq!(echo["query"], "page=2");
}

// ---------------------------------------------------------------------------
// 2. Tokens and policies
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_valid_token_is_accepted() {
    let edge = Edge::start(|_| {}).await;
    let response = send(edge.get("/api/v1/users/me").bearer_auth(edge.customer_token())).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn invalid_tokens_are_refused_with_a_token_problem() {
    let edge = Edge::start(|_| {}).await;
    let user = Uuid::now_v7();
    let valid = claims(user, &["customer"]);

    let alg_none = format!("eyJhbGciOiJub25lIn0.{}.", b64_json(&valid));
    let hs256 = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(edge.key.kid.clone());
        jsonwebtoken::encode(&header, &valid, &EncodingKey::from_secret(b"a shared secret")).expect("hs256")
    };
    let tampered = {
        let signed = edge.key.sign(&valid);
        let mut parts: Vec<String> = signed.split('.').map(str::to_owned).collect();
        let mut escalated = valid.clone();
        escalated["roles"] = json!(["customer", "admin"]);
        parts[1] = b64_json(&escalated);
        parts.join(".")
    };
    let with = |field: &str, value: Value| {
        let mut claims = valid.clone();
        claims[field] = value;
        edge.key.sign(&claims)
    };
    let expired = with("exp", json!(unix_now() - 60));
    let wrong_issuer = with("iss", json!("someone-else"));
    let wrong_audience = with("aud", json!("another-platform"));
    let unknown_kid = SigningKey::generate("retired-key").sign(&valid);

    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", format!("Bearer {alg_none}"), "token_algorithm_unsupported"),
        ("HS256", format!("Bearer {hs256}"), "token_algorithm_unsupported"),
        ("tampered payload", format!("Bearer {tampered}"), "token_signature_invalid"),
        ("expired", format!("Bearer {expired}"), "token_expired"),
        ("wrong iss", format!("Bearer {wrong_issuer}"), "token_issuer_invalid"),
        ("wrong aud", format!("Bearer {wrong_audience}"), "token_audience_invalid"),
        ("unknown kid", format!("Bearer {unknown_kid}"), "token_key_unknown"),
        ("garbage", "Bearer abc".to_owned(), "token_malformed"),
        ("not bearer", "Basic dXNlcjpwYXNzd29yZA==".to_owned(), "token_malformed"),
    ];
    for (case, authorization, code) in cases {
        // A public route: a token that is present must still be valid.
        let response = send(edge.get("/api/v1/products/echo").header("Authorization", authorization)).await;
        let body = problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(body["code"], code, "{case}: {body}");
    }
    assert_eq!(edge.catalog().echoes(), 0, "no refused request reached the upstream");
}

#[tokio::test]
async fn a_customer_route_without_a_token_is_unauthorized() {
    let edge = Edge::start(|_| {}).await;
    let body = problem(send(edge.get("/api/v1/users/me")).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["code"], "unauthorized");
    assert_eq!(edge.identity.state.echoes(), 0);
}

#[tokio::test]
async fn an_admin_write_needs_the_admin_role() {
    let edge = Edge::start(|_| {}).await;
    let customer =
        send(edge.post("/api/v1/products").bearer_auth(edge.customer_token()).json(&json!({"sku": "X"}))).await;
    let body = problem(customer, StatusCode::FORBIDDEN).await;
    assert_eq!(body["code"], "forbidden");
    assert_eq!(edge.catalog().echoes(), 0);

    let admin = send(edge.post("/api/v1/products").bearer_auth(edge.admin_token()).json(&json!({"sku": "X"}))).await;
    let echo = echoed(admin).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["headers"]["x-user-roles"], "customer,admin");
    assert_eq!(edge.catalog().echoes(), 1);
}

// ---------------------------------------------------------------------------
// 3. Rate limits
// ---------------------------------------------------------------------------

fn assert_rate_limit_headers(response: &reqwest::Response, remaining: &str) {
    let state = header(response, "ratelimit").expect("RateLimit header");
    assert!(state.starts_with(&format!("\"default\";r={remaining};t=")), "RateLimit: {state}");
    assert_eq!(header(response, "ratelimit-policy"), Some("\"default\";q=3;w=3"));
}

#[tokio::test]
async fn anonymous_callers_beyond_their_burst_get_429_with_retry_after() {
    let edge = Edge::start(|config| {
        config.rate_limit.anonymous = QuotaSettings { rate_per_sec: 1, burst: 3 };
    })
    .await;
    for remaining in ["2", "1", "0"] {
        let response = send(edge.get("/api/v1/products/echo")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_rate_limit_headers(&response, remaining);
    }
    let limited = send(edge.get("/api/v1/products/echo")).await;
    assert_rate_limit_headers(&limited, "0");
    let retry_after: u64 = header(&limited, "retry-after").expect("Retry-After").parse().expect("seconds");
    assert!(retry_after >= 1);
    let body = problem(limited, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(edge.catalog().echoes(), 3);
}

#[tokio::test]
async fn a_signed_in_user_is_limited_on_its_own_bucket() {
    let edge = Edge::start(|config| {
        config.rate_limit.anonymous = QuotaSettings { rate_per_sec: 1, burst: 3 };
        config.rate_limit.user = QuotaSettings { rate_per_sec: 1, burst: 3 };
    })
    .await;
    let alice = edge.customer_token();
    let bob = edge.customer_token();
    // A token's first check costs a signature verification and is charged to
    // its IP; later checks hit the verified-token cache and only the user's bucket.
    assert_eq!(send(edge.get("/api/v1/users/me").bearer_auth(&bob)).await.status(), StatusCode::OK);
    assert_eq!(send(edge.get("/api/v1/users/me").bearer_auth(&alice)).await.status(), StatusCode::OK);

    // The IP has one request of its burst left.
    assert_eq!(send(edge.get("/api/v1/products/echo")).await.status(), StatusCode::OK);
    assert_eq!(send(edge.get("/api/v1/products/echo")).await.status(), StatusCode::TOO_MANY_REQUESTS);

    // Same address, but signed in: the user's bucket applies, not the exhausted IP one.
    for remaining in ["1", "0"] {
        let response = send(edge.get("/api/v1/products/echo").bearer_auth(&alice)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_rate_limit_headers(&response, remaining);
    }
    let limited = send(edge.get("/api/v1/products/echo").bearer_auth(&alice)).await;
    assert!(header(&limited, "retry-after").is_some());
    problem(limited, StatusCode::TOO_MANY_REQUESTS).await;

    // Another user from the same address still has a bucket of its own.
    assert_eq!(send(edge.get("/api/v1/products/echo").bearer_auth(&bob)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_flood_of_forged_tokens_is_throttled_per_address() {
    let edge = Edge::start(|config| {
        config.rate_limit.anonymous = QuotaSettings { rate_per_sec: 1, burst: 3 };
    })
    .await;
    let mut statuses = Vec::new();
    for n in 0..6 {
        let forged = format!("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ7bn0ifQ.c2lnbmF0dXJl{n}");
        statuses.push(send(edge.get("/api/v1/products/echo").bearer_auth(forged)).await.status().as_u16());
    }
    assert_eq!(&statuses[..3], [401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "verification attempts past the burst are refused: {statuses:?}");
}

// ---------------------------------------------------------------------------
// 4. Cache
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_public_read_is_served_from_the_cache_the_second_time() {
    let edge = Edge::start(|_| {}).await;
    let first = send(edge.get("/api/v1/products")).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "x-cache"), Some("miss"));
    let first_body = first.text().await.expect("body");
    assert_eq!(edge.catalog().product_reads(), 1);

    let second = send(edge.get("/api/v1/products")).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(header(&second, "x-cache"), Some("hit"));
    assert!(header(&second, "age").is_some());
    assert!(header(&second, "x-request-id").is_some());
    assert_eq!(second.text().await.expect("body"), first_body);
    assert_eq!(edge.catalog().product_reads(), 1, "a hit does not call the upstream");
}

#[tokio::test]
async fn a_request_with_authorization_is_never_served_from_or_stored_in_the_cache() {
    let edge = Edge::start(|_| {}).await;
    let token = edge.customer_token();
    assert_eq!(header(&send(edge.get("/api/v1/products")).await, "x-cache"), Some("miss"));
    assert_eq!(header(&send(edge.get("/api/v1/products")).await, "x-cache"), Some("hit"));
    assert_eq!(edge.catalog().product_reads(), 1);

    // Not served from the cache, although a fresh entry exists.
    let signed_in = send(edge.get("/api/v1/products").bearer_auth(&token)).await;
    assert_eq!(signed_in.status(), StatusCode::OK);
    assert_ne!(header(&signed_in, "x-cache"), Some("hit"));
    assert_eq!(edge.catalog().product_reads(), 2);

    // Not stored: the next anonymous read of the same resource is a miss.
    let signed_in = send(edge.get("/api/v1/products?probe=auth").bearer_auth(&token)).await;
    assert_eq!(signed_in.status(), StatusCode::OK);
    assert_eq!(edge.catalog().product_reads(), 3);
    let anonymous = send(edge.get("/api/v1/products?probe=auth")).await;
    assert_eq!(header(&anonymous, "x-cache"), Some("miss"));
    assert_eq!(edge.catalog().product_reads(), 4);
}

#[tokio::test]
async fn a_successful_write_invalidates_the_cached_path() {
    let edge = Edge::start(|_| {}).await;
    assert_eq!(header(&send(edge.get("/api/v1/products")).await, "x-cache"), Some("miss"));
    assert_eq!(header(&send(edge.get("/api/v1/products?page=2")).await, "x-cache"), Some("miss"));
    assert_eq!(header(&send(edge.get("/api/v1/products")).await, "x-cache"), Some("hit"));
    assert_eq!(edge.catalog().product_reads(), 2);

    let write = send(edge.post("/api/v1/products").bearer_auth(edge.admin_token()).json(&json!({"sku": "NEW"}))).await;
    assert_eq!(write.status(), StatusCode::OK);

    assert_eq!(header(&send(edge.get("/api/v1/products")).await, "x-cache"), Some("miss"));
    assert_eq!(header(&send(edge.get("/api/v1/products?page=2")).await, "x-cache"), Some("miss"));
    assert_eq!(edge.catalog().product_reads(), 4);
}

#[tokio::test]
async fn an_expired_entry_is_served_stale_when_the_upstream_fails() {
    let edge = Edge::start(|_| {}).await;
    edge.catalog().max_age.store(1, Ordering::SeqCst);
    let first = send(edge.get("/api/v1/products")).await;
    assert_eq!(header(&first, "x-cache"), Some("miss"));
    let original = first.text().await.expect("body");

    edge.catalog().failing.store(true, Ordering::SeqCst);
    // Until max-age runs out the entry is a hit; then the upstream is asked, fails, and the stale copy answers.
    let deadline = Instant::now() + DEADLINE;
    let stale = loop {
        let response = send(edge.get("/api/v1/products")).await;
        assert_eq!(response.status(), StatusCode::OK, "never a 500 while a copy is kept");
        match header(&response, "x-cache") {
            Some("hit") => {}
            Some("stale") => break response,
            other => panic!("unexpected X-Cache {other:?}"),
        }
        assert!(Instant::now() < deadline, "the entry never went stale");
        // The poll interval of this deadline-bounded loop.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(header(&stale, "warning").is_some_and(|w| w.starts_with("110")));
    assert_eq!(stale.text().await.expect("body"), original);
    assert_eq!(edge.catalog().product_reads(), 2, "the upstream was asked once more, and failed");
}

// ---------------------------------------------------------------------------
// 5. Load balancing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn requests_are_spread_round_robin_and_survive_an_instance_going_away() {
    let mut edge = Edge::start_with(2, |_| {}).await;
    for _ in 0..20 {
        assert_eq!(send(edge.get("/api/v1/products/echo")).await.status(), StatusCode::OK);
    }
    let (a, b) = (edge.catalogs[0].state.echoes(), edge.catalogs[1].state.echoes());
    assert!(a > 0 && b > 0, "both instances serve: {a} and {b}");
    assert!(a.abs_diff(b) <= 2, "round robin is even: {a} and {b}");

    let gone = edge.catalogs.remove(1);
    let gone_state = gone.state.clone();
    gone.shut_down().await;

    let mut failures = Vec::new();
    for _ in 0..20 {
        let response = send(edge.get("/api/v1/products/echo")).await;
        if response.status() != StatusCode::OK {
            failures.push(response.status());
        }
    }
    assert!(failures.is_empty(), "requests failed after an instance went away: {failures:?}");
    assert_eq!(edge.catalogs[0].state.echoes(), a + 20, "the remaining instance served them all");
    assert_eq!(gone_state.echoes(), b);
}

// ---------------------------------------------------------------------------
// 6. Errors, health and metrics
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_path_is_a_404_problem() {
    let edge = Edge::start(|_| {}).await;
    let body = problem(send(edge.get("/no/such/thing")).await, StatusCode::NOT_FOUND).await;
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502_problem() {
    let dead = dead_url().await;
    let edge = Edge::start(|config| {
        config.upstreams.insert("orders".into(), vec![dead]);
        config.routes.push(RouteSpec::new("/api/v1/orders", "orders", Policy::Public));
    })
    .await;
    let response = send(edge.get("/api/v1/orders")).await;
    assert!(header(&response, "retry-after").is_some());
    let body = problem(response, StatusCode::BAD_GATEWAY).await;
    assert_eq!(body["code"], "upstream_unavailable");
}

#[tokio::test]
async fn health_lists_every_upstream_and_is_degraded_when_one_is_down() {
    let dead = dead_url().await;
    let dead_for_config = dead.clone();
    let edge = Edge::start(|config| {
        config.upstreams.insert("orders".into(), vec![dead_for_config]);
        config.routes.push(RouteSpec::new("/api/v1/orders", "orders", Policy::Customer));
    })
    .await;
    let response = send(edge.get("/health")).await;
    assert_eq!(response.status(), StatusCode::OK, "degraded still answers 200");
    let health: Value = response.json().await.expect("health document");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["version"].as_str().is_some_and(|v| !v.is_empty()));
    let checks = health["checks"].as_object().expect("checks");
    for (name, check) in checks {
        assert!(check["status"].is_string() && check["responseTime"].is_string(), "check {name}: {check}");
    }

    let dependencies = health["dependencies"].as_array().expect("dependencies");
    let by_name: BTreeMap<&str, &Value> = dependencies.iter().map(|d| (d["name"].as_str().expect("name"), d)).collect();
    assert_eq!(by_name.keys().copied().collect::<Vec<_>>(), ["catalog", "identity", "orders"]);
    assert_eq!(by_name["orders"]["status"], "unhealthy");
    assert_eq!(by_name["orders"]["url"], format!("{dead}/health"));
    assert_eq!(by_name["catalog"]["status"], "healthy");
    assert_eq!(by_name["catalog"]["url"], format!("{}/health", edge.catalogs[0].url));
    assert_eq!(by_name["identity"]["status"], "healthy");
    assert_eq!(by_name["identity"]["url"], format!("{}/health", edge.identity.url));
}

#[tokio::test]
async fn metrics_count_proxied_requests_by_route_and_upstream() {
    let edge = Edge::start(|_| {}).await;
    assert_eq!(send(edge.get("/api/v1/products/echo")).await.status(), StatusCode::OK);
    let response = send(edge.get("/metrics")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("metrics text");
    let has = |metric: &str, needle: &str| {
        text.lines().any(|line| line.starts_with(&format!("{metric}{{")) && line.contains(needle))
    };
    assert!(has("gateway_upstream_requests_total", "service=\"catalog\""), "{text}");
    assert!(has("http_requests_total", "route=\"/api/v1/products\""), "{text}");
    testkit::assert_promtool_accepts(&text);
}

#[tokio::test]
async fn an_oversized_chunked_upload_is_413_and_does_not_eject_the_instance() {
    let edge = Edge::start(|config| {
        config.http.body_limit_bytes = 1024;
        config.ejection.consecutive_failures = 1;
    })
    .await;
    let admin = edge.admin_token();
    for _ in 0..3 {
        let response = send(edge.streamed_upload(&admin, 8, 512)).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert_eq!(
        send(edge.get("/api/v1/products/echo")).await.status(),
        StatusCode::OK,
        "the client's oversized bodies did not eject the healthy instance"
    );
}

#[tokio::test]
async fn an_upstream_refusing_a_big_body_does_not_count_against_it() {
    // The gateway accepts more than the upstream will read: the upstream answers
    // and closes while the body is still being sent.
    let edge = Edge::start(|config| {
        config.http.body_limit_bytes = 16 * 1024 * 1024;
        config.ejection.consecutive_failures = 1;
    })
    .await;
    let admin = edge.admin_token();
    for _ in 0..3 {
        let response = send(edge.streamed_upload(&admin, 80, 64 * 1024)).await;
        assert_ne!(response.status(), StatusCode::BAD_GATEWAY, "the client's body is not the instance's failure");
    }
    let metrics = send(edge.get("/metrics")).await.text().await.expect("metrics");
    assert!(!metrics.contains("gateway_upstream_ejections_total{"), "no instance was ejected:\n{metrics}");
}

#[tokio::test]
async fn a_401_names_the_bearer_scheme() {
    let edge = Edge::start(|_| {}).await;
    let response = send(edge.get("/api/v1/users/me")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "www-authenticate"), Some("Bearer realm=\"bazaar\""));
}

// ---------------------------------------------------------------------------
// 7. OpenAPI and Swagger UI
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_public_openapi_document_merges_the_upstreams_and_adds_edge_responses() {
    let edge = Edge::start(|_| {}).await;
    let response = send(edge.get("/api/v1/openapi.json")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.expect("openapi json");
    let paths = doc["paths"].as_object().expect("paths");
    for path in ["/api/v1/products", "/api/v1/products/{id}", "/api/v1/users/me", "/health"] {
        assert!(paths.contains_key(path), "{path} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    assert!(!paths.contains_key("/internal/reindex"), "paths the gateway does not route stay private");
    assert!(doc["components"]["schemas"]["Product"].is_object());
    assert!(doc["components"]["schemas"]["User"].is_object());

    let mut operations = 0;
    for (path, item) in paths.iter().filter(|(path, _)| path.as_str() != "/health") {
        for (method, operation) in item.as_object().expect("path item") {
            operations += 1;
            for status in ["401", "403", "429"] {
                assert!(operation["responses"][status].is_object(), "{method} {path} lacks {status}");
            }
        }
    }
    assert_eq!(operations, 4);
}

#[tokio::test]
async fn swagger_ui_is_served_at_docs() {
    let edge = Edge::start(|_| {}).await;
    let response = send(edge.get("/docs/")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").is_some_and(|ct| ct.starts_with("text/html")));
    let html = response.text().await.expect("html");
    assert!(html.to_lowercase().contains("swagger"), "{html}");
}
