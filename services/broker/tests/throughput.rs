//! Speed: a 100 000-message backlog drains through batched fetch and ack in
//! well under a minute, and at 1 000 messages a second from many publishers
//! the end-to-end latency (publish call to fetch return) stays low. Both print
//! what they measured; run them in release for the numbers that count:
//! `cargo test --release -p bazaar-broker --test throughput -- --nocapture`.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bus::Envelope;
use common::{ping, start_in, subscription};

const PING: &str = "test.ping.v1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_100k_messages_drains_in_well_under_a_minute() {
    const TOTAL: u64 = 100_000;
    const BATCH: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("drain", &[PING], Duration::from_secs(60))).await.unwrap();

    let started = Instant::now();
    let publisher = |part: u64| async move {
        let per = TOTAL / 4;
        for from in (part * per..(part + 1) * per).step_by(BATCH as usize) {
            let batch: Vec<Envelope> = (from..from + BATCH).map(ping).collect();
            bus.publish(&batch).await.unwrap();
        }
    };
    tokio::join!(publisher(0), publisher(1), publisher(2), publisher(3));
    let published_in = started.elapsed();

    let started = Instant::now();
    let consumer = || async move {
        let mut seen = 0u64;
        loop {
            let batch = bus.fetch("drain", 500, Duration::ZERO).await.unwrap();
            if batch.is_empty() {
                return seen;
            }
            seen += batch.len() as u64;
            bus.ack("drain", &batch).await.unwrap();
        }
    };
    let (a, b) = tokio::join!(consumer(), consumer());
    let drained_in = started.elapsed();
    println!(
        "published {TOTAL} in {published_in:?} ({:.0}/s), drained in {drained_in:?} ({:.0}/s)",
        TOTAL as f64 / published_in.as_secs_f64(),
        TOTAL as f64 / drained_in.as_secs_f64()
    );
    assert_eq!(a + b, TOTAL);
    assert!(drained_in < Duration::from_secs(30), "draining took {drained_in:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_thousand_messages_a_second_delivery_is_prompt() {
    const PUBLISHERS: u64 = 10;
    const PER_PUBLISHER: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("live", &[PING], Duration::from_secs(60))).await.unwrap();

    let sent_at: Mutex<HashMap<u64, Instant>> = Mutex::new(HashMap::new());
    let done = AtomicBool::new(false);
    // Ten publishers at 100 messages a second each, one message per publish: the relay's worst case.
    let publisher = |part: u64| {
        let sent_at = &sent_at;
        async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(10));
            for n in part * PER_PUBLISHER..(part + 1) * PER_PUBLISHER {
                ticks.tick().await;
                let envelope = ping(n);
                sent_at.lock().unwrap().insert(n, Instant::now());
                bus.publish(&[envelope]).await.unwrap();
            }
        }
    };
    let consumer = || async {
        let mut latencies = Vec::new();
        while !done.load(Ordering::SeqCst) || latencies.len() < (PUBLISHERS * PER_PUBLISHER) as usize {
            let batch = bus.fetch("live", 100, Duration::from_millis(200)).await.unwrap();
            let now = Instant::now();
            {
                let sent_at = sent_at.lock().unwrap();
                latencies.extend(batch.iter().map(|d| now - sent_at[&common::n_of(&d.envelope)]));
            }
            bus.ack("live", &batch).await.unwrap();
            if done.load(Ordering::SeqCst) && batch.is_empty() {
                break;
            }
        }
        latencies
    };
    let publishers = async {
        let started = Instant::now();
        futures_util::future::join_all((0..PUBLISHERS).map(publisher)).await;
        done.store(true, Ordering::SeqCst);
        started.elapsed()
    };
    let (published_in, mut latencies) = tokio::join!(publishers, consumer());
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let rate = (PUBLISHERS * PER_PUBLISHER) as f64 / published_in.as_secs_f64();
    println!(
        "{} messages at {rate:.0}/s: latency p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        at(0.50),
        at(0.99),
        latencies[latencies.len() - 1]
    );
    assert_eq!(latencies.len(), (PUBLISHERS * PER_PUBLISHER) as usize);
    // Generous for a shared machine running a debug build; the release numbers are in the output.
    assert!(at(0.99) < Duration::from_millis(250), "p99 {:?}", at(0.99));
}
