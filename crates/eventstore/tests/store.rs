//! The event store contract, run on SQLite and on a real PostgreSQL server.
//! Each case gets a fresh, migrated database.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chassis::db::Db;
use eventstore::{
    AppendError, AppendResult, BoxError, EventStore, EventStoreError, ExpectedVersion, NewEvent, Projection,
    RecordedEvent,
};
use futures_util::future::join_all;
use serde_json::json;
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, Row as _};
use time::OffsetDateTime;

static READ_MODEL: Migrator = sqlx::migrate!("./tests/migrations");

async fn store(db: Db) -> EventStore {
    eventstore::migrate(&db).await.expect("event store migrations apply");
    EventStore::new(db)
}

fn event(event_type: &str, data: serde_json::Value) -> NewEvent {
    NewEvent::new(event_type, data)
}

async fn appended_events_read_back_with_versions_and_positions(store: EventStore) {
    let first = store
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![
                event("order-placed.v1", json!({"total": 1999})).with_metadata(json!({"correlation_id": "c-1"})),
                event("items-reserved.v1", json!({"skus": ["A", "B"]})),
            ],
        )
        .await
        .expect("append to a new stream");
    assert_eq!(first, AppendResult { first_version: 1, last_version: 2, last_global_position: 2 });
    let second = store
        .append("order-1", ExpectedVersion::Exact(2), vec![event("order-approved.v1", json!({}))])
        .await
        .expect("append at the expected version");
    assert_eq!(second, AppendResult { first_version: 3, last_version: 3, last_global_position: 3 });
    let third = store
        .append("order-1", ExpectedVersion::Any, vec![event("note.v1", json!({"n": 1}))])
        .await
        .expect("append with no check");
    assert_eq!(third.last_version, 4);

    let events = store.read_stream("order-1", 1).await.expect("read");
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(events.iter().map(|e| e.global_position).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(events.iter().all(|e| e.stream_id == "order-1"));
    assert_eq!(events[0].event_type, "order-placed.v1");
    assert_eq!(events[0].data, json!({"total": 1999}));
    assert_eq!(events[0].metadata, json!({"correlation_id": "c-1"}));
    assert_eq!(events[1].metadata, json!({}), "metadata defaults to an empty object");
    assert_eq!(events[0].recorded_at, events[1].recorded_at, "one append, one instant");
    let age = OffsetDateTime::now_utc() - events[0].recorded_at;
    assert!(age >= time::Duration::ZERO && age < time::Duration::minutes(1), "recorded now, in UTC: {age}");
    assert_eq!(store.read_stream("order-1", 3).await.expect("read").len(), 2, "from_version is inclusive");
    assert!(store.read_stream("order-2", 1).await.expect("read").is_empty());
    assert_eq!(store.stream_version("order-1").await.expect("version"), 4);
    assert_eq!(store.stream_version("order-2").await.expect("version"), 0);

    let empty = store.append("order-1", ExpectedVersion::Any, vec![]).await;
    assert!(matches!(empty, Err(AppendError::NoEvents)), "{empty:?}");
    let nameless = store.append("", ExpectedVersion::Any, vec![event("x.v1", json!({}))]).await;
    assert!(matches!(nameless, Err(AppendError::EmptyStreamId)), "{nameless:?}");
    assert_eq!(store.head_position().await.expect("head"), 4);
}

async fn no_stream_on_an_existing_stream_conflicts(store: EventStore) {
    store.append("cart-1", ExpectedVersion::NoStream, vec![event("created.v1", json!({}))]).await.expect("create");
    let again =
        store.append("cart-1", ExpectedVersion::NoStream, vec![event("created.v1", json!({"again": true}))]).await;
    assert!(
        matches!(again, Err(AppendError::Conflict { expected: ExpectedVersion::NoStream, actual: 1 })),
        "{again:?}"
    );
    let events = store.read_stream("cart-1", 1).await.expect("read");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, json!({}), "the first event is not overwritten");
}

async fn a_wrong_exact_version_conflicts_and_writes_nothing(store: EventStore) {
    let two = vec![event("a.v1", json!({})), event("b.v1", json!({}))];
    store.append("s", ExpectedVersion::Exact(0), two).await.expect("append");
    for wrong in [0, 1, 3] {
        let result = store
            .append("s", ExpectedVersion::Exact(wrong), vec![event("c.v1", json!({})), event("d.v1", json!({}))])
            .await;
        assert!(
            matches!(result, Err(AppendError::Conflict { expected: ExpectedVersion::Exact(w), actual: 2 }) if w == wrong),
            "{result:?}"
        );
    }
    assert_eq!(store.read_stream("s", 1).await.expect("read").len(), 2);
    assert_eq!(store.head_position().await.expect("head"), 2, "no global position was used up");
    let next = store.append("s", ExpectedVersion::Exact(2), vec![event("c.v1", json!({}))]).await.expect("append");
    assert_eq!(next.last_global_position, 3, "positions stay gapless after conflicts");
}

/// Two handles on one database, as two replicas have; four appenders on each.
async fn of_concurrent_appenders_to_one_stream_exactly_one_wins(replica_a: Db, replica_b: Db) {
    let (a, b) = tokio::join!(store(replica_a), store(replica_b));
    // Futures joined on one task still hold eight transactions open at once on
    // the database side, which is where the race is decided.
    let appenders = (0..8).map(|writer| {
        let store = if writer % 2 == 0 { &a } else { &b };
        async move {
            let result = store
                .append(
                    "order-42",
                    ExpectedVersion::Exact(0),
                    vec![event("order-placed.v1", json!({"writer": writer}))],
                )
                .await;
            (writer, result)
        }
    });
    let outcomes = join_all(appenders).await;
    let winners: Vec<_> = outcomes.iter().filter(|(_, r)| r.is_ok()).map(|(w, _)| *w).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for (_, result) in outcomes.iter().filter(|(_, r)| r.is_err()) {
        assert!(
            matches!(result, Err(AppendError::Conflict { expected: ExpectedVersion::Exact(0), actual: 1 })),
            "{result:?}"
        );
    }
    let events = a.read_stream("order-42", 1).await.expect("read");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, json!({"writer": winners[0]}));
}

/// A reader tailing the log while four writers append must never see a
/// position before the ones below it have committed: a gap it skipped over
/// would be lost to every checkpoint-based reader.
async fn concurrent_appends_to_many_streams_commit_in_global_order(store: EventStore) {
    const WRITERS: u64 = 4;
    const APPENDS: u64 = 50;
    const TOTAL: u64 = WRITERS * APPENDS;
    let tail = async {
        let mut seen = Vec::new();
        let mut last = 0;
        while last < TOTAL {
            for e in store.read_all(last, 64).await.expect("read_all") {
                assert_eq!(e.global_position, last + 1, "positions commit in order without gaps");
                last = e.global_position;
                seen.push(e);
            }
            tokio::task::yield_now().await;
        }
        seen
    };
    let writers = join_all((0..WRITERS).map(|writer| {
        let store = &store;
        async move {
            let stream = format!("stream-{writer}");
            for version in 0..APPENDS {
                store
                    .append(&stream, ExpectedVersion::Exact(version), vec![event("tick.v1", json!({"n": version + 1}))])
                    .await
                    .expect("append");
            }
        }
    }));
    let (_, tailed) = tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(writers, tail) })
        .await
        .expect("the writers finish and the tail reaches the head");

    let all = store.read_all(0, 1_000).await.expect("read_all");
    assert_eq!(all, tailed, "the tail saw exactly what is stored");
    assert_eq!(all.iter().map(|e| e.global_position).collect::<Vec<_>>(), (1..=TOTAL).collect::<Vec<_>>());
    let unique: HashSet<(String, u64)> = all.iter().map(|e| (e.stream_id.clone(), e.version)).collect();
    assert_eq!(unique.len() as u64, TOTAL, "every event once");
    for writer in 0..WRITERS {
        let stream = format!("stream-{writer}");
        let versions: Vec<u64> = all.iter().filter(|e| e.stream_id == stream).map(|e| e.version).collect();
        assert_eq!(versions, (1..=APPENDS).collect::<Vec<_>>(), "a stream's versions follow global order");
    }
}

async fn read_all_pages_through_every_event_once(store: EventStore) {
    for n in 0..10u64 {
        let stream = format!("s-{}", n % 3);
        store.append(&stream, ExpectedVersion::Any, vec![event("e.v1", json!({"n": n}))]).await.expect("append");
    }
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 3).await.expect("page");
        let Some(last) = page.last() else { break };
        after = last.global_position;
        pages.push(page);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
    let data: Vec<u64> = pages.iter().flatten().map(|e| e.data["n"].as_u64().expect("n")).collect();
    assert_eq!(data, (0..10).collect::<Vec<_>>());
    assert!(store.read_all(10, 3).await.expect("past the head").is_empty());
    assert_eq!(
        store.read_all(4, 2).await.expect("middle").iter().map(|e| e.global_position).collect::<Vec<_>>(),
        vec![5, 6]
    );
}

fn total(events: &[RecordedEvent]) -> i64 {
    events.iter().map(|e| e.data["add"].as_i64().expect("add")).sum()
}

/// Waits (on the clock, not on other tasks) until the stored microsecond has moved past `t`.
fn after_clock_passes(t: OffsetDateTime) {
    while OffsetDateTime::now_utc() - t < Duration::from_micros(2) {
        std::hint::spin_loop();
    }
}

async fn temporal_reads_give_the_stream_as_of_a_version_or_instant(store: EventStore) {
    let mut instants = Vec::new();
    for add in [10, 5, -3] {
        if let Some(&previous) = instants.last() {
            after_clock_passes(previous);
        }
        store
            .append("account", ExpectedVersion::Any, vec![event("added.v1", json!({"add": add}))])
            .await
            .expect("append");
        let events = store.read_stream("account", 1).await.expect("read");
        instants.push(events.last().expect("appended").recorded_at);
    }
    assert_eq!(total(&store.read_stream_to_version("account", 1).await.expect("v1")), 10);
    assert_eq!(total(&store.read_stream_to_version("account", 2).await.expect("v2")), 15);
    assert_eq!(total(&store.read_stream_to_version("account", 99).await.expect("beyond")), 12);
    assert!(store.read_stream_to_version("account", 0).await.expect("v0").is_empty());

    assert_eq!(total(&store.read_stream_until("account", instants[0]).await.expect("t1")), 10);
    assert_eq!(total(&store.read_stream_until("account", instants[1]).await.expect("t2")), 15);
    let between = instants[1] + (instants[2] - instants[1]) / 2;
    assert_eq!(store.read_stream_until("account", between).await.expect("between").len(), 2);
    assert_eq!(total(&store.read_stream_until("account", instants[2]).await.expect("t3")), 12);
    let before = instants[0] - time::Duration::seconds(1);
    assert!(store.read_stream_until("account", before).await.expect("before").is_empty(), "not there yet");
    let later = OffsetDateTime::now_utc() + time::Duration::days(1);
    assert_eq!(store.read_stream_until("account", later).await.expect("later").len(), 3);
}

async fn the_latest_snapshot_wins(store: EventStore) {
    assert!(store.load_snapshot("order-1").await.expect("load").is_none());
    store.save_snapshot("order-1", 2, json!({"status": "pending"})).await.expect("save");
    store.save_snapshot("order-1", 5, json!({"status": "approved"})).await.expect("save");
    store.save_snapshot("order-1", 3, json!({"status": "reserved"})).await.expect("save an older one late");
    store.save_snapshot("order-2", 9, json!({"status": "other"})).await.expect("save");
    let latest = store.load_snapshot("order-1").await.expect("load").expect("snapshot");
    assert_eq!((latest.version, latest.state), (5, json!({"status": "approved"})));
    store.save_snapshot("order-1", 5, json!({"status": "approved", "v": 2})).await.expect("save the same version");
    let latest = store.load_snapshot("order-1").await.expect("load").expect("snapshot");
    assert_eq!(latest.state, json!({"status": "approved", "v": 2}));
}

/// Counts events per type into `type_counts`; fails on events of type `fail_on`
/// after writing its change, so a rollback is what keeps the change out.
struct CountByType {
    fail_on: Option<&'static str>,
}

impl Projection for CountByType {
    fn name(&self) -> &str {
        "type-counts"
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), BoxError> {
        sqlx::query(
            "INSERT INTO type_counts (event_type, n) VALUES ($1, 1) \
             ON CONFLICT (event_type) DO UPDATE SET n = type_counts.n + 1",
        )
        .bind(event.event_type.as_str())
        .execute(&mut *conn)
        .await?;
        if self.fail_on == Some(event.event_type.as_str()) {
            return Err(format!("cannot project {}", event.event_type).into());
        }
        Ok(())
    }

    async fn reset(&self, conn: &mut AnyConnection) -> Result<(), BoxError> {
        sqlx::query("DELETE FROM type_counts").execute(&mut *conn).await?;
        Ok(())
    }
}

async fn counts(db: &Db) -> BTreeMap<String, i64> {
    let rows = sqlx::query("SELECT event_type, n FROM type_counts").fetch_all(db.reader()).await.expect("counts");
    rows.iter().map(|r| (r.get::<String, _>("event_type"), r.get::<i64, _>("n"))).collect()
}

fn expected(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
}

async fn a_projection_sees_each_event_once_and_commits_with_its_checkpoint(db: Db) {
    let store = store(db.clone()).await;
    db.migrate(&READ_MODEL, &READ_MODEL).await.expect("the service's own migrations apply beside the store's");
    let projection = CountByType { fail_on: None };
    for n in 0..23 {
        let event_type = ["a.v1", "b.v1", "c.v1"][n % 3];
        store
            .append(&format!("s-{}", n % 4), ExpectedVersion::Any, vec![event(event_type, json!({}))])
            .await
            .expect("append");
    }
    assert_eq!(store.checkpoint(projection.name()).await.expect("checkpoint"), 0);
    let mut batches = Vec::new();
    loop {
        let applied = store.run_projection_batch(&projection, 5).await.expect("batch");
        if applied == 0 {
            break;
        }
        batches.push(applied);
    }
    assert_eq!(batches, vec![5, 5, 5, 5, 3]);
    assert_eq!(store.checkpoint(projection.name()).await.expect("checkpoint"), 23);
    assert_eq!(counts(&db).await, expected(&[("a.v1", 8), ("b.v1", 8), ("c.v1", 7)]));

    store
        .append("s-9", ExpectedVersion::Any, vec![event("a.v1", json!({})), event("boom.v1", json!({}))])
        .await
        .expect("append");
    let failing = CountByType { fail_on: Some("boom.v1") };
    let failed = store.run_projection_batch(&failing, 10).await;
    assert!(
        matches!(&failed, Err(EventStoreError::Projection { name, position: 25, .. }) if name == "type-counts"),
        "{failed:?}"
    );
    assert_eq!(
        counts(&db).await,
        expected(&[("a.v1", 8), ("b.v1", 8), ("c.v1", 7)]),
        "no read model change is visible"
    );
    assert_eq!(store.checkpoint(projection.name()).await.expect("checkpoint"), 23, "nor the checkpoint's advance");

    assert_eq!(store.catch_up(&projection, 10).await.expect("retry"), 2);
    let caught_up = expected(&[("a.v1", 9), ("b.v1", 8), ("boom.v1", 1), ("c.v1", 7)]);
    assert_eq!(counts(&db).await, caught_up);
    assert_eq!(store.run_projection_batch(&projection, 10).await.expect("idle"), 0);

    assert_eq!(store.rebuild(&projection).await.expect("rebuild"), 25);
    assert_eq!(counts(&db).await, caught_up, "a rebuild from zero gives the same read model");
    assert_eq!(store.checkpoint(projection.name()).await.expect("checkpoint"), 25);

    let failed_rebuild = store.rebuild(&failing).await;
    assert!(matches!(failed_rebuild, Err(EventStoreError::Projection { .. })), "{failed_rebuild:?}");
    assert_eq!(
        store.checkpoint(projection.name()).await.expect("checkpoint"),
        0,
        "the reset committed; the replay batch that failed did not"
    );
    assert!(counts(&db).await.is_empty());
    assert_eq!(store.catch_up(&projection, 7).await.expect("catch up after the fix"), 25);
    assert_eq!(counts(&db).await, caught_up);
}

/// Two replicas running one projection at once take turns on its checkpoint:
/// every event is still counted exactly once.
async fn replicas_running_one_projection_apply_each_event_once(replica_a: Db, replica_b: Db) {
    let (a, b) = tokio::join!(store(replica_a.clone()), store(replica_b));
    replica_a.migrate(&READ_MODEL, &READ_MODEL).await.expect("read model");
    for n in 0..40 {
        let event_type = ["a.v1", "b.v1"][n % 2];
        a.append("s", ExpectedVersion::Any, vec![event(event_type, json!({}))]).await.expect("append");
    }
    let projection = CountByType { fail_on: None };
    let (from_a, from_b) = tokio::join!(a.catch_up(&projection, 3), b.catch_up(&projection, 3));
    let (from_a, from_b) = (from_a.expect("replica a"), from_b.expect("replica b"));
    assert_eq!(from_a + from_b, 40, "{from_a} + {from_b}");
    assert_eq!(counts(&replica_a).await, expected(&[("a.v1", 20), ("b.v1", 20)]));
    assert_eq!(b.checkpoint(projection.name()).await.expect("checkpoint"), 40);
}

async fn migrating_again_changes_nothing(db: Db) {
    let store = store(db.clone()).await;
    store.append("s", ExpectedVersion::NoStream, vec![event("e.v1", json!({}))]).await.expect("append");
    eventstore::migrate(&db).await.expect("second migration");
    assert_eq!(store.read_stream("s", 1).await.expect("read").len(), 1);
}

/// Runs every case, each on a fresh database whose URL `$fresh_url` gives.
macro_rules! suite {
    ($fresh_url:expr) => {{
        appended_events_read_back_with_versions_and_positions(store(open(&$fresh_url).await).await).await;
        no_stream_on_an_existing_stream_conflicts(store(open(&$fresh_url).await).await).await;
        a_wrong_exact_version_conflicts_and_writes_nothing(store(open(&$fresh_url).await).await).await;
        let shared = $fresh_url;
        of_concurrent_appenders_to_one_stream_exactly_one_wins(open(&shared).await, open(&shared).await).await;
        concurrent_appends_to_many_streams_commit_in_global_order(store(open(&$fresh_url).await).await).await;
        read_all_pages_through_every_event_once(store(open(&$fresh_url).await).await).await;
        temporal_reads_give_the_stream_as_of_a_version_or_instant(store(open(&$fresh_url).await).await).await;
        the_latest_snapshot_wins(store(open(&$fresh_url).await).await).await;
        a_projection_sees_each_event_once_and_commits_with_its_checkpoint(open(&$fresh_url).await).await;
        let shared = $fresh_url;
        replicas_running_one_projection_apply_each_event_once(open(&shared).await, open(&shared).await).await;
        migrating_again_changes_nothing(open(&$fresh_url).await).await;
    }};
}

async fn open(url: &str) -> Db {
    Db::connect(url, 8).await.expect("database opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_store_contract_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    suite!({
        n += 1;
        format!("sqlite://{}/events-{n}.sqlite", dir.path().display())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_store_contract_on_postgres() {
    let Some(pg) = testkit::postgres_or_skip().await else { return };
    let mut n = 0;
    suite!({
        n += 1;
        pg.create_database(&format!("eventstore_{n}")).await.expect("database")
    });
}
