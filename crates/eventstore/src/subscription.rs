//! [`Subscription`]: every event after a global position, first those already
//! stored (catch-up), then each new one as it is appended (live), for
//! consumers that react to events rather than keep a read model in the
//! store's database (those use a [`crate::Projection`]).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::EventStoreError;
use crate::model::RecordedEvent;
use crate::store::EventStore;

/// Events read per query while catching up.
const PAGE: usize = 256;

/// How often a waiting subscription looks for new events when no append
/// signal arrives: the delay for events appended by another process, or by a
/// caller of [`EventStore::append_in`] that did not call
/// [`EventStore::notify_appended`].
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Every event after a global position, in global order, waiting for new ones
/// once it has caught up. Made by [`EventStore::subscribe_all`].
///
/// It never skips nor repeats an event: global positions commit in order and
/// without gaps (see the crate docs), so reading on from the last position
/// returned finds exactly the events that followed it. Keep
/// [`Self::position`] as the checkpoint to resume from after a restart.
#[derive(Debug)]
pub struct Subscription {
    store: EventStore,
    appended: watch::Receiver<u64>,
    position: u64,
    buffer: VecDeque<RecordedEvent>,
    poll_interval: Duration,
}

impl EventStore {
    /// Every event after global position `after` (0 for all), looking for new
    /// ones every [`DEFAULT_POLL_INTERVAL`] and at once when this store, or a
    /// clone of it, appends.
    pub fn subscribe_all(&self, after: u64) -> Subscription {
        self.subscribe_all_with(after, DEFAULT_POLL_INTERVAL)
    }

    /// [`Self::subscribe_all`] looking for new events every `poll_interval`
    /// when no append signal wakes it first.
    pub fn subscribe_all_with(&self, after: u64, poll_interval: Duration) -> Subscription {
        Subscription {
            store: self.clone(),
            appended: self.appended_signal(),
            position: after,
            buffer: VecDeque::new(),
            poll_interval,
        }
    }
}

impl Subscription {
    /// The next event, waiting for it when every stored event has been returned.
    ///
    /// An error leaves the subscription where it was: calling again retries the
    /// read. Cancel-safe: dropping the future (in a `tokio::select!` or a
    /// timeout) loses no event.
    pub async fn next(&mut self) -> Result<RecordedEvent, EventStoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.position = event.global_position;
                return Ok(event);
            }
            // Marked seen before the read, so a signal for an append that commits
            // after the read still ends the wait below.
            self.appended.borrow_and_update();
            let page = self.store.read_all(self.position, PAGE).await?;
            if !page.is_empty() {
                self.buffer.extend(page);
                continue;
            }
            tokio::select! {
                changed = self.appended.changed() => {
                    if changed.is_err() {
                        // Unreachable while this subscription holds the store, which
                        // owns the sender; polling keeps it correct regardless.
                        tokio::time::sleep(self.poll_interval).await;
                    }
                }
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// The global position of the last event returned (the `after` it was
    /// made with until then): where a new subscription resumes from.
    pub fn position(&self) -> u64 {
        self.position
    }
}
