//! The chassis server stack on a real socket: problems for every error,
//! metrics that Prometheus accepts, trace ids in and out, body limits,
//! panics, and a graceful shutdown that lets in-flight requests finish.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use chassis::config::HttpSettings;
use chassis::health::Health;
use chassis::server::{Shutdown, ShutdownTrigger};
use chassis::service::Service;
use tokio::sync::oneshot;

struct Running {
    base: String,
    trigger: ShutdownTrigger,
    done: oneshot::Receiver<()>,
}

async fn start(routes: Router) -> Running {
    let http = HttpSettings { body_limit_bytes: 1024, shutdown_grace_secs: 5, ..HttpSettings::default() };
    let service = Service::new("demo", routes, Health::builder("9.9.9").build(), &http);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (trigger, shutdown) = Shutdown::new();
    let (done_tx, done) = oneshot::channel();
    chassis::task::spawn("demo", async move {
        let result = service.run(listener, shutdown).await;
        let _ = done_tx.send(());
        result
    });
    Running { base, trigger, done }
}

fn routes() -> Router {
    slow_routes(std::sync::Arc::new(tokio::sync::Notify::new()))
}

/// The routes, with `/slow` announcing on `started` when it begins.
fn slow_routes(started: std::sync::Arc<tokio::sync::Notify>) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/slow",
            get(move || {
                let started = started.clone();
                async move {
                    started.notify_one();
                    // The handler's own slow work, which shutdown must wait for (not a test wait).
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    "finally"
                }
            }),
        )
        .route(
            "/panic",
            get(|| async {
                let nothing: Option<&str> = None;
                nothing.map(str::to_owned).unwrap_or_else(|| panic!("handler bug"))
            }),
        )
}

#[tokio::test]
async fn errors_are_problem_documents_with_the_trace_id() {
    let app = start(routes()).await;
    let client = reqwest::Client::new();
    for (method, path, status) in [
        (reqwest::Method::GET, "/nope", 404),
        (reqwest::Method::DELETE, "/hello", 405),
        (reqwest::Method::GET, "/panic", 500),
    ] {
        let response = client.request(method, format!("{}{path}", app.base)).send().await.expect("request");
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{path}");
        let trace = response.headers()["x-trace-id"].to_str().expect("trace").to_owned();
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["status"], status);
        assert_eq!(body["trace_id"], trace, "{path}: the problem names the trace");
        assert_eq!(body["instance"], path, "{path}: the problem names the request path");
        assert!(!body["detail"].as_str().unwrap_or("").contains("handler bug"), "no internal text leaks");
    }
}

#[tokio::test]
async fn oversized_body_is_refused_with_413() {
    let app = start(routes()).await;
    let response =
        reqwest::Client::new().post(format!("{}/echo", app.base)).body("x".repeat(4096)).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn incoming_traceparent_keeps_its_trace_id() {
    let app = start(routes()).await;
    let response = reqwest::Client::new()
        .get(format!("{}/hello", app.base))
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_pass_promtool() {
    let app = start(routes()).await;
    for _ in 0..3 {
        reqwest::get(format!("{}/hello", app.base)).await.expect("request");
    }
    let text = reqwest::get(format!("{}/metrics", app.base)).await.expect("metrics").text().await.expect("text");
    assert!(text.contains(r#"http_requests_total{route="/hello",method="GET",status="200"}"#), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    testkit::assert_promtool_accepts(&text);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_ones() {
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let app = start(slow_routes(started.clone())).await;
    let client = reqwest::Client::new();
    let slow = {
        let client = client.clone();
        let url = format!("{}/slow", app.base);
        chassis::task::spawn("slow-request", async move {
            let response = client.get(url).send().await?;
            assert_eq!(response.status(), 200);
            assert_eq!(response.text().await?, "finally");
            Ok::<(), reqwest::Error>(())
        })
    };
    tokio::time::timeout(Duration::from_secs(5), started.notified()).await.expect("the slow request is in flight");
    app.trigger.trigger();
    slow.await.expect("the in-flight request completed");
    tokio::time::timeout(Duration::from_secs(5), app.done).await.expect("server stopped").expect("stopped signal");
    assert!(client.get(format!("{}/hello", app.base)).send().await.is_err(), "no new connections after shutdown");
}

#[tokio::test]
async fn json_bodies_must_be_objects_of_the_right_type_and_media_type() {
    #[derive(serde::Deserialize)]
    struct Order {
        #[allow(dead_code)]
        quantity: u32,
    }
    let routes =
        Router::new().route("/orders", post(|chassis::extract::Json(_): chassis::extract::Json<Order>| async { "ok" }));
    let app = start(routes).await;
    let client = reqwest::Client::new();
    let send = |body: &'static str, content_type: &'static str| {
        client.post(format!("{}/orders", app.base)).header("content-type", content_type).body(body).send()
    };
    let cases = [
        ("{\"quantity\": 2}", "application/json", 200, None),
        ("{\"quantity\": 2}", "application/json; charset=utf-8", 200, None),
        ("{\"quantity\": 2}", "text/plain", 415, Some("unsupported_media_type")),
        ("{\"quantity\": ", "application/json", 400, Some("malformed_json")),
        ("[1, 2]", "application/json", 422, Some("validation_failed")),
        ("{\"quantity\": -1}", "application/json", 422, Some("validation_failed")),
    ];
    for (body, content_type, status, code) in cases {
        let response = send(body, content_type).await.expect("request");
        assert_eq!(response.status().as_u16(), status, "{body} as {content_type}");
        if let Some(code) = code {
            let problem: serde_json::Value = response.json().await.expect("problem");
            assert_eq!(problem["code"], code, "{body}");
            assert!(!problem.to_string().contains("at line"), "no parser positions: {problem}");
        }
    }
}
