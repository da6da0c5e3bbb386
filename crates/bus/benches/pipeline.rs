//! End to end through the bus: a producer commits state changes with their
//! messages to its outbox (one transaction each, SQLite), the relay publishes
//! them, and a consumer in another database handles each through its inbox.
//! Measured per transport:
//! - latency from the producer's commit to the consumer's handler, at a
//!   steady rate (`BENCH_RATE` messages/s for `BENCH_SECS` seconds);
//! - throughput: `BENCH_BURST` messages committed as fast as one producer
//!   can (one per transaction, then 100 per transaction), and the time until
//!   the consumer has handled them all.
//!
//! `cargo bench -p bazaar-bus --bench pipeline` (JetStream needs `nats-server`
//! on PATH; `BENCH_TRANSPORTS=embedded` runs only the embedded broker). The
//! broker runs on a runtime of its own, as the separate process it is under
//! `bazaar up`.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bus::{
    Consumer, ConsumerOptions, Envelope, Handler, HandlerError, Kind, Message, Outbox, Relay, RelayOptions, Transport,
};
use chassis::db::Db;
use chassis::server::Shutdown;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Sent {
    n: u64,
    at_us: u64,
}

impl Message for Sent {
    const TYPE: &'static str = "bench.sent.v1";
    const KIND: Kind = Kind::Event;
}

fn now_us() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()).unwrap()
}

/// Records the latency of every message it handles.
#[derive(Clone, Default)]
struct Recorder {
    latencies_us: Arc<Mutex<Vec<u64>>>,
}

impl Handler for Recorder {
    async fn handle(&self, _tx: &mut sqlx::AnyConnection, message: &Envelope) -> Result<(), HandlerError> {
        let sent: Sent = message.decode().map_err(|e| HandlerError::Reject(e.to_string()))?;
        self.latencies_us.lock().unwrap().push(now_us().saturating_sub(sent.at_us));
        Ok(())
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn database(dir: &std::path::Path, name: &str) -> (Db, Outbox) {
    let db = Db::connect(&format!("sqlite://{}/{name}.sqlite", dir.display()), 4).await.unwrap();
    bus::migrate(&db).await.unwrap();
    (db.clone(), Outbox::new(db))
}

struct Pipeline {
    producer: (Db, Outbox),
    recorder: Recorder,
    _stops: Vec<chassis::server::ShutdownTrigger>,
}

async fn pipeline(transport: Transport, dir: &std::path::Path, group: &str) -> Pipeline {
    let producer = database(dir, &format!("producer-{group}")).await;
    let (_, consumer_outbox) = database(dir, &format!("consumer-{group}")).await;
    let recorder = Recorder::default();
    let mut options = ConsumerOptions::new(group, &[Sent::TYPE]);
    options.batch_size = 256;
    let consumer = Consumer::new(transport.clone(), &consumer_outbox, recorder.clone(), options);
    consumer.subscribe().await.unwrap();
    let relay = Relay::new(&producer.1, transport, RelayOptions::default());
    let (stop_relay, relay_shutdown) = Shutdown::new();
    let (stop_consumer, consumer_shutdown) = Shutdown::new();
    chassis::task::spawn("relay", relay.run(relay_shutdown));
    chassis::task::spawn("consumer", consumer.run(consumer_shutdown));
    Pipeline { producer, recorder, _stops: vec![stop_relay, stop_consumer] }
}

/// Commits messages `first..first + count` in one transaction.
async fn commit(producer: &(Db, Outbox), first: u64, count: u64) {
    let mut tx = producer.0.begin_write().await.unwrap();
    for n in first..first + count {
        let envelope = Envelope::new("bench", &n.to_string(), &Sent { n, at_us: now_us() }).unwrap();
        Outbox::stage(&mut tx, &envelope).await.unwrap();
    }
    producer.1.commit(tx).await.unwrap();
}

async fn wait_for(recorder: &Recorder, count: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while recorder.latencies_us.lock().unwrap().len() < count {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)] as f64 / 1_000.0
}

async fn steady(name: &str, transport: Transport, dir: &std::path::Path) {
    let rate: u64 = env("BENCH_RATE", 1_000);
    let secs: u64 = env("BENCH_SECS", 10);
    let pipeline = pipeline(transport, dir, &format!("steady-{name}")).await;
    let total = rate * secs;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        ticker.tick().await;
        commit(&pipeline.producer, n, 1).await;
    }
    let offered = total as f64 / started.elapsed().as_secs_f64();
    assert!(wait_for(&pipeline.recorder, total as usize, Duration::from_secs(60)).await, "{name}: messages missing");
    let mut latencies = pipeline.recorder.latencies_us.lock().unwrap().clone();
    latencies.sort_unstable();
    println!(
        "{name:<10} steady {offered:>7.0} msg/s for {secs} s: commit->handled p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
}

async fn burst(name: &str, transport: Transport, dir: &std::path::Path, per_transaction: u64) {
    let count: u64 = env("BENCH_BURST", 20_000);
    let pipeline = pipeline(transport, dir, &format!("burst-{name}-{per_transaction}")).await;
    let started = Instant::now();
    for first in (0..count).step_by(per_transaction as usize) {
        commit(&pipeline.producer, first, per_transaction.min(count - first)).await;
    }
    let committed = started.elapsed();
    assert!(wait_for(&pipeline.recorder, count as usize, Duration::from_secs(300)).await, "{name}: messages missing");
    let done = started.elapsed();
    println!(
        "{name:<10} burst  {count} messages, {per_transaction:>3} per transaction: committed at {:>7.0} msg/s, all handled after {:.2} s = {:>7.0} msg/s end to end",
        count as f64 / committed.as_secs_f64(),
        done.as_secs_f64(),
        count as f64 / done.as_secs_f64(),
    );
}

fn main() {
    let transports = std::env::var("BENCH_TRANSPORTS").unwrap_or_else(|_| "embedded,jetstream".into());
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if transports.contains("embedded") {
        // The broker on a runtime of its own, as the separate process it is under `bazaar up`.
        let broker_runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let running = broker_runtime.block_on(async {
            let service = broker::build(&broker::Config::default(), dir.path()).await.unwrap();
            testkit::RunningService::start("broker", service).await
        });
        let url = running.base_url().to_owned();
        runtime.block_on(async {
            steady("embedded", Transport::Embedded(bus::EmbeddedTransport::new(&url)), dir.path()).await;
            for per_transaction in [1, 100] {
                burst("embedded", Transport::Embedded(bus::EmbeddedTransport::new(&url)), dir.path(), per_transaction)
                    .await;
            }
        });
        drop(running);
        broker_runtime.shutdown_timeout(Duration::from_secs(2));
    }
    if transports.contains("jetstream") {
        runtime.block_on(async {
            let Some(nats) = testkit::nats_or_skip().await else { return };
            let connect = || async {
                Transport::JetStream(bus::JetStreamTransport::connect(&[nats.url()], Default::default()).await.unwrap())
            };
            steady("jetstream", connect().await, dir.path()).await;
            for per_transaction in [1, 100] {
                burst("jetstream", connect().await, dir.path(), per_transaction).await;
            }
        });
    }
}
