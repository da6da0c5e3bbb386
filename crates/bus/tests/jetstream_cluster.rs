//! JetStream failover: a three-node cluster on loopback, the bus streams at
//! R3, a consumer group working through a steady stream of messages while the
//! stream leader is killed (SIGKILL) and later restarted. Publishing and
//! consuming carry on through the other two nodes, and every published
//! message is consumed.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::HashSet;
use std::time::Duration;

use bus::{Envelope, JetStreamOptions, JetStreamTransport, Kind, Message, Subscription};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize, Deserialize)]
struct WorkItem {
    n: usize,
}

impl Message for WorkItem {
    const TYPE: &'static str = "cluster.work-item.v1";
    const KIND: Kind = Kind::Event;
}

const GROUP: &str = "workers";
const MESSAGES: usize = 600;
const BATCH: usize = 5;
/// The pace of the publisher: one batch per tick, so the kill lands mid-stream.
const TICK: Duration = Duration::from_millis(25);
/// Kill the leader once this many messages were consumed, restart it once this many were.
const KILL_AT: usize = 150;
const RESTART_AT: usize = 350;
/// Back-off after a failed bus call while the cluster fails over.
const RETRY: Duration = Duration::from_millis(100);

/// What the publisher, the consumer and the chaos share (all on this test's task).
#[derive(Default)]
struct Progress {
    published: HashSet<Uuid>,
    publishing_done: bool,
    consumed: HashSet<Uuid>,
    deliveries: usize,
    publish_failures: usize,
    fetch_failures: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_every_message_while_the_stream_leader_is_killed_and_restarted() {
    let Some(mut cluster) = testkit::nats_cluster_or_skip(3).await else { return };
    let urls = cluster.urls();
    let options = JetStreamOptions { replicas: 3, request_timeout: Duration::from_secs(2), ..Default::default() };
    let publisher_bus = JetStreamTransport::connect(&urls, options.clone()).await.unwrap();
    let consumer_bus = JetStreamTransport::connect(&urls, options).await.unwrap();
    let subscription =
        Subscription { group: GROUP.into(), types: vec![WorkItem::TYPE.into()], ack_wait: Duration::from_secs(5) };
    consumer_bus.subscribe(&subscription).await.unwrap();
    let admin = async_nats::jetstream::new(async_nats::connect(urls.as_slice()).await.unwrap());
    let progress = RefCell::new(Progress::default());

    let publish = async {
        let mut tick = tokio::time::interval(TICK);
        for start in (0..MESSAGES).step_by(BATCH) {
            tick.tick().await;
            let batch: Vec<Envelope> = (start..start + BATCH)
                .map(|n| Envelope::new("cluster-test", &n.to_string(), &WorkItem { n }).unwrap())
                .collect();
            // As the outbox relay does: the same batch again until it is stored; dedupe absorbs repeats.
            while publisher_bus.publish(&batch).await.is_err() {
                progress.borrow_mut().publish_failures += 1;
                tokio::time::sleep(RETRY).await;
            }
            progress.borrow_mut().published.extend(batch.iter().map(|e| e.id));
        }
        progress.borrow_mut().publishing_done = true;
    };

    let consume = async {
        loop {
            {
                let p = progress.borrow();
                if p.publishing_done && p.published.is_subset(&p.consumed) {
                    return;
                }
            }
            match consumer_bus.fetch(GROUP, 50, Duration::from_millis(500)).await {
                Ok(deliveries) => {
                    {
                        let mut p = progress.borrow_mut();
                        p.deliveries += deliveries.len();
                        p.consumed.extend(deliveries.iter().map(|d| d.envelope.id));
                    }
                    // A lost ack only means a redelivery, which the set of consumed ids absorbs.
                    let _ = consumer_bus.ack(GROUP, &deliveries).await;
                }
                Err(_) => {
                    progress.borrow_mut().fetch_failures += 1;
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    };

    let chaos = async {
        let consumed = |n: usize| {
            let progress = &progress;
            move || async move { progress.borrow().consumed.len() >= n }
        };
        assert!(testkit::wait_until(Duration::from_secs(60), consumed(KILL_AT)).await, "no progress before the kill");
        let stream = admin.get_stream("BAZAAR").await.unwrap();
        let leader = stream.cached_info().cluster.as_ref().and_then(|c| c.leader.clone()).unwrap();
        let consumer_leader = stream.consumer_info(GROUP).await.unwrap().cluster.and_then(|c| c.leader);
        let victim = cluster.index_of(&leader).unwrap();
        eprintln!("killing {leader}, the stream leader (the consumer leader is {consumer_leader:?})");
        cluster.kill(victim);
        assert!(
            testkit::wait_until(Duration::from_secs(60), consumed(RESTART_AT)).await,
            "consuming stopped after {leader} was killed"
        );
        cluster.restart(victim).await.unwrap();
        leader
    };

    let run = async { tokio::join!(publish, consume, chaos) };
    let ((), (), killed) = tokio::time::timeout(Duration::from_secs(180), run).await.expect("the run did not finish");

    let p = progress.into_inner();
    eprintln!(
        "published {} (failed attempts {}), consumed {} in {} deliveries (failed fetches {})",
        p.published.len(),
        p.publish_failures,
        p.consumed.len(),
        p.deliveries,
        p.fetch_failures
    );
    assert_eq!(p.published.len(), MESSAGES);
    assert!(p.published.is_subset(&p.consumed), "some published messages were never consumed");

    // The restarted node catches up and serves as a replica again, and dedupe
    // kept the republished batches from being stored twice.
    let caught_up = testkit::wait_until(Duration::from_secs(30), || async {
        let Ok(info) = admin.get_stream("BAZAAR").await.map(|s| s.cached_info().clone()) else { return false };
        let Some(cluster_info) = info.cluster else { return false };
        let killed_is_current = cluster_info.leader.as_deref() == Some(killed.as_str())
            || cluster_info.replicas.iter().any(|r| r.name == killed && r.current);
        killed_is_current && info.state.messages == MESSAGES as u64
    })
    .await;
    assert!(caught_up, "{killed} did not catch up, or the stream holds a duplicate");
}
