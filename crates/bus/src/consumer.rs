//! Consumers: at-least-once delivery with an inbox, so each message has its
//! effect once.
//!
//! For every fetched batch a [`Consumer`] opens one write transaction in the
//! service's database; for each message it records the message id in the
//! inbox table and runs the [`Handler`] inside a savepoint of that
//! transaction, so a failing message is undone alone. It commits once for the
//! batch and only then acks.
//! A redelivered message (the ack was lost, the lease expired, the process
//! died after commit) finds its id in the inbox and is acked without running
//! the handler again. A handler that fails leaves nothing behind (the
//! transaction rolls back) and the message comes back after an exponential
//! backoff with jitter; after `max_attempts` it goes to the dead-letter queue.
//!
//! Replicas of a service run the same consumer group and share its messages
//! (competing consumers). Messages about one subject arrive in publish order
//! in the absence of failures, but a redelivery can overtake later messages,
//! so handlers check state and versions instead of assuming order.

use std::future::Future;
use std::time::{Duration, Instant};

use chassis::server::Shutdown;
use sqlx::{Any, AnyConnection, Connection as _, Transaction};

use crate::backoff::Backoff;
use crate::envelope::Envelope;
use crate::error::BusError;
use crate::outbox::Outbox;
use crate::transport::{Delivery, Subscription, Transport};

/// Why a handler did not handle a message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A failure that may pass (a dependency down, a lock timeout): try again later.
    #[error("{0}")]
    Retry(String),
    /// The message can never be handled (it does not decode, it breaks a rule):
    /// straight to the dead-letter queue, without further attempts.
    #[error("{0}")]
    Reject(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Retry(format!("database: {error}"))
    }
}

impl From<BusError> for HandlerError {
    fn from(error: BusError) -> Self {
        Self::Retry(error.to_string())
    }
}

/// The code that gives a message its effect, inside the consumer's transaction.
pub trait Handler: Send + Sync + 'static {
    /// Applies `message` using `tx`, a connection inside the consumer's
    /// transaction. Everything written through it (including messages staged
    /// with [`Outbox::stage`]) commits together with the inbox record, or not at all.
    fn handle<'a>(
        &'a self,
        tx: &'a mut AnyConnection,
        message: &'a Envelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;
}

/// How a consumer group consumes.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerOptions {
    /// The consumer group: the same for every replica of the service.
    pub group: String,
    /// The message types it handles.
    pub types: Vec<String>,
    /// Messages per fetch.
    pub batch_size: usize,
    /// How long one fetch waits for messages (a long poll, not a poll interval).
    pub fetch_wait: Duration,
    /// How long a delivery is leased before the bus gives it to someone else.
    pub ack_wait: Duration,
    /// Deliveries before a failing message is dead-lettered.
    pub max_attempts: u32,
    /// The delay before each retry.
    pub backoff: Backoff,
    /// How long inbox records are kept: longer than any redelivery can come
    /// (the bus keeps messages 7 days).
    pub inbox_retention: Duration,
}

impl ConsumerOptions {
    /// Defaults for `group` consuming `types`: batches of 64, 5 s long polls,
    /// 30 s leases, 5 attempts, backoff from 200 ms doubling to 30 s with 10 %
    /// jitter, inbox records kept 14 days.
    pub fn new(group: impl Into<String>, types: &[&str]) -> Self {
        Self {
            group: group.into(),
            types: types.iter().map(|t| (*t).to_owned()).collect(),
            batch_size: 64,
            fetch_wait: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
            max_attempts: 5,
            backoff: Backoff::default(),
            inbox_retention: Duration::from_secs(14 * 24 * 3600),
        }
    }

    fn subscription(&self) -> Subscription {
        Subscription { group: self.group.clone(), types: self.types.clone(), ack_wait: self.ack_wait }
    }
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler's effect committed; acked.
    Handled,
    /// The inbox already had it; acked without running the handler.
    Duplicate,
    /// Handed back to the bus to try again after the delay.
    Retried(Duration),
    /// Moved to the dead-letter queue with this error.
    DeadLettered(String),
}

/// One consumer group member: fetches, handles through the inbox, acks.
pub struct Consumer<H> {
    transport: Transport,
    outbox: Outbox,
    handler: H,
    options: ConsumerOptions,
}

impl<H> std::fmt::Debug for Consumer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("options", &self.options).finish_non_exhaustive()
    }
}

impl<H: Handler> Consumer<H> {
    /// A consumer whose inbox lives in `outbox`'s database (the service's own),
    /// so a handler can stage messages in the same transaction.
    pub fn new(transport: Transport, outbox: &Outbox, handler: H, options: ConsumerOptions) -> Self {
        crate::metric::describe();
        Self { transport, outbox: outbox.clone(), handler, options }
    }

    /// Creates or updates the consumer group on the bus.
    pub async fn subscribe(&self) -> Result<(), BusError> {
        self.transport.subscribe(&self.options.subscription()).await
    }

    /// Subscribes, then consumes until `shutdown`. While the bus is
    /// unreachable it keeps trying, with backoff. Only the wait for messages
    /// is cut short by shutdown: a fetched batch is handled, committed and
    /// settled first, so a restart leaves nothing leased to a dead process.
    /// Inbox records older than `inbox_retention` are pruned once an hour.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), BusError> {
        let stopped = shutdown.wait();
        tokio::pin!(stopped);
        let mut failures = 0;
        let mut subscribed = false;
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_prune {
                next_prune += INBOX_PRUNE_EVERY;
                match prune_inbox(&self.outbox, self.options.inbox_retention).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(group = %self.options.group, pruned, "pruned old inbox records"),
                    Err(error) => tracing::warn!(group = %self.options.group, error = %error, "cannot prune the inbox"),
                }
            }
            let fetched = tokio::select! {
                fetched = async {
                    if !subscribed {
                        self.subscribe().await?;
                        subscribed = true;
                    }
                    self.fetch().await
                } => fetched,
                () = &mut stopped => return Ok(()),
            };
            let result = match fetched {
                Ok(deliveries) => self.handle_batch(deliveries).await,
                Err(error) => Err(error),
            };
            match result {
                Ok(_) => failures = 0,
                Err(error) => {
                    failures += 1;
                    // The group may be gone (a log replaced, a consumer deleted): make it again next round.
                    subscribed = false;
                    let pause = self.options.backoff.delay(failures).min(Duration::from_secs(5));
                    tracing::warn!(
                        group = %self.options.group, error = %error, retry_in_ms = pause.as_millis() as u64,
                        "consuming failed; trying again"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = &mut stopped => return Ok(()),
                    }
                }
            }
        }
    }

    /// Fetches one batch (waiting up to `fetch_wait`), handles it and acks the
    /// handled messages together. Returns the outcomes in delivery order.
    pub async fn consume_batch(&self) -> Result<Vec<Outcome>, BusError> {
        let deliveries = self.fetch().await?;
        self.handle_batch(deliveries).await
    }

    async fn fetch(&self) -> Result<Vec<Delivery>, BusError> {
        self.transport.fetch(&self.options.group, self.options.batch_size, self.options.fetch_wait).await
    }

    async fn handle_batch(&self, deliveries: Vec<Delivery>) -> Result<Vec<Outcome>, BusError> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        // A batch with a redelivery in it may hold a message whose handler takes
        // the process down. Such a batch goes one message at a time, each acked
        // as soon as it commits, so the others are not held hostage, and each
        // handler start is counted so the culprit is found and set aside.
        if deliveries.iter().any(|d| d.attempt > 1) {
            let mut outcomes = Vec::with_capacity(deliveries.len());
            for delivery in deliveries {
                let outcome = self.process(&delivery).await?;
                if matches!(outcome, Outcome::Handled | Outcome::Duplicate) {
                    self.transport.ack(&self.options.group, std::slice::from_ref(&delivery)).await?;
                }
                outcomes.push(outcome);
            }
            return Ok(outcomes);
        }
        let outcomes = self.settle(&deliveries).await?;
        // One ack for the batch: all of these are committed, so a lost ack only
        // means a redelivery the inbox recognises.
        let done: Vec<Delivery> = deliveries
            .into_iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, Outcome::Handled | Outcome::Duplicate))
            .map(|(delivery, _)| delivery)
            .collect();
        if !done.is_empty() {
            self.transport.ack(&self.options.group, &done).await?;
        }
        Ok(outcomes)
    }

    /// Handles one delivery through the inbox and settles it with the bus,
    /// except for the ack of a handled message, which the caller owes.
    ///
    /// A redelivery's handler start is first counted in a transaction of its
    /// own; once it has been started more than `max_attempts` times without
    /// finishing (each time the process died with it), the message goes to
    /// the dead-letter queue without running again. Redeliveries for other
    /// reasons (a lost ack, a database or bus outage) never started the
    /// handler, or finished it and are in the inbox, so they are not counted.
    pub async fn process(&self, delivery: &Delivery) -> Result<Outcome, BusError> {
        if delivery.attempt > 1 {
            let group = &self.options.group;
            let id = delivery.envelope.id.to_string();
            let handled: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM bus_inbox WHERE consumer = $1 AND message_id = $2")
                    .bind(group)
                    .bind(&id)
                    .fetch_optional(self.outbox.db().reader())
                    .await?;
            if handled.is_some() {
                return self.conclude(delivery, Outcome::Duplicate, Duration::ZERO).await;
            }
            let mut tx = self.outbox.db().begin_write().await?;
            let starts: i64 = sqlx::query_scalar(
                "INSERT INTO bus_attempts (consumer, message_id, starts, started_at_ms) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (consumer, message_id) DO UPDATE SET starts = bus_attempts.starts + 1, \
                 started_at_ms = excluded.started_at_ms RETURNING starts",
            )
            .bind(group)
            .bind(&id)
            .bind(crate::now_ms())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            if starts > i64::from(self.options.max_attempts) {
                let error = format!(
                    "its handler was started {} times without finishing; it may be taking the process down",
                    starts - 1
                );
                return self.conclude(delivery, Outcome::DeadLettered(error), Duration::ZERO).await;
            }
        }
        let mut outcomes = self.settle(std::slice::from_ref(delivery)).await?;
        Ok(outcomes.pop().unwrap_or(Outcome::Duplicate))
    }

    /// Handles `deliveries` in one transaction, then naks or dead-letters the
    /// ones that failed. Acks are the caller's.
    async fn settle(&self, deliveries: &[Delivery]) -> Result<Vec<Outcome>, BusError> {
        let started = Instant::now();
        let mut tx = self.outbox.db().begin_write().await?;
        let mut results = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let envelope = &delivery.envelope;
            let result = envelope.trace_context().child().scope(self.handle_once(&mut tx, envelope)).await;
            results.push(result);
        }
        tx.commit().await?;
        // Handlers may have staged messages of their own.
        self.outbox.notify();
        let took = started.elapsed();
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for (delivery, result) in deliveries.iter().zip(results) {
            outcomes.push(self.conclude(delivery, self.decide(delivery, result), took).await?);
        }
        Ok(outcomes)
    }

    /// Tells the bus what became of a delivery that will not be acked (nak
    /// or dead letter; acks are the caller's, batched) and counts the outcome.
    async fn conclude(&self, delivery: &Delivery, outcome: Outcome, took: Duration) -> Result<Outcome, BusError> {
        match &outcome {
            Outcome::Retried(delay) => self.transport.nak(&self.options.group, delivery, *delay).await?,
            Outcome::DeadLettered(error) => {
                tracing::error!(
                    group = %self.options.group, message_id = %delivery.envelope.id,
                    message_type = %delivery.envelope.message_type, attempts = delivery.attempt, error = %error,
                    "message moved to the dead-letter queue"
                );
                self.transport.dead_letter(&self.options.group, delivery, error).await?;
            }
            Outcome::Handled | Outcome::Duplicate => {}
        }
        crate::metric::record_consumed(&self.options.group, &outcome, took);
        Ok(outcome)
    }

    fn decide(&self, delivery: &Delivery, result: Result<bool, HandlerError>) -> Outcome {
        match result {
            Ok(true) => Outcome::Handled,
            Ok(false) => Outcome::Duplicate,
            Err(HandlerError::Reject(error)) => Outcome::DeadLettered(error),
            Err(HandlerError::Retry(error)) if delivery.attempt >= self.options.max_attempts => {
                Outcome::DeadLettered(error)
            }
            Err(HandlerError::Retry(error)) => {
                let delay = self.options.backoff.delay(delivery.attempt);
                tracing::warn!(
                    group = %self.options.group, message_id = %delivery.envelope.id,
                    message_type = %delivery.envelope.message_type, attempt = delivery.attempt,
                    retry_in_ms = delay.as_millis() as u64, error = %error, "handler failed; will retry"
                );
                Outcome::Retried(delay)
            }
        }
    }

    /// Records the message in the inbox and runs the handler, inside a
    /// savepoint of the batch's transaction: a failure undoes this message's
    /// writes only. `Ok(false)`: already handled, nothing done.
    async fn handle_once(&self, tx: &mut Transaction<'static, Any>, envelope: &Envelope) -> Result<bool, HandlerError> {
        let mut savepoint = (**tx).begin().await?;
        let recorded = sqlx::query(
            "INSERT INTO bus_inbox (consumer, message_id, handled_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer, message_id) DO NOTHING",
        )
        .bind(&self.options.group)
        .bind(envelope.id.to_string())
        .bind(crate::now_ms())
        .execute(&mut *savepoint)
        .await?
        .rows_affected();
        if recorded == 0 {
            savepoint.rollback().await?;
            return Ok(false);
        }
        match self.handler.handle(&mut savepoint, envelope).await {
            Ok(()) => {
                savepoint.commit().await?;
                Ok(true)
            }
            Err(error) => {
                savepoint.rollback().await?;
                Err(error)
            }
        }
    }
}

/// How often a running consumer prunes its inbox.
const INBOX_PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes inbox records (and counts of handler starts) older than
/// `retention`. Keep it longer than the bus keeps messages (7 days on both
/// transports), or a redelivery of an old message would find no record and
/// take effect again.
pub async fn prune_inbox(outbox: &Outbox, retention: Duration) -> Result<u64, BusError> {
    let cutoff = crate::now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let mut tx = outbox.db().begin_write().await?;
    let deleted = sqlx::query("DELETE FROM bus_inbox WHERE handled_at_ms < $1")
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM bus_attempts WHERE started_at_ms < $1").bind(cutoff).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(deleted)
}
