//! `bazaar serve broker` stops promptly: a fetch parked in a long poll is
//! answered (empty) as soon as shutdown begins, instead of holding the drain
//! for its whole wait, and the process's serve call returns cleanly.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bus::EmbeddedTransport;
use chassis::config::Sources;
use chassis::server::Shutdown;
use chassis::service::ServeOptions;
use common::subscription;

#[tokio::test]
async fn shutdown_answers_parked_fetches_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let mut sources = Sources { files: Some(Vec::new()), skip_env: true, ..Sources::default() };
    sources.set("http.port", port);
    let options = ServeOptions { data_dir: dir.path().to_owned(), instance: 1, sources };
    let (stop, shutdown) = Shutdown::new();
    let server = broker::serve(options, shutdown);

    let client = async {
        let bus = EmbeddedTransport::new(&format!("http://127.0.0.1:{port}"));
        let up = testkit::wait_until(Duration::from_secs(20), || async {
            bus.subscribe(&subscription("g", &["test.ping.v1"], Duration::from_secs(30))).await.is_ok()
        })
        .await;
        assert!(up, "the broker did not start");
        let parked = async {
            let started = Instant::now();
            let fetched = bus.fetch("g", 10, Duration::from_secs(50)).await;
            (fetched, started.elapsed())
        };
        let trigger = async {
            // The fetch parks before the shutdown it is meant to survive begins.
            common::parked(&reqwest::Client::new(), &format!("http://127.0.0.1:{port}"), "g").await;
            stop.trigger();
        };
        let ((fetched, took), ()) = tokio::join!(parked, trigger);
        assert!(fetched.unwrap().is_empty());
        assert!(took < Duration::from_secs(5), "the parked fetch held on for {took:?}");
    };
    let (served, ()) = tokio::join!(server, client);
    assert!(served.is_ok(), "{served:?}");
}
