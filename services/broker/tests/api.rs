//! The broker's HTTP API as a client that is not `bus` sees it: every bad
//! input is a problem document with a 4xx status naming what to fix, never a
//! 500; and the chassis endpoints (`/health`, `/metrics` that promtool
//! accepts, `/openapi.json`) are there.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Running, ping, start_in, subscription};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn problem(broker: &Running, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = broker.http.request(method, broker.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{path} answered {status}");
    (status, response.json().await.unwrap())
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"].as_array().map(|e| e.iter().map(|f| f["field"].as_str().unwrap().to_owned()).collect()).unwrap()
}

#[tokio::test]
async fn bad_publishes_are_refused_naming_the_bad_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let good = serde_json::to_value(ping(1)).unwrap();

    let (status, body) =
        problem(&broker, Method::POST, "/v1/publish", Some(json!({"envelopes": [good, {"id": "x", "type": 3}]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let named = fields(&body);
    for field in ["envelopes[1].id", "envelopes[1].type", "envelopes[1].time", "envelopes[1].data"] {
        assert!(named.contains(&field.to_owned()), "{field} not in {named:?}");
    }
    let (status, _) = problem(&broker, Method::POST, "/v1/publish", Some(json!({"envelopes": []}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = problem(&broker, Method::POST, "/v1/publish", Some(json!({"messages": []}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let response = broker
        .http
        .post(broker.url("/v1/publish"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Nothing of the refused batch was stored, not even its good envelope.
    broker.bus.subscribe(&subscription("g", &["test.ping.v1"], Duration::from_secs(30))).await.unwrap();
    assert!(broker.bus.fetch("g", 10, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_groups_and_bad_fetches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;

    let (status, body) =
        problem(&broker, Method::PUT, "/v1/groups/bad%20name", Some(json!({"types": [], "ack_wait_ms": 0}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&body), vec!["group", "types", "ack_wait_ms"]);
    let (status, body) = problem(&broker, Method::PUT, "/v1/groups/g", Some(json!({"types": ["a b"]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&body), vec!["types[0]"]);

    let (status, body) = problem(&broker, Method::POST, "/v1/groups/nobody/fetch", Some(json!({"max": 1}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "unknown_group");
    assert!(body["detail"].as_str().unwrap().contains("PUT /v1/groups/nobody"), "{body}");

    let created = broker
        .http
        .put(broker.url("/v1/groups/g"))
        .json(&json!({"types": ["test.ping.v1", "test.ping.v1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["types"], json!(["test.ping.v1"]));
    assert_eq!(created["ack_wait_ms"], 30_000, "the configured default lease");
    let updated = broker.http.put(broker.url("/v1/groups/g")).json(&json!({"types": ["x.v1"]})).send().await.unwrap();
    assert_eq!(updated.status(), StatusCode::OK);

    let (status, body) =
        problem(&broker, Method::POST, "/v1/groups/g/fetch", Some(json!({"max": 0, "wait_ms": 3_600_000}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&body), vec!["max", "wait_ms"]);
    let (status, _) = problem(&broker, Method::POST, "/v1/groups/g/fetch", Some(json!({"max": -1}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn bad_acks_naks_and_dead_letters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    broker.bus.subscribe(&subscription("g", &["test.ping.v1"], Duration::from_secs(30))).await.unwrap();

    let (status, body) = problem(&broker, Method::POST, "/v1/groups/g/ack", Some(json!({"seqs": []}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&body), vec!["seqs"]);
    let (status, _) = problem(&broker, Method::POST, "/v1/groups/g/ack", Some(json!({"seqs": ["one"]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = problem(&broker, Method::POST, "/v1/groups/g/ack", Some(json!({"seqs": [1, 0]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&body), vec!["seqs[1]"]);
    let (status, _) = problem(&broker, Method::POST, "/v1/groups/nobody/ack", Some(json!({"seqs": [1]}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) =
        problem(&broker, Method::POST, "/v1/groups/g/nak", Some(json!({"seqs": [1], "delay_ms": 999_999_999_999u64})))
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&body), vec!["delay_ms"]);
    let (status, _) = problem(&broker, Method::POST, "/v1/groups/g/dead-letter", Some(json!({"seq": 1}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Acking what is not pending is harmless and says so.
    let acked: Value = broker
        .http
        .post(broker.url("/v1/groups/g/ack"))
        .json(&json!({"seqs": [42]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(acked["acked"], 0);
}

#[tokio::test]
async fn bad_dead_letter_requests_and_queries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;

    let (status, body) = problem(&broker, Method::GET, "/v1/dlq?limit=lots", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&body), vec!["limit"]);
    let (status, body) = problem(&broker, Method::GET, "/v1/dlq?group=nobody", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "unknown_group");
    let (status, body) = problem(&broker, Method::GET, "/v1/dlq/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "unknown_dead_letter");
    let (status, _) = problem(&broker, Method::POST, "/v1/dlq/nope/replay", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = problem(&broker, Method::DELETE, "/v1/dlq/nope", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    let query = serde_json::to_value(ping(1)).unwrap();
    let (status, body) =
        problem(&broker, Method::POST, "/v1/queries", Some(json!({"envelope": query, "timeout_ms": 0}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&body), vec!["timeout_ms"]);
    let (status, body) =
        problem(&broker, Method::POST, "/v1/queries", Some(json!({"envelope": query, "timeout_ms": 100}))).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["code"], "query_timeout");
    let (status, _) = problem(&broker, Method::POST, "/v1/queries/fetch", Some(json!({"types": []}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = problem(&broker, Method::POST, "/v1/queries/r/reply", Some(json!({"envelope": {}}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn metrics_pass_promtool_and_carry_the_group_gauges() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("metered", &["test.ping.v1"], Duration::from_secs(30))).await.unwrap();
    bus.publish(&(1..=5).map(ping).collect::<Vec<_>>()).await.unwrap();
    let batch = bus.fetch("metered", 3, Duration::from_secs(5)).await.unwrap();
    bus.ack("metered", &batch[..1]).await.unwrap();
    bus.nak("metered", &batch[1], Duration::from_secs(60)).await.unwrap();
    bus.dead_letter("metered", &batch[2], "no").await.unwrap();

    let metrics = || async { broker.http.get(broker.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    // Gauges are refreshed from the log every 50 ms in the tests' configuration.
    let settled = testkit::wait_until(Duration::from_secs(10), || async {
        let text = metrics().await;
        text.contains("broker_consumer_lag{group=\"metered\"} 3")
            && text.contains("broker_in_flight{group=\"metered\"} 1")
    })
    .await;
    let text = metrics().await;
    assert!(settled, "{text}");
    for name in [
        "broker_messages_published_total",
        "broker_deliveries_total{group=\"metered\"}",
        "broker_acks_total{group=\"metered\"}",
        "broker_naks_total{group=\"metered\"}",
        "broker_dead_letters_total{group=\"metered\"}",
        "broker_dead_letter_queue_size{group=\"metered\"} 1",
        "broker_commit_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    testkit::assert_promtool_accepts(&text);
}

#[tokio::test]
async fn health_and_the_openapi_document_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let health = broker.http.get(broker.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["checks"]["writer"]["status"], "healthy");
    assert_eq!(health["checks"]["database"]["status"], "healthy");
    let doc: Value = broker.http.get(broker.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for path in ["/v1/publish", "/v1/groups/{group}/fetch", "/v1/dlq/{id}/replay", "/v1/queries"] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    assert!(dir.path().join("broker/log.sqlite").exists(), "the log lives in the data dir");
}
