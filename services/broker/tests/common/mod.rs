//! What the broker's integration tests share: a broker on a real SQLite file
//! in a temp dir, served on loopback, its client, and small test messages.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use bus::{EmbeddedTransport, Envelope, Kind, Message, Subscription};
use serde::{Deserialize, Serialize};

/// A test event carrying a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    pub n: u64,
}

impl Message for Ping {
    const TYPE: &'static str = "test.ping.v1";
    const KIND: Kind = Kind::Event;
}

/// Another test event, for groups that must not see pings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    pub n: u64,
}

impl Message for Pong {
    const TYPE: &'static str = "test.pong.v1";
    const KIND: Kind = Kind::Event;
}

/// A test query and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lookup {
    pub key: String,
}

impl Message for Lookup {
    const TYPE: &'static str = "test.lookup.v1";
    const KIND: Kind = Kind::Query;
}

/// A broker serving on loopback over a log in its own temp dir.
pub struct Running {
    pub bus: EmbeddedTransport,
    pub base_url: String,
    pub http: reqwest::Client,
    pub service: testkit::RunningService,
}

/// The configuration tests use: gauges refreshed often so tests need not wait.
pub fn config() -> broker::Config {
    broker::Config { stats_interval_ms: 50, ..broker::Config::default() }
}

/// Starts a broker whose log is under `data_dir`.
pub async fn start_in(data_dir: &Path) -> Running {
    start_with(data_dir, config()).await
}

/// Starts a broker with `config` whose log is under `data_dir`.
pub async fn start_with(data_dir: &Path, config: broker::Config) -> Running {
    let service = broker::build(&config, data_dir).await.expect("the broker builds");
    let service = testkit::RunningService::start("broker", service).await;
    let base_url = service.base_url().to_owned();
    Running { bus: EmbeddedTransport::new(&base_url), base_url, http: reqwest::Client::new(), service }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Waits until a fetch of `group` is parked, waiting for messages.
    pub async fn until_parked(&self, group: &str) {
        parked(&self.http, &self.base_url, group).await;
    }
}

/// Waits until the broker at `base_url` reports a fetch of `group` parked.
pub async fn parked(http: &reqwest::Client, base_url: &str, group: &str) {
    let line = format!("broker_parked_fetches{{group=\"{group}\"}} 1");
    let parked = testkit::wait_until(Duration::from_secs(10), || async {
        let Ok(response) = http.get(format!("{base_url}/metrics")).send().await else { return false };
        response.text().await.is_ok_and(|text| text.lines().any(|l| l == line))
    })
    .await;
    assert!(parked, "no fetch of {group} parked");
}

pub fn ping(n: u64) -> Envelope {
    Envelope::new("tests", &format!("p-{n}"), &Ping { n }).expect("encodes")
}

pub fn pong(n: u64) -> Envelope {
    Envelope::new("tests", &format!("q-{n}"), &Pong { n }).expect("encodes")
}

pub fn subscription(group: &str, types: &[&str], ack_wait: Duration) -> Subscription {
    Subscription { group: group.into(), types: types.iter().map(|t| (*t).to_owned()).collect(), ack_wait }
}

/// The number a ping delivery carries.
pub fn n_of(envelope: &Envelope) -> u64 {
    envelope.decode::<Ping>().map(|p| p.n).or_else(|_| envelope.decode::<Pong>().map(|p| p.n)).expect("a test message")
}
