//! A quick tour of the JetStream transport on one real `nats-server`:
//! publish with dedupe, groups that fan out and compete, the long-polling
//! fetch, ack, nak, lease expiry, dead letters and their replay, and queries.
//! The full contract is proved for both transports by the conformance suite.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use bus::{BusError, Envelope, JetStreamOptions, JetStreamTransport, Kind, Message, Subscription};
use serde::{Deserialize, Serialize};
use testkit::Nats;

#[derive(Debug, Serialize, Deserialize)]
struct ItemAdded {
    n: u32,
}

impl Message for ItemAdded {
    const TYPE: &'static str = "smoke.item-added.v1";
    const KIND: Kind = Kind::Event;
}

#[derive(Debug, Serialize, Deserialize)]
struct PriceQuery {
    sku: String,
}

impl Message for PriceQuery {
    const TYPE: &'static str = "smoke.price.v1";
    const KIND: Kind = Kind::Query;
}

fn item(n: u32) -> Envelope {
    Envelope::new("smoke", &n.to_string(), &ItemAdded { n }).unwrap()
}

fn subscription(group: &str, ack_wait: Duration) -> Subscription {
    Subscription { group: group.into(), types: vec![ItemAdded::TYPE.into()], ack_wait }
}

async fn transport(nats: &Nats) -> JetStreamTransport {
    JetStreamTransport::connect(&[nats.url()], JetStreamOptions::default()).await.unwrap()
}

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(5);

#[tokio::test]
async fn delivers_in_publish_order_once_and_drops_a_republished_id() {
    let Some(nats) = testkit::nats_or_skip().await else { return };
    let bus = transport(&nats).await;
    let batch: Vec<Envelope> = (1..=3).map(item).collect();
    bus.publish(&batch).await.unwrap();
    // What an outbox relay does after a crash: the same batch again.
    bus.publish(&batch).await.unwrap();
    bus.subscribe(&subscription("orders", LONG)).await.unwrap();
    // Subscribing again (same or other settings) is fine.
    bus.subscribe(&subscription("orders", Duration::from_secs(30))).await.unwrap();

    let deliveries = bus.fetch("orders", 10, LONG).await.unwrap();
    let ids: Vec<_> = deliveries.iter().map(|d| d.envelope.id).collect();
    assert_eq!(ids, batch.iter().map(|e| e.id).collect::<Vec<_>>());
    assert!(deliveries.iter().all(|d| d.attempt == 1));
    bus.ack("orders", &deliveries).await.unwrap();
    assert!(bus.fetch("orders", 10, SHORT).await.unwrap().is_empty());
    // An ack that comes again (a retry after a lost confirmation) is harmless.
    bus.ack("orders", &deliveries[..1]).await.unwrap();
}

#[tokio::test]
async fn every_group_sees_every_message_and_the_members_of_a_group_share_them() {
    let Some(nats) = testkit::nats_or_skip().await else { return };
    let (member_a, member_b, other) = (transport(&nats).await, transport(&nats).await, transport(&nats).await);
    member_a.subscribe(&subscription("inventory", LONG)).await.unwrap();
    other.subscribe(&subscription("analytics", LONG)).await.unwrap();
    let batch: Vec<Envelope> = (1..=20).map(item).collect();
    member_a.publish(&batch).await.unwrap();

    let mut seen_by_inventory = Vec::new();
    let members = [&member_a, &member_b];
    for member in members.into_iter().cycle().take(40) {
        let deliveries = member.fetch("inventory", 3, SHORT).await.unwrap();
        seen_by_inventory.extend(deliveries.iter().map(|d| d.envelope.id));
        member.ack("inventory", &deliveries).await.unwrap();
        if seen_by_inventory.len() >= 20 {
            break;
        }
    }
    for member in members {
        assert!(member.fetch("inventory", 10, SHORT).await.unwrap().is_empty());
    }
    let unique: HashSet<_> = seen_by_inventory.iter().collect();
    assert_eq!(seen_by_inventory.len(), 20, "each message once within the group");
    assert_eq!(unique.len(), 20);

    let analytics = other.fetch("analytics", 100, LONG).await.unwrap();
    assert_eq!(analytics.len(), 20, "the other group gets its own copy of everything");
}

#[tokio::test]
async fn fetch_waits_for_a_message_published_during_the_wait() {
    let Some(nats) = testkit::nats_or_skip().await else { return };
    let bus = transport(&nats).await;
    bus.subscribe(&subscription("shipping", LONG)).await.unwrap();
    let started = Instant::now();
    let publisher = async {
        // Publish only once the fetch is waiting at the server.
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        let stream = js.get_stream("BAZAAR").await.unwrap();
        let waiting = testkit::wait_until(LONG, || async {
            stream.consumer_info("shipping").await.is_ok_and(|info| info.num_waiting > 0)
        })
        .await;
        assert!(waiting, "the fetch never waited at the server");
        bus.publish(&[item(1)]).await.unwrap();
    };
    let (deliveries, ()) = tokio::join!(bus.fetch("shipping", 10, LONG), publisher);
    assert_eq!(deliveries.unwrap().len(), 1);
    assert!(started.elapsed() < LONG, "fetch returned when the message came, not at the deadline");
    let started = Instant::now();
    assert!(bus.fetch("shipping", 10, SHORT).await.unwrap().is_empty());
    assert!(started.elapsed() >= SHORT - Duration::from_millis(50), "an empty fetch waits out its wait");
}

#[tokio::test]
async fn a_fetch_that_found_nothing_leaves_no_pull_request_behind_to_strand_a_message() {
    let Some(nats) = testkit::nats_or_skip().await else { return };
    let bus = transport(&nats).await;
    // A long lease: a message taken by a forgotten pull request would be out of reach for 60 s.
    bus.subscribe(&subscription("catalog", Duration::from_secs(60))).await.unwrap();
    assert!(bus.fetch("catalog", 10, SHORT).await.unwrap().is_empty());
    bus.publish(&[item(1)]).await.unwrap();
    // Waiting a little: the consumer learns of a stored message a moment after the publish ack.
    let deliveries = bus.fetch("catalog", 10, LONG).await.unwrap();
    assert_eq!(deliveries.len(), 1, "the message went to a pull request nobody reads");
}

#[tokio::test]
async fn redelivers_after_a_nak_and_after_the_lease_expires_with_the_attempt_raised() {
    let Some(nats) = testkit::nats_or_skip().await else { return };
    let bus = transport(&nats).await;
    bus.subscribe(&subscription("payments", Duration::from_secs(1))).await.unwrap();
    bus.publish(&[item(1)]).await.unwrap();

    let first = bus.fetch("payments", 1, LONG).await.unwrap().pop().unwrap();
    bus.nak("payments", &first, Duration::from_millis(200)).await.unwrap();
    let second = bus.fetch("payments", 1, LONG).await.unwrap().pop().unwrap();
    assert_eq!((second.envelope.id, second.attempt), (first.envelope.id, 2));

    // Not acked: the lease (ack_wait, 1 s) runs out and it comes back.
    let third = bus.fetch("payments", 1, LONG).await.unwrap().pop().unwrap();
    assert_eq!((third.envelope.id, third.attempt), (first.envelope.id, 3));
    bus.ack("payments", &[third]).await.unwrap();
    assert!(bus.fetch("payments", 1, Duration::from_millis(1500)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_dead_letter_is_listed_and_replayed_to_its_own_group_only() {
    let Some(nats) = testkit::nats_or_skip().await else { return };
    let bus = transport(&nats).await;
    bus.subscribe(&subscription("notifications", LONG)).await.unwrap();
    bus.subscribe(&subscription("analytics", LONG)).await.unwrap();
    let message = item(7);
    bus.publish(std::slice::from_ref(&message)).await.unwrap();
    let analytics = bus.fetch("analytics", 10, LONG).await.unwrap();
    bus.ack("analytics", &analytics).await.unwrap();

    let delivery = bus.fetch("notifications", 1, LONG).await.unwrap().pop().unwrap();
    bus.dead_letter("notifications", &delivery, "mail server said no\nat line 2").await.unwrap();
    assert!(bus.fetch("notifications", 1, SHORT).await.unwrap().is_empty(), "a dead letter is not redelivered");

    let letters = bus.dead_letters(Some("notifications"), 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!((letter.group.as_str(), letter.envelope.id, letter.attempts), ("notifications", message.id, 1));
    assert_eq!(letter.error, "mail server said no at line 2");
    assert_eq!(bus.dead_letter_by_id(&letter.id).await.unwrap(), *letter);
    assert!(bus.dead_letters(Some("analytics"), 10).await.unwrap().is_empty());
    assert_eq!(bus.dead_letters(None, 10).await.unwrap().len(), 1);

    bus.replay(&letter.id).await.unwrap();
    let replayed = bus.fetch("notifications", 10, LONG).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!((replayed[0].envelope.id, replayed[0].attempt), (message.id, 1));
    assert!(bus.fetch("analytics", 10, SHORT).await.unwrap().is_empty(), "the replay reached only its group");
    assert!(bus.dead_letters(None, 10).await.unwrap().is_empty());
    assert!(matches!(bus.dead_letter_by_id(&letter.id).await, Err(BusError::NotFound(_))));
    assert!(matches!(bus.replay("not-an-id").await, Err(BusError::NotFound(_))));

    // Dying again after the replay is a new dead letter, not a duplicate of the old one.
    bus.dead_letter("notifications", &replayed[0], "still no").await.unwrap();
    let again = bus.dead_letters(Some("notifications"), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].id, letter.id);
}

#[tokio::test]
async fn a_query_is_answered_by_one_responder_and_times_out_without_one() {
    let Some(nats) = testkit::nats_or_skip().await else { return };
    let (client, responder) = (transport(&nats).await, transport(&nats).await);
    let query = Envelope::new("web-bff", "sku-1", &PriceQuery { sku: "sku-1".into() }).unwrap();

    let no_one = client.request(&query, Duration::from_millis(200)).await;
    assert!(matches!(no_one, Err(BusError::Timeout { .. })), "{no_one:?}");

    let types = vec![PriceQuery::TYPE.to_owned()];
    // Subscribe before asking, so the query has somewhere to go.
    assert!(responder.fetch_queries(&types, 1, Duration::ZERO).await.unwrap().is_empty());
    let answer = async {
        let incoming = responder.fetch_queries(&types, 10, LONG).await.unwrap();
        assert_eq!(incoming.len(), 1);
        let reply = Envelope::new("catalog", "sku-1", &ItemAdded { n: 1999 }).unwrap().caused_by(&incoming[0].envelope);
        responder.reply(&incoming[0], &reply).await.unwrap();
    };
    let (reply, ()) = tokio::join!(client.request(&query, LONG), answer);
    let reply = reply.unwrap();
    assert_eq!(reply.causation_id, Some(query.id.to_string()));
    assert_eq!(reply.decode::<ItemAdded>().unwrap().n, 1999);
}

#[tokio::test]
async fn acknowledged_publishes_survive_a_server_crash_and_the_connection_comes_back() {
    let Some(mut nats) = testkit::nats_or_skip().await else { return };
    let bus = transport(&nats).await;
    bus.subscribe(&subscription("orders", LONG)).await.unwrap();
    let batch: Vec<Envelope> = (1..=5).map(item).collect();
    bus.publish(&batch).await.unwrap();
    nats.kill();
    nats.restart().await.unwrap();

    // Same transport: it reconnects by itself, and the stream and consumer are on disk.
    let ids = RefCell::new(Vec::new());
    let (bus_ref, ids_ref) = (&bus, &ids);
    let all_back = testkit::wait_until(Duration::from_secs(15), move || async move {
        if let Ok(deliveries) = bus_ref.fetch("orders", 10, SHORT).await {
            bus_ref.ack("orders", &deliveries).await.unwrap();
            ids_ref.borrow_mut().extend(deliveries.iter().map(|d| d.envelope.id));
        }
        ids_ref.borrow().len() >= 5
    })
    .await;
    assert!(all_back, "got {} of {} after the crash", ids.borrow().len(), batch.len());
    assert_eq!(*ids.borrow(), batch.iter().map(|e| e.id).collect::<Vec<_>>());
    assert!(bus.is_connected());

    let after = item(6);
    bus.publish(std::slice::from_ref(&after)).await.unwrap();
    let deliveries = bus.fetch("orders", 10, LONG).await.unwrap();
    assert_eq!(deliveries.iter().map(|d| d.envelope.id).collect::<Vec<_>>(), vec![after.id]);
}

#[tokio::test]
async fn fetching_an_unknown_group_or_publishing_a_wildcard_type_is_refused() {
    let Some(nats) = testkit::nats_or_skip().await else { return };
    let bus = transport(&nats).await;
    assert!(matches!(bus.fetch("nobody", 1, SHORT).await, Err(BusError::Rejected(_))));
    let mut bad = item(1);
    bad.message_type = "smoke.*.v1".into();
    assert!(matches!(bus.publish(&[bad]).await, Err(BusError::Rejected(_))));
}

#[tokio::test]
async fn an_operator_connection_uses_the_streams_and_never_makes_or_reshapes_them() {
    let Some(nats) = testkit::nats_or_skip().await else { return };
    let operator = JetStreamOptions { create_streams: false, ..JetStreamOptions::default() };
    let early = JetStreamTransport::connect(&[nats.url()], operator.clone()).await;
    assert!(matches!(early, Err(BusError::Unavailable(ref e)) if e.contains("start the services first")), "{early:?}");

    // A service makes the streams with its own settings; later connections leave them be.
    let service = JetStreamOptions { duplicate_window: Duration::from_secs(42), ..JetStreamOptions::default() };
    JetStreamTransport::connect(&[nats.url()], service).await.unwrap();
    JetStreamTransport::connect(&[nats.url()], JetStreamOptions::default()).await.unwrap();
    let tool = JetStreamTransport::connect(&[nats.url()], operator).await.unwrap();
    assert!(tool.dead_letters(None, 10).await.unwrap().is_empty());
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut stream = async_nats::jetstream::new(client).get_stream("BAZAAR").await.unwrap();
    assert_eq!(stream.info().await.unwrap().config.duplicate_window, Duration::from_secs(42));
}
