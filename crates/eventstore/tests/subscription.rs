//! Catch-up-then-live subscriptions, run on SQLite and on a real PostgreSQL
//! server. Each case gets a fresh, migrated database.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use chassis::db::Db;
use eventstore::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, Subscription};
use futures_util::future::join_all;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Far beyond any append or read on a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// So long that a subscription using it can only be woken by the append signal.
const NEVER: Duration = Duration::from_secs(3600);

async fn store(db: Db) -> EventStore {
    eventstore::migrate(&db).await.expect("event store migrations apply");
    EventStore::new(db)
}

async fn open(url: &str) -> Db {
    Db::connect(url, 8).await.expect("database opens")
}

async fn append_numbered(store: &EventStore, stream_id: &str, n: u64) {
    store
        .append(stream_id, ExpectedVersion::Any, vec![NewEvent::new("numbered.v1", json!({"n": n}))])
        .await
        .expect("append");
}

async fn next_within_deadline(subscription: &mut Subscription) -> RecordedEvent {
    timeout(DEADLINE, subscription.next()).await.expect("an event within the deadline").expect("read")
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.global_position).collect()
}

/// The 50 stored events come first, then the 20 appended while the subscriber
/// waits, each once and in global order. The poll interval is an hour, so only
/// the append signal can deliver the live ones in time.
async fn catches_up_then_receives_live_appends_in_order(store: EventStore) {
    for n in 1..=50 {
        append_numbered(&store, &format!("stream-{}", n % 3), n).await;
    }
    let mut subscription = store.subscribe_all_with(0, NEVER);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = async {
        for _ in 0..70 {
            let event = next_within_deadline(&mut subscription).await;
            tx.send(event).expect("the test is listening");
        }
    };
    let ((), received) = tokio::join!(consumer, async {
        let mut received = Vec::new();
        for _ in 0..50 {
            received.push(timeout(DEADLINE, rx.recv()).await.expect("caught up in time").expect("consumer alive"));
        }
        assert_eq!(positions(&received), (1..=50).collect::<Vec<_>>());

        // One at a time, each while the subscriber waits for it...
        for n in 51..=60 {
            append_numbered(&store, "live", n).await;
            received.push(timeout(DEADLINE, rx.recv()).await.expect("woken in time").expect("consumer alive"));
        }
        // ...then a burst from clones of the store, which share its signal.
        let clones: Vec<EventStore> = (61..=70).map(|_| store.clone()).collect();
        join_all(clones.iter().zip(61..=70).map(|(clone, n)| append_numbered(clone, "burst", n))).await;
        for _ in 61..=70 {
            received.push(timeout(DEADLINE, rx.recv()).await.expect("woken in time").expect("consumer alive"));
        }
        received
    });
    assert_eq!(positions(&received), (1..=70).collect::<Vec<_>>(), "in order, none skipped, none twice");
    let numbers: Vec<u64> = received[50..60].iter().map(|e| e.data["n"].as_u64().expect("n")).collect();
    assert_eq!(numbers, (51..=60).collect::<Vec<_>>());
    assert_eq!(subscription.position(), 70);
}

/// A subscriber resuming from checkpoint `k` gets exactly the events after it.
async fn a_subscriber_from_a_position_gets_exactly_the_events_after_it(store: EventStore) {
    for n in 1..=30 {
        append_numbered(&store, "s", n).await;
    }
    let mut subscription = store.subscribe_all_with(17, NEVER);
    assert_eq!(subscription.position(), 17);
    let mut received = Vec::new();
    for _ in 18..=30 {
        received.push(next_within_deadline(&mut subscription).await);
    }
    assert_eq!(positions(&received), (18..=30).collect::<Vec<_>>());
    assert_eq!(subscription.position(), 30);
    let versions: Vec<u64> = received.iter().map(|e| e.version).collect();
    assert_eq!(versions, (18..=30).collect::<Vec<_>>(), "one stream, so versions follow positions");

    append_numbered(&store, "s", 31).await;
    assert_eq!(next_within_deadline(&mut subscription).await.global_position, 31, "nothing between 30 and 31");

    let mut at_head = store.subscribe_all_with(31, NEVER);
    append_numbered(&store, "t", 32).await;
    let event = next_within_deadline(&mut at_head).await;
    assert_eq!((event.global_position, event.stream_id.as_str()), (32, "t"));
}

/// Another `EventStore` on the same database (another replica) shares no
/// signal: its appends reach a waiting subscriber by polling.
async fn a_waiting_subscriber_sees_another_stores_appends_by_polling(db_a: Db, db_b: Db) {
    let (a, b) = tokio::join!(store(db_a), store(db_b));
    let mut subscription = a.subscribe_all_with(0, Duration::from_millis(50));
    // Nothing is stored yet: the subscriber is left waiting (the future is
    // cancel-safe, so abandoning it loses nothing).
    assert!(timeout(Duration::from_millis(100), subscription.next()).await.is_err(), "no event yet");

    append_numbered(&b, "elsewhere", 1).await;
    let event = next_within_deadline(&mut subscription).await;
    assert_eq!((event.global_position, event.stream_id.as_str()), (1, "elsewhere"));
}

/// A writer using `append_in` wakes subscribers with `notify_appended` after its commit.
async fn notify_appended_wakes_a_subscriber_after_append_in(store: EventStore) {
    let mut subscription = store.subscribe_all_with(0, NEVER);
    let (event, ()) = tokio::join!(next_within_deadline(&mut subscription), async {
        let mut tx = store.begin().await.expect("begin");
        store
            .append_in(&mut tx, "order-1", ExpectedVersion::NoStream, vec![NewEvent::new("placed.v1", json!({}))])
            .await
            .expect("append in transaction");
        tx.commit().await.expect("commit");
        store.notify_appended();
    });
    assert_eq!((event.global_position, event.stream_id.as_str()), (1, "order-1"));
}

/// Runs every case, each on a fresh database whose URL `$fresh_url` gives.
macro_rules! suite {
    ($fresh_url:expr) => {{
        catches_up_then_receives_live_appends_in_order(store(open(&$fresh_url).await).await).await;
        a_subscriber_from_a_position_gets_exactly_the_events_after_it(store(open(&$fresh_url).await).await).await;
        let shared = $fresh_url;
        a_waiting_subscriber_sees_another_stores_appends_by_polling(open(&shared).await, open(&shared).await).await;
        notify_appended_wakes_a_subscriber_after_append_in(store(open(&$fresh_url).await).await).await;
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    suite!({
        n += 1;
        format!("sqlite://{}/subscription-{n}.sqlite", dir.path().display())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_on_postgres() {
    let Some(pg) = testkit::postgres_or_skip().await else { return };
    let mut n = 0;
    suite!({
        n += 1;
        pg.create_database(&format!("subscription_{n}")).await.expect("database")
    });
}
