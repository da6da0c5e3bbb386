//! The bus conformance suite: one set of behaviours every transport keeps
//! (the embedded broker and NATS JetStream), and the outbox and inbox keep on
//! every database (SQLite and PostgreSQL). Each scenario is written once and
//! run on every combination by the macros at the bottom.
//!
//! Process deaths are reproduced by leaving the state exactly as a dead
//! process leaves it: rows committed and never relayed, a batch published and
//! never deleted from the outbox, a handler's effect committed and never
//! acked. The broker killed with SIGKILL is in `cli/tests/bus.rs`, where the
//! real `bazaar serve broker` process runs.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bus::{
    Backoff, Consumer, ConsumerOptions, Envelope, Handler, HandlerError, Kind, Message, Outbox, Outcome, Relay,
    RelayOptions, Subscription, Transport,
};
use chassis::db::Db;
use chassis::server::{Shutdown, ShutdownTrigger};
use serde::{Deserialize, Serialize};
use testkit::wait_until;

// ---------------------------------------------------------------- messages

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ticked {
    stream: String,
    n: u64,
}

impl Message for Ticked {
    const TYPE: &'static str = "test.ticked.v1";
    const KIND: Kind = Kind::Event;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Other {
    n: u64,
}

impl Message for Other {
    const TYPE: &'static str = "test.other.v1";
    const KIND: Kind = Kind::Event;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ping {
    text: String,
}

impl Message for Ping {
    const TYPE: &'static str = "test.ping.v1";
    const KIND: Kind = Kind::Query;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pong {
    text: String,
}

impl Message for Pong {
    const TYPE: &'static str = "test.pong.v1";
    const KIND: Kind = Kind::Query;
}

fn tick(stream: &str, n: u64) -> Envelope {
    Envelope::new("test", stream, &Ticked { stream: stream.to_owned(), n }).unwrap()
}

fn ticks(stream: &str, count: u64) -> Vec<Envelope> {
    (1..=count).map(|n| tick(stream, n)).collect()
}

/// Runs `$body` (an `Option`) until it gives `Some`, failing after `$timeout`: polling with a deadline.
macro_rules! eventually {
    ($timeout:expr, $what:expr, $body:block) => {{
        let deadline = tokio::time::Instant::now() + $timeout;
        loop {
            if let Some(value) = $body {
                break value;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {}", $what);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

// ---------------------------------------------------------------- harness

/// A transport to test against, with whatever keeps it running.
struct Bus {
    transport: Transport,
    /// A second, independent connection: another process's view of the bus.
    other: Transport,
    _guard: Box<dyn std::any::Any + Send>,
}

async fn embedded() -> Option<Bus> {
    let dir = tempfile::tempdir().unwrap();
    let service = broker::build(&broker::Config::default(), dir.path()).await.unwrap();
    let running = testkit::RunningService::start("broker", service).await;
    let transport = Transport::Embedded(bus::EmbeddedTransport::new(running.base_url()));
    let other = Transport::Embedded(bus::EmbeddedTransport::new(running.base_url()));
    Some(Bus { transport, other, _guard: Box::new((running, dir)) })
}

async fn jetstream() -> Option<Bus> {
    let nats = testkit::nats_or_skip().await?;
    let connect = || async {
        Transport::JetStream(bus::JetStreamTransport::connect(&[nats.url()], Default::default()).await.unwrap())
    };
    let transport = connect().await;
    let other = connect().await;
    Some(Bus { transport, other, _guard: Box::new(nats) })
}

/// A service database with the bus tables and an `effects` table the test handlers write to.
struct Store {
    db: Db,
    outbox: Outbox,
    _guard: Box<dyn std::any::Any + Send>,
}

const EFFECTS: &str =
    "CREATE TABLE effects (message_id TEXT NOT NULL, stream TEXT NOT NULL, n BIGINT NOT NULL, at BIGINT NOT NULL)";
const LATEST: &str = "CREATE TABLE latest (stream TEXT PRIMARY KEY, n BIGINT NOT NULL)";

/// Orders effects across handlers and engines.
static CLOCK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

async fn sqlite() -> Option<Store> {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}/svc.sqlite", dir.path().display()), 4).await.unwrap();
    Some(prepare(db, Box::new(dir)).await)
}

async fn postgres() -> Option<Store> {
    let pg = testkit::postgres_or_skip().await?;
    let url = pg.create_database("svc").await.unwrap();
    let db = Db::connect(&url, 8).await.unwrap();
    Some(prepare(db, Box::new(pg)).await)
}

async fn prepare(db: Db, guard: Box<dyn std::any::Any + Send>) -> Store {
    bus::migrate(&db).await.unwrap();
    let mut tx = db.begin_write().await.unwrap();
    sqlx::query(EFFECTS).execute(&mut *tx).await.unwrap();
    sqlx::query(LATEST).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    Store { outbox: Outbox::new(db.clone()), db, _guard: guard }
}

impl Store {
    /// Commits `envelopes` to the outbox in one transaction, as a state change would.
    async fn commit(&self, envelopes: &[Envelope]) {
        let mut tx = self.db.begin_write().await.unwrap();
        for envelope in envelopes {
            Outbox::stage(&mut tx, envelope).await.unwrap();
        }
        self.outbox.commit(tx).await.unwrap();
    }

    /// (message id, stream, n) of every committed effect, in the order they were handled.
    async fn effects(&self) -> Vec<(String, String, i64)> {
        sqlx::query_as("SELECT message_id, stream, n FROM effects ORDER BY at")
            .fetch_all(self.db.reader())
            .await
            .unwrap()
    }

    async fn latest(&self, stream: &str) -> Option<i64> {
        sqlx::query_scalar("SELECT n FROM latest WHERE stream = $1")
            .bind(stream)
            .fetch_optional(self.db.reader())
            .await
            .unwrap()
    }

    async fn outbox_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM bus_outbox").fetch_one(self.db.reader()).await.unwrap()
    }
}

/// Records each message's effect and keeps the highest `n` per stream (a
/// versioned state that a late, overtaken message must not roll back); fails while `failing` is set (transiently),
/// or always for messages whose `n` is in `poison`.
#[derive(Clone, Default)]
struct Recorder {
    failing: Arc<AtomicBool>,
    poison: Arc<std::sync::Mutex<HashSet<u64>>>,
    /// Ticks whose handling never returns, as if it took the process down.
    hang: Arc<std::sync::Mutex<HashSet<u64>>>,
}

impl Handler for Recorder {
    async fn handle(&self, tx: &mut sqlx::AnyConnection, message: &Envelope) -> Result<(), HandlerError> {
        let tick: Ticked = message.decode().map_err(|e| HandlerError::Reject(e.to_string()))?;
        let hangs = self.hang.lock().unwrap().contains(&tick.n);
        if hangs {
            std::future::pending::<()>().await;
        }
        let n = i64::try_from(tick.n).unwrap();
        sqlx::query("INSERT INTO effects (message_id, stream, n, at) VALUES ($1, $2, $3, $4)")
            .bind(message.id.to_string())
            .bind(&tick.stream)
            .bind(n)
            .bind(CLOCK.fetch_add(1, Ordering::SeqCst))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO latest (stream, n) VALUES ($1, $2) \
             ON CONFLICT (stream) DO UPDATE SET n = excluded.n WHERE latest.n < excluded.n",
        )
        .bind(&tick.stream)
        .bind(n)
        .execute(&mut *tx)
        .await?;
        if self.failing.load(Ordering::SeqCst) || self.poison.lock().unwrap().contains(&tick.n) {
            return Err(HandlerError::Retry(format!("refusing tick {}", tick.n)));
        }
        Ok(())
    }
}

fn options(group: &str) -> ConsumerOptions {
    ConsumerOptions {
        fetch_wait: Duration::from_millis(200),
        ack_wait: Duration::from_secs(30),
        max_attempts: 3,
        backoff: Backoff { base: Duration::from_millis(20), cap: Duration::from_millis(100), jitter: 0.1 },
        ..ConsumerOptions::new(group, &[Ticked::TYPE])
    }
}

fn fast_relay() -> RelayOptions {
    RelayOptions { poll_interval: Duration::from_millis(50), ..RelayOptions::default() }
}

/// Starts `future` as a background task that stops when the returned trigger drops.
fn background<F>(name: &'static str, run: impl FnOnce(Shutdown) -> F) -> ShutdownTrigger
where
    F: std::future::Future<Output = Result<(), bus::BusError>> + Send + 'static,
{
    let (trigger, shutdown) = Shutdown::new();
    chassis::task::spawn(name, run(shutdown));
    trigger
}

/// Fetches from `group` until `count` deliveries arrived (acking each batch), or panics after 60 s.
async fn drain(transport: &Transport, group: &str, count: usize) -> Vec<Envelope> {
    let mut seen = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < count {
        assert!(tokio::time::Instant::now() < deadline, "only {} of {count} messages arrived", seen.len());
        let batch = transport.fetch(group, 500, Duration::from_millis(500)).await.unwrap();
        transport.ack(group, &batch).await.unwrap();
        seen.extend(batch.into_iter().map(|d| d.envelope));
    }
    seen
}

async fn subscribe(transport: &Transport, group: &str, types: &[&str], ack_wait: Duration) {
    let types = types.iter().map(|t| (*t).to_owned()).collect();
    transport.subscribe(&Subscription { group: group.to_owned(), types, ack_wait }).await.unwrap();
}

fn ns(envelopes: &[Envelope]) -> Vec<u64> {
    envelopes.iter().map(|e| e.decode::<Ticked>().unwrap().n).collect()
}

// ---------------------------------------------------------------- transport scenarios

async fn delivers_in_publish_order_and_acked_messages_do_not_come_back(bus: Bus) {
    subscribe(&bus.transport, "orders", &[Ticked::TYPE], Duration::from_secs(30)).await;
    let published = ticks("a", 50);
    bus.transport.publish(&published).await.unwrap();
    let received = drain(&bus.transport, "orders", 50).await;
    assert_eq!(ns(&received), (1..=50).collect::<Vec<_>>());
    assert_eq!(received[0], published[0], "the envelope arrives as published");
    let again = bus.transport.fetch("orders", 10, Duration::from_millis(300)).await.unwrap();
    assert!(
        again.is_empty(),
        "acked messages came back: {:?}",
        ns(&again.into_iter().map(|d| d.envelope).collect::<Vec<_>>())
    );
}

async fn publishing_an_envelope_twice_delivers_it_once(bus: Bus) {
    subscribe(&bus.transport, "g", &[Ticked::TYPE], Duration::from_secs(30)).await;
    let batch = ticks("a", 5);
    bus.transport.publish(&batch).await.unwrap();
    bus.other.publish(&batch[2..]).await.unwrap();
    let received = drain(&bus.transport, "g", 5).await;
    assert_eq!(ns(&received), [1, 2, 3, 4, 5]);
    assert!(bus.transport.fetch("g", 10, Duration::from_millis(300)).await.unwrap().is_empty());
}

async fn a_group_receives_only_its_types_from_the_oldest_message(bus: Bus) {
    // Published before the group exists: a new group starts from the oldest stored message.
    bus.transport.publish(&ticks("early", 3)).await.unwrap();
    bus.transport.publish(&[Envelope::new("test", "x", &Other { n: 1 }).unwrap()]).await.unwrap();
    subscribe(&bus.transport, "ticks-only", &[Ticked::TYPE], Duration::from_secs(30)).await;
    let received = drain(&bus.transport, "ticks-only", 3).await;
    assert!(received.iter().all(|e| e.is::<Ticked>()));
    assert!(bus.transport.fetch("ticks-only", 10, Duration::from_millis(300)).await.unwrap().is_empty());
}

async fn events_fan_out_to_every_group_and_members_of_a_group_split_them(bus: Bus) {
    subscribe(&bus.transport, "inventory", &[Ticked::TYPE], Duration::from_secs(30)).await;
    subscribe(&bus.transport, "analytics", &[Ticked::TYPE], Duration::from_secs(30)).await;
    bus.transport.publish(&ticks("a", 200)).await.unwrap();

    let analytics = drain(&bus.other, "analytics", 200).await;
    assert_eq!(analytics.len(), 200);

    // Two members of "inventory" fetching small batches at once: nothing twice, nothing missing.
    let member = |transport: Transport| async move {
        let mut mine = Vec::new();
        loop {
            let batch = transport.fetch("inventory", 10, Duration::from_millis(300)).await.unwrap();
            if batch.is_empty() {
                return mine;
            }
            transport.ack("inventory", &batch).await.unwrap();
            mine.extend(batch.into_iter().map(|d| d.envelope.id));
            tokio::task::yield_now().await;
        }
    };
    let (first, second) = tokio::join!(member(bus.transport.clone()), member(bus.other.clone()));
    assert!(!first.is_empty() && !second.is_empty(), "one member got everything: {} / {}", first.len(), second.len());
    let all: HashSet<_> = first.iter().chain(&second).collect();
    assert_eq!(first.len() + second.len(), 200, "a message went to both members");
    assert_eq!(all.len(), 200);
}

async fn an_unacked_delivery_comes_back_after_its_lease_with_a_higher_attempt(bus: Bus) {
    subscribe(&bus.transport, "g", &[Ticked::TYPE], Duration::from_secs(1)).await;
    bus.transport.publish(&ticks("a", 1)).await.unwrap();
    let first = bus.transport.fetch("g", 10, Duration::from_secs(2)).await.unwrap();
    assert_eq!((first.len(), first[0].attempt), (1, 1));
    // Leased: another member does not get it while the lease runs.
    assert!(bus.other.fetch("g", 10, Duration::from_millis(200)).await.unwrap().is_empty());
    drop(first); // the fetcher dies without acking
    let again = eventually!(Duration::from_secs(10), "the redelivery", {
        let batch = bus.other.fetch("g", 10, Duration::from_millis(500)).await.unwrap();
        (!batch.is_empty()).then_some(batch)
    });
    assert_eq!(again[0].attempt, 2);
    bus.other.ack("g", &again).await.unwrap();
}

async fn a_nak_redelivers_after_the_delay(bus: Bus) {
    subscribe(&bus.transport, "g", &[Ticked::TYPE], Duration::from_secs(30)).await;
    bus.transport.publish(&ticks("a", 1)).await.unwrap();
    let first = bus.transport.fetch("g", 1, Duration::from_secs(2)).await.unwrap();
    let started = tokio::time::Instant::now();
    bus.transport.nak("g", &first[0], Duration::from_millis(700)).await.unwrap();
    let mut again = Vec::new();
    while again.is_empty() {
        again = bus.transport.fetch("g", 1, Duration::from_secs(3)).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "the nak'd message never came back");
    }
    assert!(started.elapsed() >= Duration::from_millis(600), "redelivered before its delay: {:?}", started.elapsed());
    assert_eq!((again[0].envelope.id, again[0].attempt), (first[0].envelope.id, 2));
    bus.transport.ack("g", &again).await.unwrap();
}

async fn queries_get_one_reply_within_the_deadline_and_time_out_without_a_responder(bus: Bus) {
    let timeout = bus::request::<Ping, Pong>(
        &bus.transport,
        "test",
        "1",
        &Ping { text: "hi".into() },
        Duration::from_millis(300),
    )
    .await;
    assert!(matches!(timeout, Err(bus::BusError::Timeout { .. })), "{timeout:?}");

    let responder = bus.other.clone();
    let _stop = background("responder", move |shutdown| {
        bus::serve_queries(
            responder,
            vec![Ping::TYPE.to_owned()],
            |query: Envelope| async move {
                let ping: Ping = query.decode()?;
                Ok(Envelope::new("responder", &query.subject, &Pong { text: ping.text.to_uppercase() })?)
            },
            shutdown,
        )
    });
    // The responder may still be subscribing: ask until it answers.
    let reply = eventually!(Duration::from_secs(10), "a reply", {
        bus::request::<Ping, Pong>(&bus.transport, "test", "1", &Ping { text: "hi".into() }, Duration::from_secs(1))
            .await
            .ok()
    });
    assert_eq!(reply.text, "HI");
}

// ---------------------------------------------------------------- outbox and inbox scenarios

async fn rows_committed_before_a_crash_are_published_by_the_next_relay(bus: Bus, store: Store) {
    subscribe(&bus.transport, "g", &[Ticked::TYPE], Duration::from_secs(30)).await;
    // The process committed and died before its relay ran: nothing but the rows remain.
    store.commit(&ticks("a", 20)).await;
    let relay = Relay::new(&store.outbox, bus.transport.clone(), fast_relay());
    assert_eq!(relay.drain().await.unwrap(), bus::Drained::Sent(20));
    assert_eq!(store.outbox_rows().await, 0);
    assert_eq!(ns(&drain(&bus.transport, "g", 20).await), (1..=20).collect::<Vec<_>>());
}

async fn a_crash_between_publish_and_delete_publishes_again_and_delivers_once(bus: Bus, store: Store) {
    subscribe(&bus.transport, "g", &[Ticked::TYPE], Duration::from_secs(30)).await;
    let batch = ticks("a", 10);
    store.commit(&batch).await;
    // The dead relay had published the batch but not deleted the rows.
    bus.other.publish(&batch).await.unwrap();
    Relay::new(&store.outbox, bus.transport.clone(), fast_relay()).drain().await.unwrap();
    assert_eq!(store.outbox_rows().await, 0);
    assert_eq!(ns(&drain(&bus.transport, "g", 10).await), (1..=10).collect::<Vec<_>>());
    assert!(bus.transport.fetch("g", 10, Duration::from_millis(300)).await.unwrap().is_empty());
}

async fn a_crash_between_commit_and_ack_has_no_second_effect(bus: Bus, store: Store) {
    let mut opts = options("g");
    opts.ack_wait = Duration::from_secs(1);
    let consumer = Consumer::new(bus.transport.clone(), &store.outbox, Recorder::default(), opts.clone());
    consumer.subscribe().await.unwrap();
    bus.transport.publish(&ticks("a", 3)).await.unwrap();
    // Handled and committed, then the process died before acking.
    let deliveries = bus.transport.fetch("g", 10, Duration::from_secs(2)).await.unwrap();
    for delivery in &deliveries {
        assert_eq!(consumer.process(delivery).await.unwrap(), Outcome::Handled);
    }
    drop((deliveries, consumer));
    // The next replica gets them again once the leases run out: recognised, acked, no new effect.
    let next = Consumer::new(bus.other.clone(), &store.outbox, Recorder::default(), opts);
    let mut outcomes = Vec::new();
    eventually!(Duration::from_secs(10), "the redeliveries", {
        outcomes.extend(next.consume_batch().await.unwrap());
        (outcomes.len() >= 3).then_some(())
    });
    assert!(outcomes.iter().all(|o| *o == Outcome::Duplicate), "{outcomes:?}");
    assert_eq!(store.effects().await.len(), 3);
    assert!(next.consume_batch().await.unwrap().is_empty(), "acked duplicates came back");
}

async fn forced_redeliveries_have_one_effect_per_message(bus: Bus, store: Store) {
    let mut opts = options("g");
    opts.ack_wait = Duration::from_secs(1);
    opts.batch_size = 16;
    let consumer = Consumer::new(bus.transport.clone(), &store.outbox, Recorder::default(), opts);
    consumer.subscribe().await.unwrap();
    bus.transport.publish(&ticks("a", 100)).await.unwrap();
    // Every other batch is handled but never acked, so it is delivered again after its lease.
    let mut round = 0;
    eventually!(Duration::from_secs(30), "every message handled", {
        round += 1;
        let deliveries = bus.transport.fetch("g", 16, Duration::from_millis(300)).await.unwrap();
        let mut handled = Vec::new();
        for delivery in deliveries {
            consumer.process(&delivery).await.unwrap();
            handled.push(delivery);
        }
        if round % 2 == 0 {
            bus.transport.ack("g", &handled).await.unwrap();
        }
        (store.effects().await.len() >= 100 && handled.is_empty()).then_some(())
    });
    let effects = store.effects().await;
    let distinct: HashSet<_> = effects.iter().map(|(id, _, _)| id).collect();
    assert_eq!((effects.len(), distinct.len()), (100, 100));
}

async fn per_subject_order_holds_end_to_end_without_failures(bus: Bus, store: Store) {
    let consumer = Consumer::new(bus.transport.clone(), &store.outbox, Recorder::default(), options("g"));
    consumer.subscribe().await.unwrap();
    let _relay = background("relay", {
        let relay = Relay::new(&store.outbox, bus.transport.clone(), fast_relay());
        move |shutdown| relay.run(shutdown)
    });
    let _consumer = background("consumer", move |shutdown| consumer.run(shutdown));
    for n in 1..=40 {
        // Three subjects interleaved, committed one transaction at a time as a service would.
        store.commit(&[tick("a", n), tick("b", n), tick("c", n)]).await;
    }
    assert!(wait_until(Duration::from_secs(30), || async { store.effects().await.len() >= 120 }).await);
    let mut by_stream: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (_, stream, n) in store.effects().await {
        by_stream.entry(stream).or_default().push(n);
    }
    for (stream, order) in by_stream {
        assert_eq!(order, (1..=40).collect::<Vec<_>>(), "stream {stream} out of order");
    }
}

async fn a_failing_message_is_retried_then_dead_lettered_and_replays_to_its_group_only(bus: Bus, store: Store) {
    let recorder = Recorder::default();
    recorder.poison.lock().unwrap().insert(2);
    let consumer = Consumer::new(bus.transport.clone(), &store.outbox, recorder.clone(), options("payments"));
    consumer.subscribe().await.unwrap();
    subscribe(&bus.transport, "bystander", &[Ticked::TYPE], Duration::from_secs(30)).await;
    bus.transport.publish(&ticks("a", 3)).await.unwrap();

    let mut outcomes = Vec::new();
    eventually!(Duration::from_secs(20), "the dead letter", {
        outcomes.extend(consumer.consume_batch().await.unwrap());
        outcomes.iter().any(|o| matches!(o, Outcome::DeadLettered(_))).then_some(())
    });
    let retried = outcomes.iter().filter(|o| matches!(o, Outcome::Retried(_))).count();
    assert_eq!(retried, 2, "max_attempts 3 means two retries before the dead letter: {outcomes:?}");
    // The failed attempts rolled back: only 1 and 3 had an effect.
    let mut effects: Vec<i64> = store.effects().await.into_iter().map(|(_, _, n)| n).collect();
    effects.sort_unstable();
    assert_eq!(effects, [1, 3]);

    let dead = bus.other.dead_letters(Some("payments"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].group.as_str(), dead[0].attempts), ("payments", 3));
    assert_eq!(dead[0].envelope.decode::<Ticked>().unwrap().n, 2);
    assert!(dead[0].error.contains("refusing tick 2"), "{}", dead[0].error);
    assert_eq!(bus.other.dead_letter_by_id(&dead[0].id).await.unwrap(), dead[0]);
    assert!(bus.other.dead_letters(Some("bystander"), 10).await.unwrap().is_empty());

    // Fixed; the operator replays it.
    recorder.poison.lock().unwrap().clear();
    drain(&bus.transport, "bystander", 3).await;
    bus.other.replay(&dead[0].id).await.unwrap();
    assert!(bus.other.dead_letters(Some("payments"), 10).await.unwrap().is_empty());
    assert!(matches!(bus.other.dead_letter_by_id(&dead[0].id).await, Err(bus::BusError::NotFound(_))));
    let mut replayed = Vec::new();
    eventually!(Duration::from_secs(10), "the replayed message", {
        replayed.extend(consumer.consume_batch().await.unwrap());
        (!replayed.is_empty()).then_some(())
    });
    assert_eq!(replayed, [Outcome::Handled]);
    assert_eq!(store.effects().await.len(), 3);
    assert!(
        bus.transport.fetch("bystander", 10, Duration::from_millis(300)).await.unwrap().is_empty(),
        "a replay reached a group the message had not died in"
    );
}

async fn a_redelivery_overtaking_later_messages_is_tolerated(bus: Bus, store: Store) {
    // Message 1 fails once and is retried after 2 and 3 were handled: the
    // handler's effect keeps every message exactly once whatever the order.
    let recorder = Recorder::default();
    recorder.poison.lock().unwrap().insert(1);
    let consumer = Consumer::new(bus.transport.clone(), &store.outbox, recorder.clone(), options("g"));
    consumer.subscribe().await.unwrap();
    bus.transport.publish(&ticks("a", 3)).await.unwrap();
    let first = consumer.consume_batch().await.unwrap();
    assert!(matches!(first[0], Outcome::Retried(_)), "{first:?}");
    recorder.poison.lock().unwrap().clear();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            consumer.consume_batch().await.unwrap();
            store.effects().await.len() == 3
        })
        .await
    );
    let order: Vec<i64> = store.effects().await.into_iter().map(|(_, _, n)| n).collect();
    assert_eq!(order, [2, 3, 1], "the retry of 1 overtook nothing?");
    assert_eq!(store.latest("a").await, Some(3), "the late message rolled the state back");
}

async fn two_replicas_share_one_group_with_one_effect_per_message(bus: Bus, store: Store) {
    let first = Consumer::new(bus.transport.clone(), &store.outbox, Recorder::default(), options("g"));
    first.subscribe().await.unwrap();
    let second = Consumer::new(bus.other.clone(), &store.outbox, Recorder::default(), options("g"));
    bus.transport.publish(&ticks("a", 300)).await.unwrap();
    let run = |consumer: Consumer<Recorder>| async move {
        let mut handled = 0;
        loop {
            let outcomes = consumer.consume_batch().await.unwrap();
            if outcomes.is_empty() {
                return handled;
            }
            handled += outcomes.iter().filter(|o| **o == Outcome::Handled).count();
        }
    };
    let (a, b) = tokio::join!(run(first), run(second));
    assert!(a > 0 && b > 0, "one replica did all the work: {a} / {b}");
    assert_eq!(a + b, 300);
    assert_eq!(store.effects().await.len(), 300);
}

async fn the_relay_wakes_on_commit_instead_of_waiting_for_its_poll(bus: Bus, store: Store) {
    subscribe(&bus.transport, "g", &[Ticked::TYPE], Duration::from_secs(30)).await;
    let slow_poll = RelayOptions { poll_interval: Duration::from_secs(3600), ..RelayOptions::default() };
    let relay = Relay::new(&store.outbox, bus.transport.clone(), slow_poll);
    let _relay = background("relay", move |shutdown| relay.run(shutdown));
    // The first message may go out with the relay's first drain at start;
    // once it has arrived, that drain is over and the relay sleeps for an hour.
    store.commit(&[tick("a", 1)]).await;
    assert_eq!(ns(&drain(&bus.transport, "g", 1).await), [1]);
    // The drain that sent it ends by releasing the lease: after that, nothing but a wake-up runs another.
    eventually!(Duration::from_secs(10), "the first drain over", {
        let holder: String =
            sqlx::query_scalar("SELECT holder FROM bus_relay_lease").fetch_one(store.db.reader()).await.unwrap();
        holder.is_empty().then_some(())
    });
    store.commit(&[tick("a", 2)]).await;
    // Only the wake-up from the commit can deliver this one before the hour is up.
    assert_eq!(ns(&drain(&bus.transport, "g", 1).await), [2]);
}

async fn a_relay_waits_for_a_live_lease_and_takes_over_an_expired_one(bus: Bus, store: Store) {
    subscribe(&bus.transport, "g", &[Ticked::TYPE], Duration::from_secs(30)).await;
    // Another replica's relay holds the lease and then dies without letting go.
    let expires = bus::now_ms() + 1_500;
    let mut tx = store.db.begin_write().await.unwrap();
    sqlx::query("UPDATE bus_relay_lease SET holder = 'dead-replica', expires_at_ms = $1")
        .bind(expires)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.commit(&ticks("a", 3)).await;
    let relay = Relay::new(&store.outbox, bus.transport.clone(), fast_relay());
    assert_eq!(relay.drain().await.unwrap(), bus::Drained::LeaseBusy, "sent while another relay held the lease");
    assert!(bus.transport.fetch("g", 10, Duration::from_millis(200)).await.unwrap().is_empty());
    let sent = eventually!(Duration::from_secs(10), "the expired lease taken over", {
        match relay.drain().await.unwrap() {
            bus::Drained::Sent(n) => Some(n),
            bus::Drained::LeaseBusy => None,
        }
    });
    assert_eq!(sent, 3);
    assert!(bus::now_ms() >= expires, "took the lease before it expired");
    assert_eq!(ns(&drain(&bus.transport, "g", 3).await), [1, 2, 3]);
}

async fn a_message_that_keeps_killing_its_handler_is_dead_lettered_and_its_neighbours_handled(bus: Bus, store: Store) {
    let mut opts = options("g");
    opts.ack_wait = Duration::from_secs(1);
    let recorder = Recorder::default();
    recorder.hang.lock().unwrap().insert(2);
    let consumer = Consumer::new(bus.transport.clone(), &store.outbox, recorder.clone(), opts);
    consumer.subscribe().await.unwrap();
    bus.transport.publish(&ticks("a", 3)).await.unwrap();
    // Message 2's handler never returns: each time, the process "dies" with it
    // (the round is cut off), leaving whatever was not committed leased.
    let mut dead = Vec::new();
    eventually!(Duration::from_secs(30), "the culprit dead-lettered", {
        if let Ok(outcomes) = tokio::time::timeout(Duration::from_millis(300), consumer.consume_batch()).await {
            dead.extend(outcomes.unwrap().into_iter().filter(|o| matches!(o, Outcome::DeadLettered(_))));
        }
        (!dead.is_empty()).then_some(())
    });
    assert!(matches!(&dead[..], [Outcome::DeadLettered(e)] if e.contains("started 3 times")), "{dead:?}");
    eventually!(Duration::from_secs(10), "the neighbours handled", {
        let _ = tokio::time::timeout(Duration::from_millis(300), consumer.consume_batch()).await;
        (store.effects().await.len() == 2).then_some(())
    });
    let mut handled: Vec<i64> = store.effects().await.into_iter().map(|(_, _, n)| n).collect();
    handled.sort_unstable();
    assert_eq!(handled, [1, 3]);
    let letters = bus.other.dead_letters(Some("g"), 10).await.unwrap();
    assert_eq!(letters.iter().map(|l| l.envelope.decode::<Ticked>().unwrap().n).collect::<Vec<_>>(), [2]);
}

async fn redeliveries_that_never_reached_the_handler_are_not_counted_against_it(bus: Bus, store: Store) {
    let mut opts = options("g");
    opts.ack_wait = Duration::from_secs(1);
    let consumer = Consumer::new(bus.transport.clone(), &store.outbox, Recorder::default(), opts);
    consumer.subscribe().await.unwrap();
    bus.transport.publish(&ticks("a", 1)).await.unwrap();
    // Four deliveries lost before any handler ran (the database or the process was down).
    for attempt in 1..=4 {
        let delivery = eventually!(Duration::from_secs(10), "a redelivery", {
            bus.transport.fetch("g", 1, Duration::from_millis(500)).await.unwrap().pop()
        });
        assert_eq!(delivery.attempt, attempt);
    }
    let outcomes = eventually!(Duration::from_secs(10), "the fifth delivery", {
        let outcomes = consumer.consume_batch().await.unwrap();
        (!outcomes.is_empty()).then_some(outcomes)
    });
    assert_eq!(outcomes, [Outcome::Handled], "a message that never failed its handler was set aside");
}

async fn two_relays_on_one_database_lose_nothing_and_keep_order(bus: Bus, store: Store) {
    subscribe(&bus.transport, "g", &[Ticked::TYPE], Duration::from_secs(30)).await;
    // Two replicas: two outbox handles on one database, each with its own relay.
    let replica = Outbox::new(store.db.clone());
    let _a = background("relay-a", {
        let relay = Relay::new(&store.outbox, bus.transport.clone(), fast_relay());
        move |shutdown| relay.run(shutdown)
    });
    let _b = background("relay-b", {
        let relay = Relay::new(&replica, bus.other.clone(), fast_relay());
        move |shutdown| relay.run(shutdown)
    });
    for n in 1..=100 {
        let outbox = if n % 2 == 0 { &store.outbox } else { &replica };
        let mut tx = store.db.begin_write().await.unwrap();
        Outbox::stage(&mut tx, &tick("a", n)).await.unwrap();
        outbox.commit(tx).await.unwrap();
    }
    let received = drain(&bus.transport, "g", 100).await;
    assert_eq!(ns(&received), (1..=100).collect::<Vec<_>>());
}

async fn a_backlog_drains_through_a_consumer(bus: Bus, store: Store) {
    let size: u64 = std::env::var("BAZAAR_TEST_BACKLOG").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mut opts = options("g");
    opts.batch_size = 500;
    let consumer = Consumer::new(bus.transport.clone(), &store.outbox, Recorder::default(), opts);
    consumer.subscribe().await.unwrap();
    // Through the outbox, as a service would produce it.
    let relay = Relay::new(&store.outbox, bus.transport.clone(), fast_relay());
    for chunk in ticks("a", size).chunks(5_000) {
        store.commit(chunk).await;
        relay.drain().await.unwrap();
    }
    let mut handled = 0;
    while handled < size {
        let outcomes = consumer.consume_batch().await.unwrap();
        assert!(!outcomes.is_empty() || handled == size, "the backlog stopped draining at {handled} of {size}");
        handled += outcomes.len() as u64;
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT message_id) FROM effects")
        .fetch_one(store.db.reader())
        .await
        .unwrap();
    assert_eq!(count, i64::try_from(size).unwrap());
}

// ---------------------------------------------------------------- the matrix

macro_rules! on_every_transport {
    ($($scenario:ident),* $(,)?) => {
        mod transports {
            mod embedded {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let Some(bus) = crate::embedded().await else { return };
                    crate::$scenario(bus).await;
                })*
            }
            mod jetstream {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let Some(bus) = crate::jetstream().await else { return };
                    crate::$scenario(bus).await;
                })*
            }
        }
    };
}

macro_rules! on_every_transport_and_database {
    ($($scenario:ident),* $(,)?) => {
        mod outbox_inbox {
            macro_rules! combination {
                ($name:ident, $bus:ident, $store:ident) => {
                    mod $name {
                        $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                        async fn $scenario() {
                            let Some(bus) = crate::$bus().await else { return };
                            let Some(store) = crate::$store().await else { return };
                            crate::$scenario(bus, store).await;
                        })*
                    }
                };
            }
            combination!(embedded_sqlite, embedded, sqlite);
            combination!(embedded_postgres, embedded, postgres);
            combination!(jetstream_sqlite, jetstream, sqlite);
            combination!(jetstream_postgres, jetstream, postgres);
        }
    };
}

on_every_transport!(
    delivers_in_publish_order_and_acked_messages_do_not_come_back,
    publishing_an_envelope_twice_delivers_it_once,
    a_group_receives_only_its_types_from_the_oldest_message,
    events_fan_out_to_every_group_and_members_of_a_group_split_them,
    an_unacked_delivery_comes_back_after_its_lease_with_a_higher_attempt,
    a_nak_redelivers_after_the_delay,
    queries_get_one_reply_within_the_deadline_and_time_out_without_a_responder,
);

on_every_transport_and_database!(
    rows_committed_before_a_crash_are_published_by_the_next_relay,
    a_crash_between_publish_and_delete_publishes_again_and_delivers_once,
    a_crash_between_commit_and_ack_has_no_second_effect,
    forced_redeliveries_have_one_effect_per_message,
    per_subject_order_holds_end_to_end_without_failures,
    a_failing_message_is_retried_then_dead_lettered_and_replays_to_its_group_only,
    a_redelivery_overtaking_later_messages_is_tolerated,
    two_replicas_share_one_group_with_one_effect_per_message,
    the_relay_wakes_on_commit_instead_of_waiting_for_its_poll,
    two_relays_on_one_database_lose_nothing_and_keep_order,
    a_relay_waits_for_a_live_lease_and_takes_over_an_expired_one,
    a_message_that_keeps_killing_its_handler_is_dead_lettered_and_its_neighbours_handled,
    redeliveries_that_never_reached_the_handler_are_not_counted_against_it,
);

/// The backlog runs once per transport (on SQLite): it is about the bus, and
/// 100k messages per combination would dominate the suite's time.
mod backlog {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded() {
        let Some(bus) = crate::embedded().await else { return };
        crate::a_backlog_drains_through_a_consumer(bus, crate::sqlite().await.unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jetstream() {
        let Some(bus) = crate::jetstream().await else { return };
        crate::a_backlog_drains_through_a_consumer(bus, crate::sqlite().await.unwrap()).await;
    }
}
