//! Queries over the bus: request-reply with a deadline, held in memory only.
//!
//! A requester's query waits in a queue per message type until a responder
//! takes it (each query goes to exactly one responder) and replies, or until
//! its deadline passes. Nothing is stored: a query that outlives a broker
//! restart was answered with a timeout anyway.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// A query handed to a responder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Incoming {
    /// Where the reply goes.
    pub reply_to: String,
    /// The query envelope as JSON text.
    pub envelope: String,
}

#[derive(Debug)]
struct Queued {
    reply_to: String,
    envelope: String,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Queries not yet taken, by message type, oldest first.
    queued: HashMap<String, VecDeque<Queued>>,
    /// Requesters still waiting, by reply address.
    waiting: HashMap<String, oneshot::Sender<String>>,
}

/// The queries in flight.
#[derive(Debug, Default)]
pub(crate) struct Queries {
    state: Mutex<State>,
    arrived: Notify,
    /// Set when the process stops: responders' long polls answer at once.
    closing: AtomicBool,
}

/// Forgets a requester when its wait ends, however it ends (reply, deadline, or a dropped connection).
struct Forget<'a> {
    queries: &'a Queries,
    reply_to: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.queries.lock().waiting.remove(self.reply_to);
    }
}

impl Queries {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic in another holder: every
        // change is a single insert or remove.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `envelope` (JSON text of type `message_type`) and waits up to
    /// `timeout` for its reply; `None` when none came in time.
    pub(crate) async fn request(&self, message_type: &str, envelope: String, timeout: Duration) -> Option<String> {
        let reply_to = uuid::Uuid::now_v7().to_string();
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        {
            let mut state = self.lock();
            let State { queued, waiting } = &mut *state;
            waiting.insert(reply_to.clone(), reply);
            let queue = queued.entry(message_type.to_owned()).or_default();
            // Queries nobody took are dropped here, so a type without responders does not grow.
            let now = Instant::now();
            queue.retain(|q| q.deadline > now && waiting.contains_key(&q.reply_to));
            queue.push_back(Queued { reply_to: reply_to.clone(), envelope, deadline });
        }
        let _forget = Forget { queries: self, reply_to: &reply_to };
        self.arrived.notify_waiters();
        tokio::time::timeout_at(deadline, answer).await.ok()?.ok()
    }

    /// Up to `max` queries of `types`, waiting up to `wait` for the first.
    pub(crate) async fn take(&self, types: &[String], max: usize, wait: Duration) -> Vec<Incoming> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            // Registered before looking, so a query queued in between still wakes this wait.
            notified.as_mut().enable();
            let taken = self.take_now(types, max);
            if !taken.is_empty() || Instant::now() >= deadline || self.closing.load(Ordering::SeqCst) {
                return taken;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn take_now(&self, types: &[String], max: usize) -> Vec<Incoming> {
        let now = Instant::now();
        let mut state = self.lock();
        let State { queued, waiting } = &mut *state;
        let mut taken = Vec::new();
        for message_type in types {
            let Some(queue) = queued.get_mut(message_type) else { continue };
            while taken.len() < max {
                let Some(query) = queue.pop_front() else { break };
                if query.deadline > now && waiting.contains_key(&query.reply_to) {
                    taken.push(Incoming { reply_to: query.reply_to, envelope: query.envelope });
                }
            }
            if queue.is_empty() {
                queued.remove(message_type);
            }
        }
        taken
    }

    /// Ends the responders' long polls now and makes later ones return without waiting.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.arrived.notify_waiters();
    }

    /// Hands `envelope` to the requester waiting at `reply_to`; false when
    /// none is waiting there any more (its deadline passed).
    pub(crate) fn reply(&self, reply_to: &str, envelope: String) -> bool {
        let waiting = self.lock().waiting.remove(reply_to);
        waiting.is_some_and(|requester| requester.send(envelope).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_query_is_answered_by_the_one_responder_that_took_it() {
        let queries = Queries::default();
        let responder = async {
            let first = queries.take(&["q.v1".into()], 10, Duration::from_secs(5)).await;
            assert_eq!(first.len(), 1);
            assert_eq!(first[0].envelope, "{\"q\":1}");
            let second = queries.take(&["q.v1".into()], 10, Duration::ZERO).await;
            assert!(second.is_empty(), "a query goes to one responder only");
            assert!(queries.reply(&first[0].reply_to, "{\"a\":1}".into()));
            first[0].reply_to.clone()
        };
        let (answer, reply_to) =
            tokio::join!(queries.request("q.v1", "{\"q\":1}".into(), Duration::from_secs(5)), responder);
        assert_eq!(answer.as_deref(), Some("{\"a\":1}"));
        assert!(!queries.reply(&reply_to, "{}".into()), "a second reply finds nobody waiting");
    }

    #[tokio::test]
    async fn a_query_nobody_answers_times_out_and_is_not_handed_out_afterwards() {
        let queries = Queries::default();
        let answer = queries.request("q.v1", "{}".into(), Duration::from_millis(20)).await;
        assert_eq!(answer, None);
        assert!(queries.take(&["q.v1".into()], 10, Duration::ZERO).await.is_empty());
    }

    #[tokio::test]
    async fn closing_ends_a_waiting_responder_at_once() {
        let queries = Queries::default();
        let types = ["a.v1".to_owned()];
        let started = std::time::Instant::now();
        let (taken, ()) = tokio::join!(queries.take(&types, 10, Duration::from_secs(30)), async {
            tokio::task::yield_now().await;
            queries.close();
        });
        assert!(taken.is_empty());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn responders_only_see_the_types_they_ask_for() {
        let queries = Queries::default();
        let responder = async {
            assert!(queries.take(&["b.v1".into()], 10, Duration::from_millis(30)).await.is_empty());
            let taken = queries.take(&["a.v1".into()], 10, Duration::from_secs(5)).await;
            assert_eq!(taken.len(), 1);
            queries.reply(&taken[0].reply_to, "{}".into())
        };
        let (answer, replied) = tokio::join!(queries.request("a.v1", "{}".into(), Duration::from_secs(5)), responder);
        assert!(replied);
        assert_eq!(answer.as_deref(), Some("{}"));
    }
}
