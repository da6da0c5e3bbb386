//! Durability: a broker process killed with SIGKILL in the middle of a
//! publishing burst, then restarted on the same log, has lost nothing it
//! acknowledged (every publish that returned `Ok` is there), and keeps the
//! delivery state it acknowledged: acked messages stay acked, leased ones come
//! back once their lease ends.
//!
//! The broker runs in a child process: this test binary started again with
//! only `broker_child_process` selected, which serves a broker and prints its
//! address.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bus::{EmbeddedTransport, Envelope};
use common::{n_of, ping, start_in, subscription};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// Set in the child's environment: the data dir it serves.
const CHILD_DIR: &str = "BROKER_CRASH_CHILD_DIR";
const PING: &str = "test.ping.v1";

/// The child: serves a broker on the data dir it is given until it is killed.
#[tokio::test]
#[ignore = "the broker process that a_killed_broker_loses_nothing_it_acknowledged starts and kills"]
async fn broker_child_process() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let service = broker::build(&common::config(), Path::new(&dir)).await.unwrap();
    let running = testkit::RunningService::start("broker", service).await;
    println!("LISTENING {}", running.base_url());
    std::future::pending::<()>().await;
}

async fn start_child(dir: &Path) -> (tokio::process::Child, String) {
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new(exe)
        .args(["--exact", "broker_child_process", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base_url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // libtest prints "test <name> ... " before the test's own output, on the same line.
            if let Some((_, url)) = line.split_once("LISTENING ") {
                return url.trim().to_owned();
            }
        }
        panic!("the broker child ended without listening");
    })
    .await
    .expect("the broker child listens within a minute");
    (child, base_url)
}

#[tokio::test]
async fn a_killed_broker_loses_nothing_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base_url) = start_child(dir.path()).await;
    let bus = EmbeddedTransport::new(&base_url);
    bus.subscribe(&subscription("g", &[PING], Duration::from_millis(500))).await.unwrap();

    let first: Vec<Envelope> = (1..=100).map(ping).collect();
    bus.publish(&first).await.unwrap();
    let leased = bus.fetch("g", 100, Duration::from_secs(5)).await.unwrap();
    assert_eq!(leased.len(), 100);
    bus.ack("g", &leased[..50]).await.unwrap();
    let acked: HashSet<u64> = leased[..50].iter().map(|d| n_of(&d.envelope)).collect();
    let in_flight: HashSet<u64> = leased[50..].iter().map(|d| n_of(&d.envelope)).collect();

    // Publishers keep going until the broker dies under them; each remembers what it was told was stored.
    let confirmed = Mutex::new(HashSet::<u64>::new());
    let batches = AtomicUsize::new(0);
    let publisher = |from: u64| {
        let (bus, confirmed, batches) = (&bus, &confirmed, &batches);
        async move {
            let mut n = from;
            loop {
                let batch: Vec<Envelope> = (n..n + 10).map(ping).collect();
                if bus.publish(&batch).await.is_err() {
                    return;
                }
                confirmed.lock().unwrap().extend(n..n + 10);
                batches.fetch_add(1, Ordering::SeqCst);
                n += 10;
            }
        }
    };
    let killer = async {
        let busy =
            testkit::wait_until(Duration::from_secs(60), || async { batches.load(Ordering::SeqCst) >= 60 }).await;
        assert!(busy, "the publishers did not get going");
        child.start_kill().unwrap();
        child.wait().await.unwrap()
    };
    let ((), (), (), status) = tokio::join!(publisher(1_000_000), publisher(2_000_000), publisher(3_000_000), killer);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the broker was killed, not stopped: {status:?}");
    let confirmed = confirmed.into_inner().unwrap();
    assert!(confirmed.len() >= 600);

    let after = start_in(dir.path()).await;
    // A new group starts from the oldest message, so it sees the whole log.
    after.bus.subscribe(&subscription("audit", &[PING], Duration::from_secs(60))).await.unwrap();
    let mut stored = HashSet::new();
    loop {
        let batch = after.bus.fetch("audit", 1_000, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            break;
        }
        stored.extend(batch.iter().map(|d| n_of(&d.envelope)));
    }
    let lost: Vec<&u64> = confirmed.iter().chain(&acked).chain(&in_flight).filter(|n| !stored.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );

    // The old group: acked ones never come back, leased ones return as second attempts once their lease ends.
    let expected = stored.len() - acked.len();
    let mut deliveries = 0;
    let mut redelivered: HashMap<u64, u32> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while redelivered.len() < expected && tokio::time::Instant::now() < deadline {
        for delivery in after.bus.fetch("g", 1_000, Duration::from_millis(500)).await.unwrap() {
            deliveries += 1;
            redelivered.insert(n_of(&delivery.envelope), delivery.attempt);
        }
    }
    assert_eq!(redelivered.len(), expected, "every message not acked is delivered after the restart");
    assert_eq!(deliveries, expected, "no message delivered twice to the group while leased");
    assert!(acked.iter().all(|n| !redelivered.contains_key(n)), "an acked message came back");
    assert!(in_flight.iter().all(|n| redelivered.get(n) == Some(&2)), "leased messages come back as attempt 2");
    assert!(confirmed.iter().all(|n| redelivered.get(n) == Some(&1)));
}
