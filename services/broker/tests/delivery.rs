//! The broker's delivery guarantees, driven through its client
//! `bus::EmbeddedTransport` against a broker on a real SQLite file:
//! publish, fetch and ack; dedupe; fan-out across groups and competition
//! inside one; leases, naks, dead letters and replay; long polls; restarts;
//! and request-reply queries.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bus::{BusError, Envelope, Message as _};
use common::{Lookup, Ping, n_of, ping, pong, start_in, start_with, subscription};
use serde_json::Value;

const PING: &str = "test.ping.v1";
const PONG: &str = "test.pong.v1";
const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn publishes_fetches_in_order_and_acks() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    bus.publish(&[ping(1), ping(2), ping(3)]).await.unwrap();
    // A group created after the publish still starts from the oldest message.
    bus.subscribe(&subscription("audit", &[PING], LONG)).await.unwrap();

    let batch = bus.fetch("audit", 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(batch.iter().map(|d| n_of(&d.envelope)).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(batch.iter().all(|d| d.attempt == 1));
    assert_eq!(batch[0].envelope.decode::<Ping>().unwrap(), Ping { n: 1 });
    bus.ack("audit", &batch).await.unwrap();

    assert!(bus.fetch("audit", 10, Duration::ZERO).await.unwrap().is_empty());
    let group: Value = broker.http.get(broker.url("/v1/groups/audit")).send().await.unwrap().json().await.unwrap();
    assert_eq!(group["lag"], 0);
    assert_eq!(group["in_flight"], 0);
    assert_eq!(group["position"], 3);
}

#[tokio::test]
async fn publishing_an_envelope_id_again_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let first = ping(1);
    broker.bus.publish(&[first.clone(), first.clone()]).await.unwrap();
    broker.bus.publish(&[first.clone(), ping(2)]).await.unwrap();
    let answer: Value = broker
        .http
        .post(broker.url("/v1/publish"))
        .json(&serde_json::json!({"envelopes": [first]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["stored"], 0);
    assert_eq!(answer["duplicates"][0], first.id.to_string());

    broker.bus.subscribe(&subscription("g", &[PING], LONG)).await.unwrap();
    let batch = broker.bus.fetch("g", 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(batch.iter().map(|d| n_of(&d.envelope)).collect::<Vec<_>>(), vec![1, 2]);
}

#[tokio::test]
async fn every_group_sees_every_message_of_its_types_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("inventory", &[PING], LONG)).await.unwrap();
    bus.subscribe(&subscription("analytics", &[PING, PONG], LONG)).await.unwrap();
    bus.subscribe(&subscription("shipping", &[PONG], LONG)).await.unwrap();
    bus.publish(&[ping(1), pong(2), ping(3)]).await.unwrap();

    let numbers = |group: &'static str| async move {
        let batch = bus.fetch(group, 10, Duration::from_secs(5)).await.unwrap();
        bus.ack(group, &batch).await.unwrap();
        batch.iter().map(|d| n_of(&d.envelope)).collect::<Vec<_>>()
    };
    assert_eq!(numbers("inventory").await, vec![1, 3]);
    assert_eq!(numbers("analytics").await, vec![1, 2, 3]);
    assert_eq!(numbers("shipping").await, vec![2]);
}

#[tokio::test]
async fn competing_fetchers_in_one_group_never_hold_the_same_message_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("workers", &[PING], LONG)).await.unwrap();
    let all: Vec<Envelope> = (1..=300).map(ping).collect();
    bus.publish(&all).await.unwrap();

    // Nothing is acked, so every lease is still held when the fetchers finish.
    let fetcher = || async move {
        let mut held = Vec::new();
        loop {
            let batch = bus.fetch("workers", 7, Duration::ZERO).await.unwrap();
            if batch.is_empty() {
                return held;
            }
            held.extend(batch.into_iter().map(|d| n_of(&d.envelope)));
        }
    };
    let (a, b, c, d) = tokio::join!(fetcher(), fetcher(), fetcher(), fetcher());
    let total = a.len() + b.len() + c.len() + d.len();
    let distinct: HashSet<u64> = a.iter().chain(&b).chain(&c).chain(&d).copied().collect();
    assert_eq!(total, 300, "each message went to exactly one fetcher");
    assert_eq!(distinct.len(), 300);
}

#[tokio::test]
async fn redelivers_a_message_whose_lease_expired_with_attempt_2() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("g", &[PING], Duration::from_millis(300))).await.unwrap();
    bus.publish(&[ping(7)]).await.unwrap();
    let first = bus.fetch("g", 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(first[0].attempt, 1);
    let leased_at = Instant::now();

    assert!(bus.fetch("g", 10, Duration::ZERO).await.unwrap().is_empty(), "leased to the first fetcher");
    // The long poll wakes by itself when the lease ends.
    let again = bus.fetch("g", 10, Duration::from_secs(20)).await.unwrap();
    let waited = leased_at.elapsed();
    assert_eq!(again.len(), 1);
    assert_eq!(n_of(&again[0].envelope), 7);
    assert_eq!(again[0].attempt, 2);
    assert!(waited >= Duration::from_millis(250), "redelivered before the lease ended: {waited:?}");
    assert!(waited < Duration::from_secs(5), "the waiting fetch was not woken when the lease ended: {waited:?}");
    bus.ack("g", &again).await.unwrap();
}

#[tokio::test]
async fn a_nak_redelivers_after_its_delay_with_the_attempt_raised() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("g", &[PING], LONG)).await.unwrap();
    bus.publish(&[ping(1), ping(2)]).await.unwrap();
    let batch = bus.fetch("g", 10, Duration::from_secs(5)).await.unwrap();
    bus.ack("g", &batch[1..]).await.unwrap();
    let naked_at = Instant::now();
    bus.nak("g", &batch[0], Duration::from_millis(400)).await.unwrap();

    assert!(bus.fetch("g", 10, Duration::ZERO).await.unwrap().is_empty(), "not before its delay");
    let again = bus.fetch("g", 10, Duration::from_secs(20)).await.unwrap();
    let waited = naked_at.elapsed();
    assert_eq!(again.len(), 1);
    assert_eq!(n_of(&again[0].envelope), 1);
    assert_eq!(again[0].attempt, 2);
    assert!(waited >= Duration::from_millis(350), "redelivered before the delay: {waited:?}");
    assert!(waited < Duration::from_secs(5), "the waiting fetch was not woken after the delay: {waited:?}");

    // A nak without delay makes it deliverable at once.
    bus.nak("g", &again[0], Duration::ZERO).await.unwrap();
    let third = bus.fetch("g", 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(third[0].attempt, 3);
}

#[tokio::test]
async fn a_dead_letter_is_listed_shown_and_replayed_to_its_group_only() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("payments", &[PING], LONG)).await.unwrap();
    bus.subscribe(&subscription("analytics", &[PING], LONG)).await.unwrap();
    bus.publish(&[ping(1), ping(2)]).await.unwrap();
    let seen = bus.fetch("analytics", 10, Duration::from_secs(5)).await.unwrap();
    bus.ack("analytics", &seen).await.unwrap();

    let batch = bus.fetch("payments", 10, Duration::from_secs(5)).await.unwrap();
    bus.ack("payments", &batch[1..]).await.unwrap();
    bus.nak("payments", &batch[0], Duration::ZERO).await.unwrap();
    let retried = bus.fetch("payments", 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(retried[0].attempt, 2);
    bus.dead_letter("payments", &retried[0], "card processor said no").await.unwrap();
    assert!(bus.fetch("payments", 10, Duration::ZERO).await.unwrap().is_empty(), "a dead letter is not redelivered");

    let all = bus.dead_letters(None, 100).await.unwrap();
    assert_eq!(all.len(), 1);
    let dead = &all[0];
    assert_eq!(dead.group, "payments");
    assert_eq!(dead.error, "card processor said no");
    assert_eq!(dead.attempts, 2);
    assert_eq!(n_of(&dead.envelope), 1);
    assert_eq!(bus.dead_letters(Some("payments"), 100).await.unwrap().len(), 1);
    assert!(bus.dead_letters(Some("analytics"), 100).await.unwrap().is_empty());
    assert_eq!(bus.dead_letter_by_id(&dead.id).await.unwrap(), *dead);

    bus.replay(&dead.id).await.unwrap();
    let replayed = bus.fetch("payments", 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(n_of(&replayed[0].envelope), 1);
    assert_eq!(replayed[0].attempt, 1, "a replay is a fresh first attempt");
    assert!(bus.fetch("analytics", 10, Duration::ZERO).await.unwrap().is_empty(), "only the group it died in");
    assert!(bus.dead_letters(None, 100).await.unwrap().is_empty(), "a replayed dead letter leaves the queue");
    assert!(matches!(bus.dead_letter_by_id(&dead.id).await, Err(BusError::NotFound(_))));
    assert!(matches!(bus.replay(&dead.id).await, Err(BusError::NotFound(_))));
}

#[tokio::test]
async fn dead_letters_are_listed_oldest_first_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("g", &[PING], LONG)).await.unwrap();
    bus.publish(&(1..=5).map(ping).collect::<Vec<_>>()).await.unwrap();
    let batch = bus.fetch("g", 10, Duration::from_secs(5)).await.unwrap();
    for delivery in batch.iter().rev() {
        bus.dead_letter("g", delivery, "no").await.unwrap();
    }
    let listed = bus.dead_letters(Some("g"), 3).await.unwrap();
    assert_eq!(listed.iter().map(|d| n_of(&d.envelope)).collect::<Vec<_>>(), vec![5, 4, 3]);
    // Dead-lettering a delivery that is no longer pending changes nothing.
    bus.dead_letter("g", &batch[0], "again").await.unwrap();
    assert_eq!(bus.dead_letters(None, 100).await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_waiting_fetch_returns_as_soon_as_a_matching_message_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("g", &[PING], LONG)).await.unwrap();
    let wait = Duration::from_secs(20);
    let fetch = async {
        let batch = bus.fetch("g", 10, wait).await.unwrap();
        (batch, Instant::now())
    };
    let publish = async {
        // The fetch parks first; what is measured is how soon it returns after the publish.
        broker.until_parked("g").await;
        bus.publish(&[pong(1)]).await.unwrap();
        bus.publish(&[ping(2)]).await.unwrap();
        Instant::now()
    };
    let ((batch, fetched_at), published_at) = tokio::join!(fetch, publish);
    assert_eq!(batch.iter().map(|d| n_of(&d.envelope)).collect::<Vec<_>>(), vec![2]);
    let latency = fetched_at.saturating_duration_since(published_at);
    assert!(latency < Duration::from_secs(1), "the fetch returned {latency:?} after the publish");
}

#[tokio::test]
async fn after_a_restart_unacked_deliveries_come_back_and_acked_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let before = start_in(dir.path()).await;
    before.bus.subscribe(&subscription("g", &[PING], Duration::from_millis(300))).await.unwrap();
    let published: Vec<Envelope> = (1..=4).map(ping).collect();
    before.bus.publish(&published).await.unwrap();
    let batch = before.bus.fetch("g", 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(batch.len(), 4);
    before.bus.ack("g", &batch[..2]).await.unwrap();
    drop(before);

    let after = start_in(dir.path()).await;
    let mut redelivered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while redelivered.len() < 2 && Instant::now() < deadline {
        redelivered.extend(after.bus.fetch("g", 10, Duration::from_secs(2)).await.unwrap());
    }
    assert_eq!(redelivered.iter().map(|d| n_of(&d.envelope)).collect::<Vec<_>>(), vec![3, 4]);
    assert!(redelivered.iter().all(|d| d.attempt == 2));
    after.bus.ack("g", &redelivered).await.unwrap();
    assert!(after.bus.fetch("g", 10, Duration::from_millis(500)).await.unwrap().is_empty());
    // The dedupe survives the restart too.
    after.bus.publish(&published).await.unwrap();
    assert!(after.bus.fetch("g", 10, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_query_is_answered_by_one_responder_and_times_out_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    let query = Envelope::new("orders", "k-1", &Lookup { key: "k-1".into() }).unwrap();
    let types = vec![Lookup::TYPE.to_owned()];
    let responder = async {
        let incoming = bus.fetch_queries(&types, 10, Duration::from_secs(10)).await.unwrap();
        assert_eq!(incoming.len(), 1);
        let asked: Lookup = incoming[0].envelope.decode().unwrap();
        let reply = Envelope::new("catalog", "k-1", &Lookup { key: format!("{}!", asked.key) })
            .unwrap()
            .caused_by(&incoming[0].envelope);
        bus.reply(&incoming[0], &reply).await.unwrap();
        assert!(bus.fetch_queries(&types, 10, Duration::ZERO).await.unwrap().is_empty(), "one responder per query");
    };
    let (answer, ()) = tokio::join!(bus.request(&query, Duration::from_secs(10)), responder);
    let answer = answer.unwrap();
    assert_eq!(answer.decode::<Lookup>().unwrap().key, "k-1!");
    assert_eq!(answer.causation_id, Some(query.id.to_string()));

    let unanswered = bus.request(&query, Duration::from_millis(200)).await;
    assert!(
        matches!(&unanswered, Err(BusError::Timeout { message_type, timeout_ms: 200 }) if message_type == Lookup::TYPE),
        "{unanswered:?}"
    );
}

#[tokio::test]
async fn unknown_groups_and_dead_letters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path()).await;
    let bus = &broker.bus;
    assert!(matches!(bus.fetch("nobody", 10, Duration::ZERO).await, Err(BusError::Rejected(_))));
    assert!(matches!(bus.dead_letters(Some("nobody"), 10).await, Err(BusError::Rejected(_))));
    assert!(matches!(bus.dead_letter_by_id("nope").await, Err(BusError::NotFound(_))));
    assert!(matches!(bus.replay("nope").await, Err(BusError::NotFound(_))));
    let bad = bus.subscribe(&subscription("bad name", &[PING], LONG)).await;
    assert!(matches!(&bad, Err(BusError::Rejected(detail)) if detail.contains("group")), "{bad:?}");
}

#[tokio::test]
async fn messages_past_the_retention_expire_unless_a_group_still_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_with(dir.path(), broker::Config { retention_secs: 3, ..common::config() }).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("holder", &[PING], LONG)).await.unwrap();
    bus.publish(&[ping(1), ping(2), ping(3)]).await.unwrap();
    bus.publish(&[pong(4)]).await.unwrap();
    // The group acks 1, keeps 2 in flight and dead-letters 3; 4 (a pong) no
    // group wants, but it is the newest message, which always stays.
    let batch = bus.fetch("holder", 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(batch.iter().map(|d| n_of(&d.envelope)).collect::<Vec<_>>(), vec![1, 2, 3]);
    bus.ack("holder", &batch[..1]).await.unwrap();
    bus.dead_letter("holder", &batch[2], "refused").await.unwrap();

    // Once the retention has passed, only the acked ping expires.
    let expired = testkit::wait_until(Duration::from_secs(15), || async {
        let metrics = broker.http.get(broker.url("/metrics")).send().await.unwrap().text().await.unwrap();
        metrics.lines().any(|line| line.starts_with("broker_messages_expired_total") && line.ends_with(" 1"))
    })
    .await;
    assert!(expired, "the acked ping should have expired");
    bus.subscribe(&subscription("late", &[PING, PONG], LONG)).await.unwrap();
    let late = bus.fetch("late", 10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(late.iter().map(|d| n_of(&d.envelope)).collect::<Vec<_>>(), vec![2, 3, 4]);
    // What the holder held survived: it can still ack the one in flight and replay the dead letter.
    bus.ack("holder", &batch[1..2]).await.unwrap();
    let dead = bus.dead_letters(Some("holder"), 10).await.unwrap();
    bus.replay(&dead[0].id).await.unwrap();
    let replayed = bus.fetch("holder", 10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(replayed.iter().map(|d| n_of(&d.envelope)).collect::<Vec<_>>(), vec![3]);
}

#[tokio::test]
async fn a_group_caught_up_when_everything_expired_still_gets_the_next_message() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_with(dir.path(), broker::Config { retention_secs: 2, ..common::config() }).await;
    let bus = &broker.bus;
    bus.subscribe(&subscription("caught-up", &[PING], LONG)).await.unwrap();
    bus.publish(&[ping(1), ping(2)]).await.unwrap();
    let batch = bus.fetch("caught-up", 10, Duration::from_secs(5)).await.unwrap();
    bus.ack("caught-up", &batch).await.unwrap();
    // Everything old enough expires except the newest message, whose number
    // must not be handed to the next publish.
    let expired = testkit::wait_until(Duration::from_secs(10), || async {
        let metrics = broker.http.get(broker.url("/metrics")).send().await.unwrap().text().await.unwrap();
        metrics.lines().any(|line| line.starts_with("broker_messages_expired_total") && line.ends_with(" 1"))
    })
    .await;
    assert!(expired, "the older message should have expired");
    bus.publish(&[ping(3)]).await.unwrap();
    let next = bus.fetch("caught-up", 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(next.iter().map(|d| n_of(&d.envelope)).collect::<Vec<_>>(), vec![3]);
}
