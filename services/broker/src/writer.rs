//! The one writer of the log, and its group commit.
//!
//! Every write (publishes, leases taken by fetches, acks, naks, dead letters,
//! replays, group changes) is an operation sent over a channel to one task.
//! The task takes every operation queued at that moment (up to
//! `max_batch_ops`, or about 20 000 rows of work), runs them all in one
//! `BEGIN IMMEDIATE` transaction, commits once (one fsync with
//! `synchronous = FULL`), and only then answers each caller. Under load, hundreds of requests share one fsync; when idle,
//! an operation waits for nothing but its own commit.
//!
//! If a batch fails, its operations are run again one transaction each, so one
//! operation that cannot be applied fails alone instead of failing everyone it
//! was batched with.

use std::sync::Arc;
use std::time::Instant;

use chassis::db::Db;
use tokio::sync::{mpsc, oneshot};

use crate::broker::{Group, Groups};
use crate::log::{self, GroupRow, Leased, ReplayedRow, Stored};
use crate::metrics as m;
use crate::model::now_ms;

/// How many operations may wait for the writer before senders wait too.
const QUEUE_DEPTH: usize = 8_192;
/// Roughly how many rows one transaction may touch before the writer commits
/// and answers: a few large publishes must not hold up everyone's latency.
const MAX_BATCH_ROWS: usize = 20_000;

/// A write to the log.
#[derive(Debug)]
pub(crate) enum Request {
    /// Store envelopes (a JSON array of `count` checked envelopes) in order.
    Publish { envelopes: String, count: usize },
    /// Create a group or update its types and lease.
    Subscribe { name: String, types: Vec<String>, ack_wait_ms: i64 },
    /// Lease up to `max` messages to a fetcher of `group`.
    Lease { group: Arc<Group>, max: usize },
    /// End deliveries.
    Ack { group: Arc<Group>, seqs: Vec<i64> },
    /// Hand deliveries back, deliverable again after `delay_ms`.
    Nak { group: Arc<Group>, seqs: Vec<i64>, delay_ms: i64 },
    /// Move a delivery to the dead-letter queue.
    DeadLetter { group: Arc<Group>, seq: i64, error: String },
    /// Hand a dead letter back to its group.
    Replay { id: String },
    /// Delete up to `limit` messages published before `before_ms` that no group holds.
    Expire { before_ms: i64, limit: i64 },
}

/// What a write did, once committed.
#[derive(Debug)]
pub(crate) enum Response {
    /// The envelopes newly stored (duplicates are absent).
    Published(Vec<Stored>),
    /// The group, and whether it was created.
    Subscribed(GroupRow, bool),
    /// The leased deliveries.
    Leased(Leased),
    /// How many deliveries were pending and are now acked.
    Acked(u64),
    /// How many deliveries were pending and are now handed back.
    Naked(u64),
    /// The dead letter's id, `None` when the delivery was no longer pending.
    DeadLettered(Option<String>),
    /// Where the dead letter went, `None` when there is no such dead letter.
    Replayed(Option<ReplayedRow>),
    /// How many messages expired.
    Expired(u64),
}

/// Why a write did not happen.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub(crate) enum WriteError {
    /// The writer task is gone (the broker is stopping).
    #[error("the log writer has stopped")]
    Stopped,
    /// The transaction failed; the cause is logged.
    #[error("the log could not be written")]
    Failed,
}

struct Op {
    request: Request,
    reply: oneshot::Sender<Result<Response, WriteError>>,
}

/// The sending side of the writer; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    ops: mpsc::Sender<Op>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Op").field("request", &self.request).finish_non_exhaustive()
    }
}

impl Request {
    /// Roughly how many rows the operation touches.
    fn weight(&self) -> usize {
        match self {
            Self::Publish { count, .. } => *count,
            Self::Lease { max, .. } => *max,
            Self::Ack { seqs, .. } | Self::Nak { seqs, .. } => seqs.len(),
            Self::Expire { limit, .. } => usize::try_from(*limit).unwrap_or(MAX_BATCH_ROWS),
            Self::Subscribe { .. } | Self::DeadLetter { .. } | Self::Replay { .. } => 1,
        }
    }
}

impl Writer {
    /// Starts the writer task on `db`. It runs until every [`Writer`] clone is dropped.
    pub(crate) fn start(db: Db, groups: Arc<Groups>, max_batch_ops: usize) -> Self {
        let (ops, queue) = mpsc::channel(QUEUE_DEPTH);
        chassis::task::spawn("broker-writer", run(db, groups, queue, max_batch_ops.max(1)));
        Self { ops }
    }

    /// Runs `request` in the next transaction and answers once it is committed.
    pub(crate) async fn call(&self, request: Request) -> Result<Response, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.ops.send(Op { request, reply }).await.map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Whether the writer task is still running.
    pub(crate) fn is_running(&self) -> bool {
        !self.ops.is_closed()
    }
}

async fn run(
    db: Db,
    groups: Arc<Groups>,
    mut queue: mpsc::Receiver<Op>,
    max_batch_ops: usize,
) -> Result<(), std::convert::Infallible> {
    let mut batch: Vec<Op> = Vec::with_capacity(max_batch_ops);
    while let Some(first) = queue.recv().await {
        // Everything already queued joins the first, up to the batch limits.
        let mut weight = first.request.weight();
        batch.push(first);
        while batch.len() < max_batch_ops && weight < MAX_BATCH_ROWS {
            let Ok(op) = queue.try_recv() else { break };
            weight += op.request.weight();
            batch.push(op);
        }
        // A fetcher that hung up would leave its lease to expire for nothing.
        batch.retain(|op| !(matches!(op.request, Request::Lease { .. }) && op.reply.is_closed()));
        if batch.is_empty() {
            continue;
        }
        let now = now_ms();
        let started = Instant::now();
        match commit(&db, batch.iter().map(|op| &op.request), now).await {
            Ok(responses) => {
                record_commit(started, batch.len());
                for (op, response) in batch.drain(..).zip(responses) {
                    after_commit(&groups, &op.request, &response);
                    let _ = op.reply.send(Ok(response));
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, operations = batch.len(), "a write batch failed; retrying its operations one by one");
                for op in batch.drain(..) {
                    let started = Instant::now();
                    let outcome = match commit(&db, std::iter::once(&op.request), now).await {
                        Ok(mut responses) => responses.pop().ok_or(WriteError::Failed),
                        Err(error) => {
                            tracing::error!(error = %error, request = ?op.request, "a write to the log failed");
                            Err(WriteError::Failed)
                        }
                    };
                    if let Ok(response) = &outcome {
                        record_commit(started, 1);
                        after_commit(&groups, &op.request, response);
                    }
                    let _ = op.reply.send(outcome);
                }
            }
        }
    }
    Ok(())
}

/// Applies `requests` in one transaction and commits it.
async fn commit<'a>(
    db: &Db,
    requests: impl Iterator<Item = &'a Request>,
    now: i64,
) -> Result<Vec<Response>, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let mut responses = Vec::new();
    for request in requests {
        responses.push(apply(&mut tx, request, now).await?);
    }
    tx.commit().await?;
    Ok(responses)
}

async fn apply(conn: &mut sqlx::AnyConnection, request: &Request, now: i64) -> Result<Response, sqlx::Error> {
    Ok(match request {
        Request::Publish { envelopes, .. } => Response::Published(log::insert_messages(conn, envelopes, now).await?),
        Request::Subscribe { name, types, ack_wait_ms } => {
            let (row, created) = log::upsert_group(conn, name, types, *ack_wait_ms, now).await?;
            Response::Subscribed(row, created)
        }
        Request::Lease { group, max } => Response::Leased(log::lease(conn, &group.row, *max, now).await?),
        Request::Ack { group, seqs } => Response::Acked(log::ack(conn, group.row.id, seqs).await?),
        Request::Nak { group, seqs, delay_ms } => {
            Response::Naked(log::nak(conn, group.row.id, seqs, now.saturating_add(*delay_ms)).await?)
        }
        Request::DeadLetter { group, seq, error } => {
            let id = uuid::Uuid::now_v7().to_string();
            let stored = log::dead_letter(conn, group.row.id, *seq, &id, error, now).await?;
            Response::DeadLettered(stored.then_some(id))
        }
        Request::Replay { id } => Response::Replayed(log::replay(conn, id, now).await?),
        Request::Expire { before_ms, limit } => Response::Expired(log::expire(conn, *before_ms, *limit).await?),
    })
}

fn record_commit(started: Instant, operations: usize) {
    metrics::counter!(m::COMMITS).increment(1);
    metrics::counter!(m::COMMITTED_OPERATIONS).increment(operations as u64);
    metrics::histogram!(m::COMMIT_DURATION).record(started.elapsed().as_secs_f64());
}

/// What follows a committed write: counters, the group cache, and waking the
/// fetchers that may now find something.
fn after_commit(groups: &Groups, request: &Request, response: &Response) {
    match (request, response) {
        (_, Response::Published(stored)) => {
            metrics::counter!(m::PUBLISHED).increment(stored.len() as u64);
            groups.wake_for_types(stored.iter().map(|s| s.message_type.as_str()));
        }
        (_, Response::Subscribed(row, _)) => groups.put(row.clone()),
        (Request::Lease { group, .. }, Response::Leased(leased)) => {
            let name = group.row.name.clone();
            let again = leased.deliveries.iter().filter(|d| d.attempt > 1).count() as u64;
            metrics::counter!(m::DELIVERIES, "group" => name.clone()).increment(leased.deliveries.len() as u64);
            if again > 0 {
                metrics::counter!(m::REDELIVERIES, "group" => name).increment(again);
            }
        }
        (Request::Ack { group, .. }, Response::Acked(n)) => {
            metrics::counter!(m::ACKS, "group" => group.row.name.clone()).increment(*n);
        }
        (Request::Nak { group, .. }, Response::Naked(n)) => {
            metrics::counter!(m::NAKS, "group" => group.row.name.clone()).increment(*n);
            // A waiting fetcher must learn the new time these become deliverable.
            group.wake.notify_waiters();
        }
        (Request::DeadLetter { group, .. }, Response::DeadLettered(Some(_))) => {
            metrics::counter!(m::DEAD_LETTERS, "group" => group.row.name.clone()).increment(1);
        }
        (_, Response::Expired(n)) => metrics::counter!(m::EXPIRED).increment(*n),
        (_, Response::Replayed(Some(replayed))) => {
            metrics::counter!(m::REPLAYS, "group" => replayed.group.clone()).increment(1);
            groups.wake(&replayed.group);
        }
        _ => {}
    }
}
