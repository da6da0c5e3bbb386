//! The bus through the real binary: the broker as its own process (killed
//! with SIGKILL and restarted), the platform's services publishing through
//! their outboxes to it, and `bazaar dlq` for operators.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use bus::{Envelope, Kind, Message, Subscription, Transport};
use serde::{Deserialize, Serialize};
use testkit::{Platform, PlatformOptions};

const BIN: &str = env!("CARGO_BIN_EXE_bazaar");

#[derive(Debug, Serialize, Deserialize)]
struct Numbered {
    n: u64,
}

impl Message for Numbered {
    const TYPE: &'static str = "test.numbered.v1";
    const KIND: Kind = Kind::Event;
}

fn bazaar(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("NO_COLOR", "1").output().expect("bazaar runs")
}

/// `bazaar serve broker` on `port` with its log in `data`.
fn broker(data: &std::path::Path, port: u16) -> Child {
    Command::new(BIN)
        .args(["serve", "broker", "--data-dir", &data.to_string_lossy(), "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the broker starts")
}

async fn ready(url: &str) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let probe = format!("{url}/health/ready");
    assert!(
        testkit::wait_until(Duration::from_secs(30), || async {
            http.get(&probe).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await,
        "the broker at {url} never became ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_with_sigkill_loses_nothing_it_acknowledged() {
    let data = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut process = broker(data.path(), port);
    ready(&url).await;
    let transport = Transport::Embedded(bus::EmbeddedTransport::new(&url));
    let group =
        Subscription { group: "survivor".into(), types: vec![Numbered::TYPE.into()], ack_wait: Duration::from_secs(2) };
    transport.subscribe(&group).await.unwrap();

    // A publisher keeps publishing batches (every batch the broker acknowledged
    // is remembered) while a consumer acks some messages and leaves others in
    // flight; then the broker is killed mid-publish.
    let publisher = async {
        let mut acknowledged = Vec::new();
        for batch in 0u64.. {
            let envelopes: Vec<Envelope> =
                (0..10).map(|i| Envelope::new("test", "s", &Numbered { n: batch * 10 + i }).unwrap()).collect();
            match transport.publish(&envelopes).await {
                Ok(()) => acknowledged.extend(envelopes.iter().map(|e| e.id)),
                Err(_) => break,
            }
        }
        acknowledged
    };
    let consumer = async {
        let mut acked = HashSet::new();
        let mut in_flight = HashSet::new();
        while acked.len() < 300 {
            let batch = transport.fetch("survivor", 50, Duration::from_secs(1)).await.unwrap();
            let (ack, keep): (Vec<_>, Vec<_>) = batch.into_iter().enumerate().partition(|(i, _)| i % 5 != 0);
            let ack: Vec<_> = ack.into_iter().map(|(_, d)| d).collect();
            transport.ack("survivor", &ack).await.unwrap();
            acked.extend(ack.iter().map(|d| d.envelope.id));
            in_flight.extend(keep.iter().map(|(_, d)| d.envelope.id));
        }
        process.kill().unwrap(); // SIGKILL
        process.wait().unwrap();
        (acked, in_flight)
    };
    let (published, (acked, in_flight)) = tokio::join!(publisher, consumer);
    assert!(published.len() > 300, "the publisher barely started: {}", published.len());

    let mut process = broker(data.path(), port);
    ready(&url).await;
    let mut after = HashSet::new();
    loop {
        let batch = transport.fetch("survivor", 500, Duration::from_secs(3)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        transport.ack("survivor", &batch).await.unwrap();
        after.extend(batch.into_iter().map(|d| d.envelope.id));
    }
    process.kill().unwrap();
    let _ = process.wait();

    let lost: Vec<_> = published.iter().filter(|id| !acked.contains(id) && !after.contains(id)).collect();
    assert!(lost.is_empty(), "{} acknowledged messages were lost, e.g. {:?}", lost.len(), lost.first());
    assert!(in_flight.iter().all(|id| after.contains(id)), "an unacked delivery did not come back after the restart");
    let again: Vec<_> = acked.iter().filter(|id| after.contains(id)).collect();
    assert!(again.is_empty(), "{} acked messages were delivered again", again.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_publish_through_their_outboxes_and_operators_replay_dead_letters() {
    let platform = Platform::start(PlatformOptions::new(BIN)).await.unwrap_or_else(|e| panic!("{e}"));
    let state = platform.state().unwrap();
    let broker_url = state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["service"] == "broker")
        .and_then(|p| p["url"].as_str())
        .expect("a broker process")
        .to_owned();
    assert!(platform.data_dir().join("broker/log.sqlite").exists());

    // A sign-up through the gateway reaches the bus as identity.user-registered.v1.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let signed_up = http
        .post(format!("{}/api/v1/users", platform.gateway_url()))
        .json(&serde_json::json!({"email": "bus@example.com", "password": "correct-horse-42", "name": "Bus Rider"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_up.status(), 201);
    let transport = Transport::Embedded(bus::EmbeddedTransport::new(&broker_url));
    let watcher = Subscription {
        group: "watcher".into(),
        types: vec!["identity.user-registered.v1".into(), "catalog.product-changed.v1".into()],
        ack_wait: Duration::from_secs(30),
    };
    transport.subscribe(&watcher).await.unwrap();
    let mut seen: Vec<Envelope> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(seen.iter().any(|e| e.data["email"] == "bus@example.com")
        && seen.iter().filter(|e| e.message_type == "catalog.product-changed.v1").count() >= 240)
    {
        assert!(tokio::time::Instant::now() < deadline, "only {} messages arrived", seen.len());
        let batch = transport.fetch("watcher", 500, Duration::from_secs(1)).await.unwrap();
        transport.ack("watcher", &batch).await.unwrap();
        seen.extend(batch.into_iter().map(|d| d.envelope));
    }
    let registered = seen.iter().find(|e| e.data["email"] == "bus@example.com").unwrap();
    assert_eq!((registered.source.as_str(), registered.data["name"].as_str()), ("identity", Some("Bus Rider")));
    assert!(registered.traceparent.is_some(), "the envelope carries the trace of the sign-up");

    // An empty queue says so.
    let data = platform.data_dir().to_string_lossy().into_owned();
    let empty = bazaar(&["dlq", "list", "--data-dir", &data]);
    assert!(empty.status.success(), "{}", String::from_utf8_lossy(&empty.stderr));
    assert!(String::from_utf8_lossy(&empty.stdout).contains("the dead-letter queue is empty"));

    // A consumer gives up on a message; the operator finds it, reads it and replays it.
    let payments = Subscription {
        group: "payments".into(),
        types: vec![Numbered::TYPE.into()],
        ack_wait: Duration::from_secs(30),
    };
    transport.subscribe(&payments).await.unwrap();
    transport.publish(&[Envelope::new("test", "7", &Numbered { n: 7 }).unwrap()]).await.unwrap();
    let delivery = transport.fetch("payments", 1, Duration::from_secs(5)).await.unwrap().pop().expect("a delivery");
    transport.dead_letter("payments", &delivery, "card processor said no").await.unwrap();

    let listed = bazaar(&["dlq", "list", "--data-dir", &data, "--json"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let letters: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(letters.as_array().map(Vec::len), Some(1), "{letters}");
    assert_eq!(letters[0]["group"], "payments");
    assert_eq!(letters[0]["error"], "card processor said no");
    let id = letters[0]["id"].as_str().unwrap().to_owned();
    let table = bazaar(&["dlq", "list", "--data-dir", &data]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("test.numbered.v1"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );

    let shown = bazaar(&["dlq", "show", &id, "--data-dir", &data]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["envelope"]["data"]["n"], 7);

    let missing = bazaar(&["dlq", "show", "no-such-id", "--data-dir", &data]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no dead letter no-such-id"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    let replayed = bazaar(&["dlq", "replay", &id, "--data-dir", &data]);
    assert!(replayed.status.success(), "{}", String::from_utf8_lossy(&replayed.stderr));
    let again = transport.fetch("payments", 1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(again.len(), 1, "the replayed message reaches its group");
    assert_eq!((again[0].envelope.id, again[0].attempt), (delivery.envelope.id, 1));
    let after = bazaar(&["dlq", "list", "--data-dir", &data]);
    assert!(String::from_utf8_lossy(&after.stdout).contains("the dead-letter queue is empty"));
    assert!(platform.stop().is_some_and(|s| s.success()));
}

#[test]
fn dlq_without_a_running_platform_says_how_to_name_the_bus() {
    let data = tempfile::tempdir().unwrap();
    let output = bazaar(&["dlq", "list", "--data-dir", &data.path().to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not running") && stderr.contains("--broker-url"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_the_same_log_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let mut first = broker(data.path(), port);
    ready(&format!("http://127.0.0.1:{port}")).await;
    let second = Command::new(BIN)
        .args([
            "serve",
            "broker",
            "--data-dir",
            &data.path().to_string_lossy(),
            "--port",
            &testkit::free_port().to_string(),
        ])
        .output()
        .unwrap();
    first.kill().unwrap();
    let _ = first.wait();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another broker is using") && stderr.contains("log.sqlite"), "{stderr}");
}
