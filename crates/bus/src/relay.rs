//! The relay: moves committed outbox rows to the bus, in order.
//!
//! One relay runs in every process of a service, but only one of them sends
//! at a time: it holds a lease row in the service's database while it drains
//! the outbox and gives it up when the outbox is empty. That keeps rows in
//! order across replicas without any coordination service. A relay that wants
//! to send while another holds the lease tries again shortly, until it either
//! gets the lease or finds the outbox empty, so a row committed by one replica
//! while another is finishing its drain is never left behind. A relay that
//! dies holding the lease loses it when it expires.
//!
//! Each round reads a batch of the oldest rows, publishes them (the transport
//! returns once they are stored) and deletes exactly those rows. A crash
//! between publishing and deleting publishes the batch again after restart;
//! the transport drops the repeats by envelope id, and consumers' inboxes
//! absorb anything that slips past. Nothing is lost at any point.
//!
//! The relay wakes at once when this process commits staged messages
//! ([`crate::Outbox::notify`]) and otherwise polls, for rows committed by other
//! processes on the same database.
//!
//! Order: rows are sent in position order. On SQLite positions are commit
//! order (one writer). On PostgreSQL a row's position is drawn from a
//! sequence when it is inserted, so rows of two concurrent transactions can
//! commit in the other order and the higher position go out first. Messages
//! about one aggregate still go out in the order they were written, because
//! the transactions that change one aggregate are serialised by its row lock
//! (or the event store's expected version) before they stage anything. No
//! row is ever lost either way: the relay deletes exactly the rows it sent,
//! so a lower position that commits late is sent in the next round. (A
//! global lock while staging would give total commit order, at the price of
//! serialising every publishing transaction of the service and of deadlocks
//! with the locks handlers take after staging.)

use std::time::Duration;

use chassis::server::Shutdown;
use sqlx::Row as _;
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::error::BusError;
use crate::outbox::Outbox;
use crate::transport::Transport;

/// The longest pause between attempts to take a lease another replica holds.
const LEASE_RETRY_MAX: Duration = Duration::from_millis(200);

/// How the relay paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOptions {
    /// Rows per publish.
    pub batch_size: usize,
    /// How often to look for rows committed by other processes.
    pub poll_interval: Duration,
    /// How long a relay's lease lasts without renewal (a dead relay's lease
    /// frees after this). Longer than the slowest publish the transport
    /// allows, so a live relay is never overtaken mid-publish.
    pub lease_ttl: Duration,
    /// How soon to retry the lease while another replica holds it and rows
    /// wait; doubles up to 200 ms while it stays busy.
    pub lease_retry: Duration,
    /// First pause after the transport fails; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest pause between attempts while the transport is down.
    pub max_backoff: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(60),
            lease_retry: Duration::from_millis(5),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What one drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The outbox was drained; this many messages were published.
    Sent(usize),
    /// Another relay holds the lease and rows are waiting.
    LeaseBusy,
}

/// Moves one service's outbox rows to the bus.
#[derive(Debug)]
pub struct Relay {
    outbox: Outbox,
    transport: Transport,
    options: RelayOptions,
    holder: String,
}

impl Relay {
    /// A relay for `outbox`, publishing to `transport`.
    pub fn new(outbox: &Outbox, transport: Transport, options: RelayOptions) -> Self {
        crate::metric::describe();
        Self { outbox: outbox.clone(), transport, options, holder: Uuid::now_v7().to_string() }
    }

    /// Runs until `shutdown`, then makes a last attempt to flush the outbox.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), BusError> {
        let stopped = shutdown.wait();
        tokio::pin!(stopped);
        let mut backoff = self.options.min_backoff;
        let mut lease_wait = self.options.lease_retry;
        loop {
            let drained = self.drain().await;
            let lease_busy = matches!(drained, Ok(Drained::LeaseBusy));
            // Recorded whatever happened: the lag matters most while the bus is down.
            self.record_lag().await;
            let pause = match drained {
                Ok(Drained::Sent(_)) => {
                    backoff = self.options.min_backoff;
                    lease_wait = self.options.lease_retry;
                    self.options.poll_interval
                }
                Ok(Drained::LeaseBusy) => {
                    // Another replica is draining; ask again soon, less often the longer it takes.
                    let pause = lease_wait;
                    lease_wait = (lease_wait * 2).min(LEASE_RETRY_MAX);
                    pause
                }
                Err(error) => {
                    tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "outbox relay failed");
                    metrics::counter!(crate::metric::RELAY_FAILURES).increment(1);
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.options.max_backoff);
                    pause
                }
            };
            tokio::select! {
                // While another replica drains, this one's commits are its work
                // too: waking on each would only hammer the lease.
                () = self.outbox.woken(), if !lease_busy => {}
                () = tokio::time::sleep(pause) => {}
                () = &mut stopped => break,
            }
        }
        // Shutdown flushes what this process committed, if the bus is there to take it.
        match tokio::time::timeout(Duration::from_secs(2), self.drain()).await {
            Ok(Err(error)) => tracing::warn!(error = %error, "outbox not flushed at shutdown; sent after restart"),
            Err(_) => tracing::warn!("outbox flush timed out at shutdown; sent after restart"),
            Ok(Ok(_)) => {}
        }
        Ok(())
    }

    async fn record_lag(&self) {
        if let Ok(lag) = self.outbox.lag().await {
            metrics::gauge!(crate::metric::OUTBOX_LAG).set(lag.messages as f64);
            metrics::gauge!(crate::metric::OUTBOX_OLDEST).set(lag.oldest_ms as f64 / 1_000.0);
        }
    }

    /// Publishes everything in the outbox if this relay can get the lease.
    pub async fn drain(&self) -> Result<Drained, BusError> {
        if !self.acquire_lease().await? {
            return Ok(if self.outbox_is_empty().await? { Drained::Sent(0) } else { Drained::LeaseBusy });
        }
        let result = self.send_batches().await;
        // Holding on past the drain would only delay the other replicas' rows.
        let released = self.release_lease().await;
        let sent = result?;
        released?;
        Ok(Drained::Sent(sent))
    }

    async fn send_batches(&self) -> Result<usize, BusError> {
        let mut sent = 0;
        loop {
            let rows = sqlx::query("SELECT position, envelope FROM bus_outbox ORDER BY position LIMIT $1")
                .bind(i64::try_from(self.options.batch_size).unwrap_or(i64::MAX))
                .fetch_all(self.outbox.db().reader())
                .await?;
            if rows.is_empty() {
                return Ok(sent);
            }
            let mut positions = Vec::with_capacity(rows.len());
            let mut batch = Vec::with_capacity(rows.len());
            for row in &rows {
                positions.push(row.try_get::<i64, _>("position")?);
                match serde_json::from_str::<Envelope>(&row.try_get::<String, _>("envelope")?) {
                    Ok(envelope) => batch.push(envelope),
                    // Only this crate writes the column, from a serialised Envelope; a row that
                    // does not parse was damaged outside it and would block the outbox forever.
                    Err(error) => tracing::error!(error = %error, "dropping an unreadable outbox row"),
                }
            }
            self.transport.publish(&batch).await?;
            self.delete(&positions).await?;
            metrics::counter!(crate::metric::RELAYED).increment(batch.len() as u64);
            sent += batch.len();
            self.renew_lease().await?;
        }
    }

    /// Deletes exactly the rows that were published: a row that committed
    /// meanwhile with a lower position (possible on PostgreSQL) stays for the next round.
    async fn delete(&self, positions: &[i64]) -> Result<(), BusError> {
        for chunk in positions.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("DELETE FROM bus_outbox WHERE position IN ({})", placeholders.join(", "));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for position in chunk {
                query = query.bind(*position);
            }
            let mut tx = self.outbox.db().begin_write().await?;
            query.execute(&mut *tx).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    async fn outbox_is_empty(&self) -> Result<bool, BusError> {
        let row: Option<i64> = sqlx::query_scalar("SELECT position FROM bus_outbox LIMIT 1")
            .fetch_optional(self.outbox.db().reader())
            .await?;
        Ok(row.is_none())
    }

    async fn acquire_lease(&self) -> Result<bool, BusError> {
        self.update_lease(
            "UPDATE bus_relay_lease SET holder = $1, expires_at_ms = $2 \
             WHERE name = 'outbox' AND (holder = $1 OR holder = '' OR expires_at_ms < $3)",
        )
        .await
    }

    async fn renew_lease(&self) -> Result<(), BusError> {
        let renewed = self
            .update_lease(
                "UPDATE bus_relay_lease SET expires_at_ms = $2 \
                 WHERE name = 'outbox' AND holder = $1 AND expires_at_ms >= $3",
            )
            .await?;
        if renewed {
            Ok(())
        } else {
            // Another relay took over after this one's lease expired (a long stall):
            // stop sending so the two do not interleave.
            Err(BusError::Unavailable("the outbox lease expired during a drain".into()))
        }
    }

    async fn release_lease(&self) -> Result<(), BusError> {
        let mut tx = self.outbox.db().begin_write().await?;
        sqlx::query("UPDATE bus_relay_lease SET holder = '', expires_at_ms = 0 WHERE name = 'outbox' AND holder = $1")
            .bind(&self.holder)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_lease(&self, sql: &'static str) -> Result<bool, BusError> {
        let now = crate::now_ms();
        let ttl = i64::try_from(self.options.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.outbox.db().begin_write().await?;
        let updated = sqlx::query(sql)
            .bind(&self.holder)
            .bind(now.saturating_add(ttl))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(updated == 1)
    }
}
