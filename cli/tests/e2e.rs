//! End-to-end journeys through the gateway of a real platform: `bazaar up`
//! with every service as its own process, on ephemeral ports, in a temp dir.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use identity::keys::{AccessClaims, KeyRing};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use testkit::{Platform, PlatformOptions};

const BIN: &str = env!("CARGO_BIN_EXE_bazaar");

async fn platform(config: &str) -> Platform {
    let mut options = PlatformOptions::new(BIN);
    if !config.is_empty() {
        options = options.config(config);
    }
    Platform::start(options).await.unwrap_or_else(|e| panic!("the platform starts: {e}"))
}

struct Api<'a> {
    platform: &'a Platform,
    client: Client,
}

impl<'a> Api<'a> {
    fn new(platform: &'a Platform) -> Self {
        Self { platform, client: Client::new() }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.platform.gateway_url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.json().await.unwrap_or(Value::Null))
    }

    async fn sign_up_and_in(&self, email: &str) -> String {
        let (status, _, body) = self
            .call(
                Method::POST,
                "/api/v1/users",
                None,
                Some(json!({"email": email, "password": "correct-horse-42", "name": "Shopper"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.token(email, "correct-horse-42").await
    }

    async fn token(&self, email: &str, password: &str) -> String {
        let (status, _, grant) = self
            .call(Method::POST, "/api/v1/auth/token", None, Some(json!({"email": email, "password": password})))
            .await;
        assert_eq!(status, StatusCode::OK, "{grant}");
        grant["access_token"].as_str().expect("a token").to_owned()
    }
}

fn product(sku: &str) -> Value {
    json!({"sku": sku, "name": "Platypus Teapot", "description": "Stoneware, holds 1 l.",
           "price": {"amount": 3450, "currency": "USD"}, "category": "kitchen", "attributes": {"colour": "teal"}})
}

#[tokio::test]
async fn shopper_journey_and_admin_only_writes() {
    let platform = platform("").await;
    let api = Api::new(&platform);
    let customer = api.sign_up_and_in("shopper@example.com").await;

    let (status, _, me) = api.call(Method::GET, "/api/v1/users/me", Some(&customer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], "shopper@example.com");
    assert_eq!(me["roles"], json!(["customer"]));

    let (status, headers, page) = api.call(Method::GET, "/api/v1/products?q=stainless&limit=5", None, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(!page["items"].as_array().expect("items").is_empty(), "the seeded catalog has stainless things");
    assert_eq!(headers["x-cache"], "miss");
    let (_, headers, again) = api.call(Method::GET, "/api/v1/products?q=stainless&limit=5", None, None).await;
    assert_eq!(headers["x-cache"], "hit", "a repeated public read is served by the gateway cache");
    assert_eq!(again, page);

    let (status, _, categories) = api.call(Method::GET, "/api/v1/categories", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(categories["items"].as_array().map(Vec::len), Some(8));

    let (email, password) = platform.admin_credentials();
    let admin = api.token(&email, &password).await;
    let (status, headers, created) =
        api.call(Method::POST, "/api/v1/products", Some(&admin), Some(product("E2E-0001"))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let location = headers["location"].to_str().expect("location").to_owned();
    let (status, _, read) = api.call(Method::GET, &location, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["sku"], "E2E-0001");

    let (status, _, problem) =
        api.call(Method::POST, "/api/v1/products", Some(&customer), Some(product("E2E-0002"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["status"], 403);
    let (status, _, _) = api.call(Method::POST, "/api/v1/products", None, Some(product("E2E-0003"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_tampered_token_is_refused_with_401() {
    let platform = platform("").await;
    let api = Api::new(&platform);
    let valid = api.sign_up_and_in("mallory@example.com").await;
    let (status, _, _) = api.call(Method::GET, "/api/v1/users/me", Some(&valid), None).await;
    assert_eq!(status, StatusCode::OK);

    // The platform's own signing key, to sign tokens that are wrong in one way each.
    let keys = KeyRing::load_or_create(&platform.data_dir().join("services/identity/keys")).expect("the identity key");
    let parts: Vec<&str> = valid.split('.').collect();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("payload")).expect("claims");
    let signed = |edit: &dyn Fn(&mut AccessClaims)| {
        let mut claims: AccessClaims = serde_json::from_value(claims.clone()).expect("claims parse");
        edit(&mut claims);
        keys.issue(&claims).expect("signs")
    };
    let mut promoted = claims.clone();
    promoted["roles"] = json!(["admin"]);
    let promoted_payload = URL_SAFE_NO_PAD.encode(promoted.to_string());
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let mut flipped_signature = parts[2].to_owned();
    let last = if flipped_signature.ends_with('A') { "B" } else { "A" };
    flipped_signature.replace_range(flipped_signature.len() - 1.., last);
    let other_key = KeyRing::generate().expect("another key");
    let other: AccessClaims = serde_json::from_value(claims.clone()).expect("claims parse");

    let tampered = [
        ("payload edited after signing", format!("{}.{promoted_payload}.{}", parts[0], parts[2])),
        ("signature altered", format!("{}.{}.{flipped_signature}", parts[0], parts[1])),
        ("alg none", format!("{none_header}.{promoted_payload}.")),
        ("expired", signed(&|c| c.exp = c.iat - 60)),
        ("wrong issuer", signed(&|c| c.iss = "someone-else".into())),
        ("wrong audience", signed(&|c| c.aud = "other-app".into())),
        ("unknown key", other_key.issue(&other).expect("signs")),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in tampered {
        let (status, headers, problem) = api.call(Method::GET, "/api/v1/users/me", Some(&token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {problem}");
        assert_eq!(headers["content-type"], "application/problem+json", "{what}");
        assert!(problem["code"].as_str().is_some_and(|c| c.starts_with("token_")), "{what}: {problem}");
    }
}

#[tokio::test]
async fn anonymous_flood_is_rate_limited_with_retry_after() {
    let platform = platform("[gateway.rate_limit]\nanonymous = { rate_per_sec = 2, burst = 5 }\n").await;
    let api = Api::new(&platform);
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..12 {
        let (status, headers, body) = api.call(Method::GET, "/api/v1/categories", None, None).await;
        statuses.push(status.as_u16());
        assert!(headers.contains_key("ratelimit"), "RateLimit header on every answer");
        if status == StatusCode::TOO_MANY_REQUESTS && limited.is_none() {
            limited = Some((headers, body));
        }
    }
    let (headers, problem) = limited.unwrap_or_else(|| panic!("no 429 among {statuses:?}"));
    assert!(headers["retry-after"].to_str().ok().and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1));
    assert_eq!(problem["code"], "rate_limited");
    let (status, _, _) = api.call(Method::GET, "/health", None, None).await;
    assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "/health is exempt");
}

#[tokio::test]
async fn health_documents_have_the_documented_shape() {
    let platform = platform("").await;
    let api = Api::new(&platform);
    let (status, _, health) = api.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert!(matches!(health["status"].as_str(), Some("healthy" | "degraded")));
    assert!(health["version"].is_string());
    assert!(health["checks"].is_object());
    let dependencies = health["dependencies"].as_array().expect("dependencies");
    let names: Vec<&str> = dependencies.iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["catalog", "identity"]);
    for dependency in dependencies {
        assert_eq!(dependency["status"], "healthy", "{dependency}");
        let url = dependency["url"].as_str().expect("url");
        assert!(url.ends_with("/health"), "{url}");
        let (status, service): (StatusCode, Value) = {
            let response = api.client.get(url).send().await.expect("service health");
            (response.status(), response.json().await.expect("json"))
        };
        assert_eq!(status, StatusCode::OK);
        assert_eq!(service["status"], "healthy");
        assert_eq!(service["checks"]["database"]["status"], "healthy");
        assert!(service["checks"]["database"]["responseTime"].as_str().is_some_and(|t| t.ends_with("ms")));
        let metrics = api.client.get(url.replace("/health", "/metrics")).send().await.expect("metrics");
        testkit::assert_promtool_accepts(&metrics.text().await.expect("text"));
    }
    let gateway_metrics = api.client.get(format!("{}/metrics", platform.gateway_url())).send().await.expect("metrics");
    testkit::assert_promtool_accepts(&gateway_metrics.text().await.expect("text"));
}

#[tokio::test]
async fn one_request_is_one_trace_in_gateway_and_service_logs() {
    let platform = platform("").await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let response = Client::new()
        .get(format!("{}/api/v1/categories", platform.gateway_url()))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-trace-id"].to_str().ok(), Some(trace_id.as_str()));
    let in_trace = |service: &str| {
        platform.logs(service).into_iter().filter(|line| line["traceId"] == trace_id.as_str()).collect::<Vec<_>>()
    };
    let found = testkit::wait_until(Duration::from_secs(10), || {
        let ready = !in_trace("gateway").is_empty() && !in_trace("catalog").is_empty();
        async move { ready }
    })
    .await;
    assert!(found, "gateway: {:?}\ncatalog: {:?}", in_trace("gateway"), in_trace("catalog"));
    let access = in_trace("gateway").into_iter().find(|l| l["message"] == "request handled").expect("an access line");
    assert!(access["metadata"]["upstream"].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:")), "{access}");
    assert_eq!(access["metadata"]["cache"], "miss", "{access}");
    assert_eq!(access["metadata"]["status"], 200, "{access}");
    let gateway_span = in_trace("gateway")[0]["spanId"].clone();
    let catalog_span = in_trace("catalog")[0]["spanId"].clone();
    assert_ne!(gateway_span, catalog_span, "each hop has its own span");
    for line in in_trace("catalog") {
        for field in ["timestamp", "level", "service", "traceId", "spanId", "message", "metadata"] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
    }
}

#[tokio::test]
async fn public_api_is_described_and_browsable() {
    let platform = platform("").await;
    let api = Api::new(&platform);
    let (status, _, doc) = api.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/users",
        "/api/v1/auth/token",
        "/api/v1/users/me",
        "/api/v1/products",
        "/api/v1/products/{id}",
        "/api/v1/categories",
        "/.well-known/jwks.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is missing");
    }
    assert!(doc["paths"]["/api/v1/products"]["post"]["responses"]["429"].is_object());
    let docs = api.client.get(format!("{}/docs/", platform.gateway_url())).send().await.expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.expect("html").contains("swagger"));
}

#[tokio::test]
async fn replicas_behind_the_gateway_share_the_reads() {
    let platform = Platform::start(PlatformOptions::new(BIN).args(["--replicas", "catalog=2"]))
        .await
        .unwrap_or_else(|e| panic!("the platform starts: {e}"));
    let api = Api::new(&platform);
    for n in 0..20 {
        // Distinct queries so the gateway cache does not answer.
        let (status, _, _) = api.call(Method::GET, &format!("/api/v1/products?limit={}", n % 10 + 1), None, None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let handled = |service: &str| platform.logs(service).iter().filter(|l| l["message"] == "request handled").count();
    let both = testkit::wait_until(Duration::from_secs(10), || {
        let ready = handled("catalog-1") > 0 && handled("catalog-2") > 0;
        async move { ready }
    })
    .await;
    assert!(both, "catalog-1 handled {}, catalog-2 handled {}", handled("catalog-1"), handled("catalog-2"));
}

#[tokio::test]
async fn spans_of_one_request_reach_an_otlp_collector_as_one_trace() {
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    // A stand-in collector on loopback that keeps every span it receives.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                for resource in body["resourceSpans"].as_array().into_iter().flatten() {
                    let service = resource["resource"]["attributes"][0]["value"]["stringValue"].clone();
                    for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                        for span in scope["spans"].as_array().into_iter().flatten() {
                            let mut span = span.clone();
                            span["service"] = service.clone();
                            sink.lock().expect("lock").push(span);
                        }
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    chassis::task::spawn("collector", async move { axum::serve(listener, collector).await });

    let platform = Platform::start(PlatformOptions::new(BIN).env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint))
        .await
        .unwrap_or_else(|e| panic!("the platform starts: {e}"));
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let response = Client::new()
        .get(format!("{}/api/v1/categories", platform.gateway_url()))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);

    let spans_of = |service: &str, kind: u64| {
        received
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s["traceId"] == trace_id.as_str() && s["service"] == service && s["kind"] == kind)
            .cloned()
            .collect::<Vec<_>>()
    };
    let arrived = testkit::wait_until(Duration::from_secs(15), || {
        let ready = !spans_of("gateway", 2).is_empty()
            && !spans_of("gateway", 3).is_empty()
            && !spans_of("catalog", 2).is_empty();
        async move { ready }
    })
    .await;
    assert!(arrived, "spans received: {:?}", received.lock().expect("lock"));
    let gateway_server = &spans_of("gateway", 2)[0];
    let gateway_client = &spans_of("gateway", 3)[0];
    let catalog_server = &spans_of("catalog", 2)[0];
    assert_eq!(gateway_server["parentSpanId"], "00f067aa0ba902b7", "the client's span is the gateway's parent");
    assert_eq!(gateway_client["parentSpanId"], gateway_server["spanId"]);
    assert_eq!(catalog_server["parentSpanId"], gateway_client["spanId"], "one span per hop, linked");
    assert_eq!(catalog_server["name"], "GET /api/v1/categories");
}
