//! The broker's operations, as the HTTP handlers call them: publish,
//! subscribe, long-poll fetch, ack, nak, dead letters, replay, group
//! statistics and queries. Writes go to the [`Writer`]; reads that write
//! nothing use the reader pool.
//!
//! A fetch that finds nothing waits on its group's wake-up: a committed
//! publish of one of the group's types, a nak or a replay wakes every waiting
//! fetcher of the group at once, and a waiting fetcher also wakes by itself
//! when the earliest lease or nak delay of its group runs out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use chassis::db::Db;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::log::{self, DeadLetterRow, Delivered, GroupRow, GroupStats, ReplayedRow};
use crate::metrics as m;
use crate::model::{CheckedEnvelope, GroupName, now_ms};
use crate::queries::{Incoming, Queries};
use crate::writer::{Request, Response, WriteError, Writer};

/// A consumer group as the broker holds it in memory.
#[derive(Debug)]
pub(crate) struct Group {
    /// The group as stored.
    pub row: GroupRow,
    /// Wakes the group's waiting fetchers. Kept across updates of the group.
    pub wake: Arc<Notify>,
}

/// Every consumer group by name: the writer keeps it in step with the log
/// after each commit, handlers read it to resolve names.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    by_name: RwLock<HashMap<String, Arc<Group>>>,
}

impl Groups {
    /// The group called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Group>> {
        self.by_name.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Every group, by name.
    pub(crate) fn all(&self) -> Vec<Arc<Group>> {
        let mut all: Vec<_> = self.by_name.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        all.sort_by(|a, b| a.row.name.cmp(&b.row.name));
        all
    }

    /// Adds or replaces a group, keeping its waiting fetchers.
    pub(crate) fn put(&self, row: GroupRow) {
        let mut by_name = self.by_name.write().unwrap_or_else(PoisonError::into_inner);
        let wake = by_name.get(&row.name).map_or_else(Arc::default, |g| g.wake.clone());
        by_name.insert(row.name.clone(), Arc::new(Group { row, wake }));
    }

    /// Wakes the fetchers of every group consuming one of `types`.
    pub(crate) fn wake_for_types<'a>(&self, types: impl Iterator<Item = &'a str>) {
        let mut types: Vec<&str> = types.collect();
        if types.is_empty() {
            return;
        }
        types.sort_unstable();
        types.dedup();
        for group in self.by_name.read().unwrap_or_else(PoisonError::into_inner).values() {
            if group.row.types.iter().any(|t| types.binary_search(&t.as_str()).is_ok()) {
                group.wake.notify_waiters();
            }
        }
    }

    /// Wakes the fetchers of group `name`.
    pub(crate) fn wake(&self, name: &str) {
        if let Some(group) = self.get(name) {
            group.wake.notify_waiters();
        }
    }
}

/// Why a broker operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No consumer group has this name.
    #[error("no consumer group {0}")]
    UnknownGroup(String),
    /// No dead letter has this id.
    #[error("no dead letter {0}")]
    UnknownDeadLetter(String),
    /// Nothing answered the query before its deadline.
    #[error("no reply to {message_type} within {timeout_ms} ms")]
    QueryTimeout {
        /// The query's type.
        message_type: String,
        /// The deadline that passed.
        timeout_ms: u64,
    },
    /// The log could not be written (or the broker is stopping).
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The log could not be read.
    #[error("the log could not be read")]
    Read(#[from] sqlx::Error),
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// How many envelopes were stored.
    pub stored: usize,
    /// The ids of envelopes already stored (by an earlier publish or earlier in
    /// this batch), skipped.
    pub duplicates: Vec<String>,
}

/// A consumer group with its backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// The message types it consumes.
    pub types: Vec<String>,
    /// How long a delivery is leased, in milliseconds.
    pub ack_wait_ms: i64,
    /// Its backlog.
    pub stats: GroupStatsView,
}

/// A group's backlog, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStatsView {
    /// The highest seq of its types handed to it.
    pub position: i64,
    /// Messages of its types it has not acked.
    pub lag: i64,
    /// Messages delivered and not yet acked or dead-lettered.
    pub in_flight: i64,
    /// Its dead letters.
    pub dead_letters: i64,
}

impl From<GroupStats> for GroupStatsView {
    fn from(stats: GroupStats) -> Self {
        Self {
            position: stats.position,
            lag: stats.lag(),
            in_flight: stats.in_flight,
            dead_letters: stats.dead_letters,
        }
    }
}

struct Inner {
    db: Db,
    groups: Arc<Groups>,
    writer: Writer,
    queries: Queries,
    /// Set when the process stops: long polls answer at once instead of holding up the drain.
    closing: AtomicBool,
    /// The exclusive lock on the log, held for as long as the broker lives.
    _owner: crate::ownership::Ownership,
}

/// The broker: the log, its groups and the queries in flight. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

impl Broker {
    /// Opens the broker on a migrated log: loads the groups, starts the writer
    /// (batches of up to `max_batch_ops`), a task refreshing the group gauges
    /// every `stats_interval`, and one expiring messages older than `retention`.
    pub(crate) async fn open(
        db: Db,
        owner: crate::ownership::Ownership,
        max_batch_ops: usize,
        stats_interval: Duration,
        retention: Duration,
    ) -> Result<Self, sqlx::Error> {
        let groups = Arc::new(Groups::default());
        for row in log::groups(db.reader()).await? {
            groups.put(row);
        }
        let writer = Writer::start(db.clone(), groups.clone(), max_batch_ops);
        let broker = Self {
            inner: Arc::new(Inner {
                db,
                groups,
                writer,
                queries: Queries::default(),
                closing: AtomicBool::new(false),
                _owner: owner,
            }),
        };
        chassis::task::spawn("broker-stats", refresh_stats(Arc::downgrade(&broker.inner), stats_interval));
        chassis::task::spawn("broker-retention", expire_old(Arc::downgrade(&broker.inner), retention));
        Ok(broker)
    }

    /// Whether the writer is running (the readiness check).
    pub fn is_writing(&self) -> bool {
        self.inner.writer.is_running()
    }

    /// Ends every long poll now and makes later ones return without waiting,
    /// so a stopping process drains in-flight requests at once.
    pub fn stop_waiting(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        for group in self.inner.groups.all() {
            group.wake.notify_waiters();
        }
        self.inner.queries.close();
    }

    fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::SeqCst)
    }

    async fn write(&self, request: Request) -> Result<Response, BrokerError> {
        Ok(self.inner.writer.call(request).await?)
    }

    fn group(&self, name: &str) -> Result<Arc<Group>, BrokerError> {
        self.inner.groups.get(name).ok_or_else(|| BrokerError::UnknownGroup(name.to_owned()))
    }

    /// Stores `envelopes` in order, skipping ids already stored; answers once committed.
    pub async fn publish(&self, envelopes: &[CheckedEnvelope]) -> Result<Published, BrokerError> {
        let mut array = String::with_capacity(envelopes.iter().map(|e| e.json.len() + 1).sum::<usize>() + 2);
        array.push('[');
        for (i, envelope) in envelopes.iter().enumerate() {
            if i > 0 {
                array.push(',');
            }
            array.push_str(&envelope.json);
        }
        array.push(']');
        let Response::Published(stored) =
            self.write(Request::Publish { envelopes: array, count: envelopes.len() }).await?
        else {
            return Err(WriteError::Failed.into());
        };
        let mut fresh: std::collections::HashSet<String> = stored.into_iter().map(|s| s.id).collect();
        let mut duplicates = Vec::new();
        for envelope in envelopes {
            let id = envelope.id.hyphenated().to_string();
            // The first occurrence of a fresh id was stored; any other is a duplicate.
            if !fresh.remove(&id) {
                duplicates.push(id);
            }
        }
        metrics::counter!(m::DUPLICATES).increment(duplicates.len() as u64);
        Ok(Published { stored: envelopes.len() - duplicates.len(), duplicates })
    }

    /// Creates group `name` (starting at the oldest stored message) or updates
    /// its types and lease; returns it and whether it was created. Types added
    /// to an existing group apply from its current position on.
    pub async fn subscribe(
        &self,
        name: &GroupName,
        types: Vec<String>,
        ack_wait_ms: i64,
    ) -> Result<(GroupInfo, bool), BrokerError> {
        let request = Request::Subscribe { name: name.as_str().to_owned(), types, ack_wait_ms };
        let Response::Subscribed(row, created) = self.write(request).await? else {
            return Err(WriteError::Failed.into());
        };
        let stats = log::group_stats(self.inner.db.reader(), &row).await?;
        Ok((info(&row, stats), created))
    }

    /// Up to `max` deliveries for a member of group `name`, waiting up to
    /// `wait` for the first. Each is leased to this caller for the group's ack wait.
    pub async fn fetch(&self, name: &str, max: usize, wait: Duration) -> Result<Vec<Delivered>, BrokerError> {
        let deadline = Instant::now() + wait;
        loop {
            // Looked up again on each round: a subscribe may have changed the group's types.
            let group = self.group(name)?;
            let wake = group.wake.clone();
            let notified = wake.notified();
            tokio::pin!(notified);
            // Registered before the fetch, so a publish committed while it runs still wakes this wait.
            notified.as_mut().enable();
            let Response::Leased(leased) = self.write(Request::Lease { group, max }).await? else {
                return Err(WriteError::Failed.into());
            };
            let now = Instant::now();
            if !leased.deliveries.is_empty() || now >= deadline || self.is_closing() {
                return Ok(leased.deliveries);
            }
            let wake_at = match leased.next_due {
                // One millisecond late, so the due row is past `visible_at <= now` when fetched.
                Some(due) => deadline.min(now + Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0) + 1)),
                None => deadline,
            };
            let _parked = Parked::new(name);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    /// Ends the deliveries `seqs` of group `name`; returns how many were pending.
    pub async fn ack(&self, name: &str, seqs: Vec<i64>) -> Result<u64, BrokerError> {
        let group = self.group(name)?;
        match self.write(Request::Ack { group, seqs }).await? {
            Response::Acked(n) => Ok(n),
            _ => Err(WriteError::Failed.into()),
        }
    }

    /// Hands the deliveries `seqs` of group `name` back, deliverable again
    /// after `delay_ms` with their attempt raised; returns how many were pending.
    pub async fn nak(&self, name: &str, seqs: Vec<i64>, delay_ms: i64) -> Result<u64, BrokerError> {
        let group = self.group(name)?;
        match self.write(Request::Nak { group, seqs, delay_ms }).await? {
            Response::Naked(n) => Ok(n),
            _ => Err(WriteError::Failed.into()),
        }
    }

    /// Moves delivery `seq` of group `name` to the dead-letter queue; returns
    /// the dead letter's id, `None` when the delivery was no longer pending.
    pub async fn dead_letter(&self, name: &str, seq: i64, error: String) -> Result<Option<String>, BrokerError> {
        let group = self.group(name)?;
        match self.write(Request::DeadLetter { group, seq, error }).await? {
            Response::DeadLettered(id) => Ok(id),
            _ => Err(WriteError::Failed.into()),
        }
    }

    /// Dead letters, oldest first, of group `name` or of all groups.
    pub async fn dead_letters(&self, name: Option<&str>, limit: usize) -> Result<Vec<DeadLetterRow>, BrokerError> {
        let group_id = name.map(|n| self.group(n)).transpose()?.map(|g| g.row.id);
        Ok(log::dead_letters(self.inner.db.reader(), group_id, limit).await?)
    }

    /// One dead letter.
    pub async fn dead_letter_by_id(&self, id: &str) -> Result<DeadLetterRow, BrokerError> {
        log::dead_letter_by_id(self.inner.db.reader(), id)
            .await?
            .ok_or_else(|| BrokerError::UnknownDeadLetter(id.to_owned()))
    }

    /// Hands dead letter `id` back to its group (only that group) as a fresh
    /// first attempt, and deletes it.
    pub async fn replay(&self, id: &str) -> Result<ReplayedRow, BrokerError> {
        match self.write(Request::Replay { id: id.to_owned() }).await? {
            Response::Replayed(Some(replayed)) => Ok(replayed),
            Response::Replayed(None) => Err(BrokerError::UnknownDeadLetter(id.to_owned())),
            _ => Err(WriteError::Failed.into()),
        }
    }

    /// Group `name` with its backlog.
    pub async fn group_info(&self, name: &str) -> Result<GroupInfo, BrokerError> {
        let group = self.group(name)?;
        let stats = log::group_stats(self.inner.db.reader(), &group.row).await?;
        Ok(info(&group.row, stats))
    }

    /// Every group with its backlog, by name.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, BrokerError> {
        let mut out = Vec::new();
        for group in self.inner.groups.all() {
            let stats = log::group_stats(self.inner.db.reader(), &group.row).await?;
            out.push(info(&group.row, stats));
        }
        Ok(out)
    }

    /// Sends a query and waits up to `timeout` for its reply (JSON text).
    pub async fn request(&self, query: &CheckedEnvelope, timeout: Duration) -> Result<String, BrokerError> {
        let answer = self.inner.queries.request(&query.message_type, query.json.clone(), timeout).await;
        let outcome = if answer.is_some() { "answered" } else { "timed_out" };
        metrics::counter!(m::QUERIES, "outcome" => outcome).increment(1);
        answer.ok_or_else(|| BrokerError::QueryTimeout {
            message_type: query.message_type.clone(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Up to `max` queries of `types` for one responder, waiting up to `wait` for the first.
    pub async fn take_queries(&self, types: &[String], max: usize, wait: Duration) -> Vec<Incoming> {
        self.inner.queries.take(types, max, wait).await
    }

    /// Answers the query waiting at `reply_to`; false when its requester stopped waiting.
    pub fn reply(&self, reply_to: &str, reply: &CheckedEnvelope) -> bool {
        self.inner.queries.reply(reply_to, reply.json.clone())
    }
}

/// A fetch waiting for messages, counted in the parked-fetches gauge for as
/// long as it waits (also when the client hangs up and the wait is dropped).
struct Parked(String);

impl Parked {
    fn new(group: &str) -> Self {
        metrics::gauge!(m::PARKED_FETCHES, "group" => group.to_owned()).increment(1.0);
        Self(group.to_owned())
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        metrics::gauge!(m::PARKED_FETCHES, "group" => self.0.clone()).decrement(1.0);
    }
}

fn info(row: &GroupRow, stats: GroupStats) -> GroupInfo {
    GroupInfo { name: row.name.clone(), types: row.types.clone(), ack_wait_ms: row.ack_wait_ms, stats: stats.into() }
}

/// Messages one expiry transaction deletes at most, so it never holds the
/// writer for long; the next round takes the rest.
const EXPIRE_BATCH: i64 = 5_000;

/// Deletes messages older than `retention` that no group holds, checking ten
/// times per retention period (at most once a minute, at least every 100 ms).
async fn expire_old(broker: Weak<Inner>, retention: Duration) -> Result<(), std::convert::Infallible> {
    let every = (retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = broker.upgrade() else { return Ok(()) };
        let before_ms = crate::model::now_ms().saturating_sub(retention_ms);
        loop {
            match inner.writer.call(Request::Expire { before_ms, limit: EXPIRE_BATCH }).await {
                Ok(Response::Expired(n)) if n == EXPIRE_BATCH.unsigned_abs() => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot expire old messages; trying again later");
                    break;
                }
            }
        }
    }
}

/// Sets the per-group gauges from the log every `interval`, until the broker is dropped.
async fn refresh_stats(broker: Weak<Inner>, interval: Duration) -> Result<(), std::convert::Infallible> {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = broker.upgrade() else { return Ok(()) };
        for group in inner.groups.all() {
            match log::group_stats(inner.db.reader(), &group.row).await {
                Ok(stats) => {
                    let name = group.row.name.clone();
                    metrics::gauge!(m::CONSUMER_LAG, "group" => name.clone()).set(stats.lag() as f64);
                    metrics::gauge!(m::IN_FLIGHT, "group" => name.clone()).set(stats.in_flight as f64);
                    metrics::gauge!(m::DEAD_LETTER_QUEUE, "group" => name).set(stats.dead_letters as f64);
                }
                Err(error) => tracing::warn!(error = %error, group = %group.row.name, "cannot read group statistics"),
            }
        }
    }
}
