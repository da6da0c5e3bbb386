//! The NATS JetStream transport: the bus of the distributed profile, for more
//! than one machine. It keeps the contract of [`crate::Transport`] with
//! JetStream's own primitives:
//!
//! - Every message is stored in one stream, `BAZAAR`, on subject
//!   `bazaar.<type>`, with `Nats-Msg-Id` = the envelope id.
//! - A consumer group is a durable pull consumer named after the group,
//!   filtered to its types' subjects; members of the group pull from the same
//!   consumer and so compete, while every group has its own consumer and so
//!   sees every message. Acks are explicit and sent after the handler commits.
//! - Dead letters live in a second stream, `BAZAAR_DLQ` (`bazaar-dlq.<group>.<type>`);
//!   a replay republishes to `bazaar.replay.<group>.<type>`, which only that
//!   group's consumer is filtered to.
//! - Queries are core NATS request-reply on `bazaar-query.<type>`, outside
//!   `bazaar.>` so JetStream never stores them, answered by a queue group so
//!   each query reaches one responder.
//!
//! # Durability settings, and why
//!
//! - **`sync_interval: always` on the server** (`deploy/nats/nats-server.conf`):
//!   by default JetStream acknowledges a publish once the message is written
//!   to the OS, and fsyncs every two minutes; a power loss can then drop
//!   acknowledged messages, after the outbox already marked them sent. With
//!   `always`, a publish ack means the message is on disk. This is a server
//!   setting; a client cannot ask for it.
//! - **File storage**: memory storage would lose everything on a restart.
//! - **R3 when clustered** ([`JetStreamOptions::replicas`]): a publish is
//!   acknowledged once a majority of three nodes has it, so losing one node
//!   loses nothing and the stream and consumers keep working on the other two.
//!   One node means R1: there is nothing to replicate to.
//! - **Duplicate window** ([`JetStreamOptions::duplicate_window`]): the stream
//!   drops a publish whose `Nats-Msg-Id` it saw within the window. The outbox
//!   relay may publish a batch again when it crashed (or lost the connection)
//!   after JetStream stored the batch but before it marked its rows sent; the
//!   window must cover the time such a relay takes to come back, or the repeat
//!   is stored twice. A repeat beyond the window is still harmless, since the
//!   inbox of every consumer drops a message id it has seen, but it costs a
//!   second delivery. The window is kept in server memory (one entry per
//!   message in it), which is what keeps it from being unlimited.
//! - **Limits retention, `max_age`, discard old**: messages stay for
//!   `max_age` whatever the consumers have acked, so a new consumer group
//!   starts from everything still stored and a group may be down for up to
//!   `max_age` without losing messages. Past `max_age` (or `max_bytes`) the
//!   oldest messages go, so a full disk never stops publishing.
//! - **`ack_wait`** (per subscription) is the lease: a delivery not acked by
//!   then is delivered again, to any member. **`max_ack_pending`**
//!   ([`JetStreamOptions::max_ack_pending`]) bounds the unacked deliveries of a
//!   group; it is generous so that it throttles only a stuck group.
//!
//! # Fetching without stranding messages
//!
//! A pull request left outstanding at the server would have messages
//! delivered to it (and leased) that nobody reads until `ack_wait` expires.
//! So `fetch` first asks for what is there without waiting (a `no_wait`
//! request, answered at once); only when nothing is there does it wait, with
//! a request for one message that expires after `wait`, and then takes the
//! rest without waiting. If the caller drops a `fetch` in the middle of that
//! wait (a shutdown), a message delivered at that instant is leased until its
//! `ack_wait` passes, and then delivered again.

use std::collections::HashMap;
use std::future::IntoFuture as _;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, AckKind};
use async_nats::{HeaderMap, HeaderValue};
use futures_util::stream::SelectAll;
use futures_util::{FutureExt as _, StreamExt as _};

use crate::envelope::bus_subject;
use crate::transport::Handle;
use crate::{BusError, DeadLetter, Delivery, Envelope, IncomingQuery, Subscription};

/// The stream every bus message is stored in.
pub const STREAM: &str = "BAZAAR";
/// The stream dead letters are kept in.
pub const DLQ_STREAM: &str = "BAZAAR_DLQ";
/// The first token of dead-letter subjects: `bazaar-dlq.<group>.<type>`. A
/// different token from `bazaar` so the two streams' subjects never overlap.
const DLQ_PREFIX: &str = "bazaar-dlq";
/// The first token of query subjects: `bazaar-query.<type>`, outside `bazaar.>`
/// so that no stream stores queries.
const QUERY_PREFIX: &str = "bazaar-query";
/// The second token of replay subjects: `bazaar.replay.<group>.<type>`.
const REPLAY_TOKEN: &str = "replay";
/// The queue group of query responders: each query goes to one member.
const RESPONDERS: &str = "bazaar-responders";
/// Dead-letter header: the consumer group the message died in.
const HEADER_GROUP: &str = "Bazaar-Group";
/// Dead-letter header: the handler's last error.
const HEADER_ERROR: &str = "Bazaar-Error";
/// Dead-letter header: how many times the message was delivered.
const HEADER_ATTEMPTS: &str = "Bazaar-Attempts";
/// How much of a handler error a dead letter keeps.
const MAX_ERROR_LEN: usize = 4096;
/// Waits shorter than this do not open a waiting pull request: the server
/// would expire it before it could deliver anything.
const MIN_WAIT: Duration = Duration::from_millis(10);
/// How long after a waiting pull request's expiry `fetch` gives up on the
/// server's answer (the connection may have dropped with the request on it).
const EXPIRY_GRACE: Duration = Duration::from_secs(1);

/// How the streams and the connection are set up.
///
/// The default suits one node: R1, a ten-minute duplicate window, messages
/// kept for seven days (dead letters for thirty), no size limit, up to 20 000
/// unacked deliveries per group and five seconds for each request to the
/// server. Set `replicas: 3` on a cluster.
///
/// The first process to connect creates the streams with its settings; the
/// others leave existing streams as they are (and log a mismatch), so an
/// operator tool with the defaults never cuts a cluster's replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamOptions {
    /// Copies of each stream and consumer: 1 on a single node, 3 on a cluster.
    pub replicas: usize,
    /// How long a message id is remembered to drop a repeated publish (see the module docs).
    pub duplicate_window: Duration,
    /// How long a message stays in `BAZAAR`; the oldest go first past it.
    pub max_age: Duration,
    /// The most bytes `BAZAAR` keeps (the oldest go first past it); `None` for no limit.
    pub max_bytes: Option<u64>,
    /// How long a dead letter stays in `BAZAAR_DLQ` unless replayed.
    pub dead_letter_max_age: Duration,
    /// The most unacked deliveries one consumer group may have out at once.
    pub max_ack_pending: i64,
    /// The bound on each request to the server: stream and consumer
    /// management, publish acks, ack confirmations.
    pub request_timeout: Duration,
    /// The connection name the server shows in its monitoring (`connz`).
    pub connection_name: String,
    /// Whether connecting creates missing streams (services) or requires them
    /// to exist (operator tools, which must not create a stream with their
    /// own defaults before the services have made it with theirs).
    pub create_streams: bool,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: None,
            dead_letter_max_age: Duration::from_secs(30 * 24 * 3600),
            max_ack_pending: 20_000,
            request_timeout: Duration::from_secs(5),
            connection_name: "bazaar".to_owned(),
            create_streams: true,
        }
    }
}

/// A connection to NATS with the bus streams in place. Cheap to clone: the
/// clones share the connection.
#[derive(Debug, Clone)]
pub struct JetStreamTransport {
    inner: Arc<Inner>,
}

/// What the clones of one transport share.
#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    options: JetStreamOptions,
    /// The pull consumer of each group this process subscribed or fetched.
    consumers: Mutex<HashMap<String, PullConsumer>>,
    /// The responder subscription for each set of query types, made on first fetch.
    responders: tokio::sync::Mutex<HashMap<Vec<String>, Responder>>,
}

/// The queue subscriptions for one set of query types, merged into one stream.
type Responder = Arc<tokio::sync::Mutex<SelectAll<async_nats::Subscriber>>>;

impl JetStreamTransport {
    /// Connects to any of `urls` (it reconnects to any of them, and to the
    /// cluster members the server announces, whenever the connection drops)
    /// and creates the `BAZAAR` and `BAZAAR_DLQ` streams if they do not exist.
    pub async fn connect(urls: &[String], options: JetStreamOptions) -> Result<Self, BusError> {
        if urls.is_empty() {
            return Err(BusError::Rejected("no NATS URL given".into()));
        }
        let client = async_nats::ConnectOptions::new()
            .name(&options.connection_name)
            .request_timeout(Some(options.request_timeout))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("connected to NATS"),
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                    other => tracing::warn!(event = %other, "NATS connection event"),
                }
            })
            .connect(urls)
            .await
            .map_err(|e| BusError::Unavailable(format!("cannot connect to NATS at {}: {e}", urls.join(", "))))?;
        let js = jetstream::ContextBuilder::new().timeout(options.request_timeout).build(client.clone());
        let inner =
            Inner { client, js, options, consumers: Mutex::default(), responders: tokio::sync::Mutex::default() };
        let transport = Self { inner: Arc::new(inner) };
        transport.ensure_streams().await?;
        Ok(transport)
    }

    /// Whether the connection to NATS is up right now (for readiness checks).
    /// While it is down, the client keeps reconnecting to any known server.
    pub fn is_connected(&self) -> bool {
        self.inner.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Creates the two streams when they do not exist yet. Existing streams
    /// are left as they are: every process connects with its own options
    /// (an operator's `bazaar dlq` with the defaults, a service with
    /// `replicas = 3`), and the last one to connect must not re-shape a
    /// stream the others rely on, least of all cut its replicas. A mismatch
    /// is logged; changing a live stream is an operator's deliberate act
    /// (`nats stream edit`).
    async fn ensure_streams(&self) -> Result<(), BusError> {
        for config in [self.stream_config(), self.dead_letter_stream_config()] {
            let name = config.name.clone();
            if !self.inner.options.create_streams {
                self.inner.js.get_stream(&name).await.map_err(|e| {
                    BusError::Unavailable(format!(
                        "no stream {name} on this NATS system yet ({e}); start the services first"
                    ))
                })?;
                continue;
            }
            let wanted = (config.num_replicas, config.max_age, config.duplicate_window);
            let stream = self.inner.js.get_or_create_stream(config).await.map_err(|e| {
                let text = format!("cannot create stream {name}: {e}");
                match e.kind() {
                    jetstream::context::CreateStreamErrorKind::JetStream(ref api) => api_error(api, text),
                    _ => BusError::Unavailable(text),
                }
            })?;
            let actual = &stream.cached_info().config;
            if (actual.num_replicas, actual.max_age, actual.duplicate_window) != wanted {
                tracing::warn!(
                    stream = %name, replicas = actual.num_replicas, wanted_replicas = wanted.0,
                    max_age_secs = actual.max_age.as_secs(), wanted_max_age_secs = wanted.1.as_secs(),
                    "the stream exists with other settings than this process's; leaving it as it is"
                );
            }
        }
        Ok(())
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: STREAM.to_owned(),
            description: Some("Every bazaar bus message (commands and events), by type: bazaar.<type>".into()),
            subjects: vec![format!("{}>", crate::SUBJECT_PREFIX)],
            storage: StorageType::File,
            num_replicas: self.inner.options.replicas,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_age: self.inner.options.max_age,
            max_bytes: self.inner.options.max_bytes.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            max_messages: -1,
            duplicate_window: self.inner.options.duplicate_window,
            ..Default::default()
        }
    }

    fn dead_letter_stream_config(&self) -> stream::Config {
        stream::Config {
            name: DLQ_STREAM.to_owned(),
            description: Some("Dead letters of the bazaar bus: bazaar-dlq.<group>.<type>".into()),
            subjects: vec![format!("{DLQ_PREFIX}.>")],
            storage: StorageType::File,
            num_replicas: self.inner.options.replicas,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_age: self.inner.options.dead_letter_max_age,
            max_bytes: -1,
            max_messages: -1,
            duplicate_window: self.inner.options.duplicate_window,
            ..Default::default()
        }
    }

    /// Stores `batch` durably, in order. Envelope ids already stored are skipped.
    ///
    /// The publishes are pipelined: all are sent, then every acknowledgement
    /// is awaited. Any failure fails the whole call; publishing the batch
    /// again is safe, since the stream drops the ids it already has.
    pub async fn publish(&self, batch: &[Envelope]) -> Result<(), BusError> {
        // Refuse a bad batch before any of it is sent.
        batch.iter().try_for_each(|envelope| validate_type(&envelope.message_type))?;
        let mut acks = Vec::with_capacity(batch.len());
        for envelope in batch {
            let payload = serde_json::to_vec(envelope)?;
            let message = PublishMessage::build().payload(payload.into()).message_id(envelope.id.to_string());
            let ack = self
                .inner
                .js
                .send_publish(envelope.bus_subject(), message)
                .await
                .map_err(|e| BusError::Unavailable(format!("publishing {}: {e}", envelope.id)))?;
            acks.push(ack.into_future());
        }
        for outcome in futures_util::future::join_all(acks).await {
            outcome.map_err(|e| BusError::Unavailable(format!("JetStream did not confirm a publish: {e}")))?;
        }
        Ok(())
    }

    /// Creates the group's durable pull consumer, or updates its types and
    /// lease. Idempotent. A new group starts from the oldest stored message;
    /// a type added to an existing group is delivered from then on (the
    /// group's position in the stream does not go back).
    pub async fn subscribe(&self, subscription: &Subscription) -> Result<(), BusError> {
        let group = &subscription.group;
        validate_group(group)?;
        let mut filters = subscription
            .types
            .iter()
            .map(|t| validate_type(t).map(|()| bus_subject(t)))
            .collect::<Result<Vec<_>, _>>()?;
        filters.sort();
        filters.dedup();
        filters.push(replay_filter(group));
        let config = pull::Config {
            durable_name: Some(group.clone()),
            description: Some(format!("bazaar consumer group {group}")),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: subscription.ack_wait,
            filter_subjects: filters,
            max_ack_pending: self.inner.options.max_ack_pending,
            ..Default::default()
        };
        let consumer = self
            .inner
            .js
            .create_consumer_on_stream(config, STREAM)
            .await
            .map_err(|e| consumer_error(e, &format!("cannot create or update consumer group {group}")))?;
        lock(&self.inner.consumers).insert(group.clone(), consumer);
        Ok(())
    }

    /// The pull consumer of `group`, from this process's cache or the server.
    async fn consumer(&self, group: &str) -> Result<PullConsumer, BusError> {
        if let Some(consumer) = lock(&self.inner.consumers).get(group).cloned() {
            return Ok(consumer);
        }
        validate_group(group)?;
        let consumer: PullConsumer = self.inner.js.get_consumer_from_stream(group, STREAM).await.map_err(|e| {
            if matches!(e.kind(), async_nats::jetstream::stream::ConsumerErrorKind::JetStream(ref api)
                if api.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND)
            {
                BusError::Rejected(format!("no consumer group {group}: subscribe it first"))
            } else {
                consumer_error(e, &format!("cannot look up consumer group {group}"))
            }
        })?;
        lock(&self.inner.consumers).insert(group.to_owned(), consumer.clone());
        Ok(consumer)
    }

    /// Up to `max` deliveries for `group`, waiting up to `wait` for the first one.
    pub async fn fetch(&self, group: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let consumer = self.consumer(group).await?;
        let mut messages = self.pull_available(&consumer, max).await?;
        if messages.is_empty()
            && wait >= MIN_WAIT
            && let Some(first) = self.pull_one_waiting(&consumer, wait).await?
        {
            messages.push(first);
            if max > 1 {
                // The first message is already leased to us: an error now must not lose it.
                match self.pull_available(&consumer, max - 1).await {
                    Ok(more) => messages.extend(more),
                    Err(error) => tracing::warn!(group, %error, "fetching after the first message failed"),
                }
            }
        }
        let mut deliveries = Vec::with_capacity(messages.len());
        for message in messages {
            if let Some(delivery) = into_delivery(group, message).await {
                deliveries.push(delivery);
            }
        }
        Ok(deliveries)
    }

    /// What the consumer has for us right now, up to `max`, without leaving a
    /// request open at the server.
    async fn pull_available(&self, consumer: &PullConsumer, max: usize) -> Result<Vec<jetstream::Message>, BusError> {
        let collect = async {
            let mut batch = consumer
                .fetch()
                .max_messages(max)
                .messages()
                .await
                .map_err(|e| BusError::Unavailable(format!("pull request failed: {e}")))?;
            collect_batch(&mut batch).await
        };
        tokio::time::timeout(self.inner.options.request_timeout, collect)
            .await
            .map_err(|_| BusError::Unavailable("no answer to a pull request".into()))?
    }

    /// Waits up to `wait` for one message with a pull request that expires then.
    async fn pull_one_waiting(
        &self,
        consumer: &PullConsumer,
        wait: Duration,
    ) -> Result<Option<jetstream::Message>, BusError> {
        let collect = async {
            let mut batch = consumer
                .batch()
                .max_messages(1)
                .expires(wait)
                .messages()
                .await
                .map_err(|e| BusError::Unavailable(format!("pull request failed: {e}")))?;
            collect_batch(&mut batch).await
        };
        match tokio::time::timeout(wait + EXPIRY_GRACE, collect).await {
            Ok(messages) => Ok(messages?.into_iter().next()),
            // The server's expiry notice was lost (a dropped connection): treat as nothing there.
            Err(_) => Ok(None),
        }
    }

    /// Ends these deliveries, each confirmed by the server.
    pub async fn ack(&self, group: &str, deliveries: &[Delivery]) -> Result<(), BusError> {
        let acks = deliveries
            .iter()
            .map(|delivery| async move { confirm(message_of(group, delivery)?, AckKind::Ack, "ack").await });
        futures_util::future::join_all(acks).await.into_iter().collect()
    }

    /// Hands a delivery back, to be delivered again (attempt raised) after `delay`.
    pub async fn nak(&self, group: &str, delivery: &Delivery, delay: Duration) -> Result<(), BusError> {
        let kind = if delay.is_zero() { AckKind::Nak(None) } else { AckKind::Nak(Some(delay)) };
        confirm(message_of(group, delivery)?, kind, "nak").await
    }

    /// Moves a delivery to `BAZAAR_DLQ` with the handler's last `error`, then
    /// terminates it in the group so it is not delivered again.
    ///
    /// The dead letter's `Nats-Msg-Id` is `<group>.<envelope id>.<stream
    /// sequence>`: when the process dies between storing the dead letter and
    /// terminating the delivery, the redelivered message is dead-lettered
    /// under the same id and the duplicate window drops the copy. The stream
    /// sequence is in it because a replayed message is a new stream message,
    /// and if it dies again that is a new dead letter, not a duplicate.
    pub async fn dead_letter(&self, group: &str, delivery: &Delivery, error: &str) -> Result<(), BusError> {
        let message = message_of(group, delivery)?;
        let sequence =
            message.info().map_err(|e| BusError::Rejected(format!("not a JetStream delivery: {e}")))?.stream_sequence;
        let envelope = &delivery.envelope;
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, format!("{group}.{}.{sequence}", envelope.id).as_str());
        headers.insert(HEADER_GROUP, group);
        headers.insert(HEADER_ATTEMPTS, HeaderValue::from(delivery.attempt));
        headers.insert(HEADER_ERROR, header_text(error));
        let subject = format!("{DLQ_PREFIX}.{group}.{}", envelope.message_type);
        let publish = PublishMessage::build().payload(message.payload.clone()).headers(headers);
        self.inner
            .js
            .send_publish(subject, publish)
            .await
            .map_err(|e| BusError::Unavailable(format!("storing dead letter {}: {e}", envelope.id)))?
            .await
            .map_err(|e| {
                BusError::Unavailable(format!("JetStream did not confirm dead letter {}: {e}", envelope.id))
            })?;
        confirm(message, AckKind::Term, "terminate").await
    }

    /// Dead letters, oldest first, of one group or all, up to `limit`.
    pub async fn dead_letters(&self, group: Option<&str>, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let filter = match group {
            Some(group) => {
                validate_group(group)?;
                format!("{DLQ_PREFIX}.{group}.>")
            }
            None => format!("{DLQ_PREFIX}.>"),
        };
        let dlq = self.dead_letter_stream().await?;
        let mut letters = Vec::new();
        let mut next = 1;
        while letters.len() < limit {
            let message = match dlq.get_first_raw_message_by_subject(&filter, next).await {
                Ok(message) => message,
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(BusError::Unavailable(format!("reading dead letters: {e}"))),
            };
            next = message.sequence + 1;
            match dead_letter_from(message) {
                Ok(letter) => letters.push(letter),
                Err(error) => tracing::warn!(%error, "skipping an unreadable dead letter"),
            }
        }
        Ok(letters)
    }

    /// One dead letter by id (its sequence in `BAZAAR_DLQ`).
    pub async fn dead_letter_by_id(&self, id: &str) -> Result<DeadLetter, BusError> {
        let message = self.dead_letter_message(id).await?;
        dead_letter_from(message)
    }

    /// Delivers a dead letter again to the group it died in, and only that
    /// group, as a fresh first attempt, and removes it from the DLQ.
    ///
    /// It is published to `bazaar.replay.<group>.<type>` with message id
    /// `<envelope id>.replay.<dead letter id>`, so replaying again after a
    /// crash between the publish and the removal is dropped as a duplicate.
    pub async fn replay(&self, id: &str) -> Result<(), BusError> {
        let message = self.dead_letter_message(id).await?;
        let sequence = message.sequence;
        let letter = dead_letter_from(message.clone())?;
        validate_group(&letter.group)?;
        let subject =
            format!("{}{REPLAY_TOKEN}.{}.{}", crate::SUBJECT_PREFIX, letter.group, letter.envelope.message_type);
        let publish = PublishMessage::build()
            .payload(message.payload)
            .message_id(format!("{}.{REPLAY_TOKEN}.{sequence}", letter.envelope.id));
        self.inner
            .js
            .send_publish(subject, publish)
            .await
            .map_err(|e| BusError::Unavailable(format!("replaying dead letter {id}: {e}")))?
            .await
            .map_err(|e| BusError::Unavailable(format!("JetStream did not confirm the replay of {id}: {e}")))?;
        let dlq = self.dead_letter_stream().await?;
        match dlq.delete_message(sequence).await {
            Ok(_) => Ok(()),
            // Already gone: a concurrent replay of the same dead letter removed it.
            Err(e) if matches!(e.kind(), stream::DeleteMessageErrorKind::JetStream(ref api) if api.code() == 400 || api.code() == 404) => {
                Ok(())
            }
            Err(e) => Err(BusError::Unavailable(format!("removing replayed dead letter {id}: {e}"))),
        }
    }

    async fn dead_letter_stream(&self) -> Result<jetstream::stream::Stream<()>, BusError> {
        self.inner
            .js
            .get_stream_no_info(DLQ_STREAM)
            .await
            .map_err(|e| BusError::Unavailable(format!("stream {DLQ_STREAM}: {e}")))
    }

    async fn dead_letter_message(&self, id: &str) -> Result<StreamMessage, BusError> {
        let sequence: u64 = id.parse().map_err(|_| BusError::NotFound(id.to_owned()))?;
        let dlq = self.dead_letter_stream().await?;
        match dlq.get_raw_message(sequence).await {
            Ok(message) => Ok(message),
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Err(BusError::NotFound(id.to_owned())),
            Err(e) => Err(BusError::Unavailable(format!("reading dead letter {id}: {e}"))),
        }
    }

    /// Sends a query and waits up to `timeout` for its reply. With no
    /// responder subscribed at all, NATS says so at once, and that is a
    /// [`BusError::Timeout`] too (no reply), without the wait.
    pub async fn request(&self, query: &Envelope, timeout: Duration) -> Result<Envelope, BusError> {
        validate_type(&query.message_type)?;
        let payload = serde_json::to_vec(query)?;
        let request = async_nats::Request::new().payload(payload.into()).timeout(Some(timeout));
        let timed_out = || BusError::Timeout {
            message_type: query.message_type.clone(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        match self.inner.client.send_request(query_subject(&query.message_type), request).await {
            Ok(reply) => Ok(serde_json::from_slice(&reply.payload)?),
            Err(e) => match e.kind() {
                async_nats::RequestErrorKind::TimedOut | async_nats::RequestErrorKind::NoResponders => Err(timed_out()),
                _ => Err(BusError::Unavailable(format!("query {}: {e}", query.message_type))),
            },
        }
    }

    /// Up to `max` queries of `types` for this responder, waiting up to `wait`
    /// for the first. The first call for a set of types subscribes to them in
    /// the responders' queue group, so each query goes to one responder.
    pub async fn fetch_queries(
        &self,
        types: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<IncomingQuery>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let responder = self.responder(types).await?;
        let mut subscriptions = responder.lock().await;
        let mut queries = Vec::new();
        let Ok(Some(first)) = tokio::time::timeout(wait, subscriptions.next()).await else {
            return Ok(queries);
        };
        let mut next = Some(first);
        while let Some(message) = next.take() {
            if let Some(query) = into_query(message) {
                queries.push(query);
            }
            if queries.len() < max {
                next = subscriptions.next().now_or_never().flatten();
            }
        }
        Ok(queries)
    }

    /// The responder subscription for `types`, subscribing on first use.
    async fn responder(&self, types: &[String]) -> Result<Responder, BusError> {
        let mut key = types.to_vec();
        key.sort();
        key.dedup();
        let mut responders = self.inner.responders.lock().await;
        if let Some(responder) = responders.get(&key) {
            return Ok(Arc::clone(responder));
        }
        let mut subscriptions = SelectAll::new();
        for message_type in &key {
            validate_type(message_type)?;
            let subscriber = self
                .inner
                .client
                .queue_subscribe(query_subject(message_type), RESPONDERS.to_owned())
                .await
                .map_err(|e| BusError::Unavailable(format!("subscribing to queries {message_type}: {e}")))?;
            subscriptions.push(subscriber);
        }
        // A round trip to the server, so the subscriptions are in place there
        // (and queries find this responder) before the first fetch returns.
        self.inner.client.flush().await.map_err(|e| BusError::Unavailable(format!("subscribing to queries: {e}")))?;
        let responder = Arc::new(tokio::sync::Mutex::new(subscriptions));
        responders.insert(key, Arc::clone(&responder));
        Ok(responder)
    }

    /// Answers `query`. A reply after the requester's deadline is dropped.
    pub async fn reply(&self, query: &IncomingQuery, reply: &Envelope) -> Result<(), BusError> {
        let payload = serde_json::to_vec(reply)?;
        self.inner
            .client
            .publish(query.reply_to.clone(), payload.into())
            .await
            .map_err(|e| BusError::Unavailable(format!("replying to query {}: {e}", query.envelope.id)))
    }
}

/// Takes a pull request's messages until it ends. An error after some
/// messages ends it quietly: those messages are leased to us and must be handled.
async fn collect_batch(batch: &mut pull::Batch) -> Result<Vec<jetstream::Message>, BusError> {
    let mut messages = Vec::new();
    while let Some(item) = batch.next().await {
        match item {
            Ok(message) => messages.push(message),
            Err(error) if messages.is_empty() => {
                return Err(BusError::Unavailable(format!("pull request failed: {error}")));
            }
            Err(error) => {
                tracing::debug!(%error, "pull request ended early");
                break;
            }
        }
    }
    Ok(messages)
}

/// A JetStream message as a delivery. A message that is not an envelope can
/// never be handled, so it is terminated (and logged) instead of coming back forever.
async fn into_delivery(group: &str, message: jetstream::Message) -> Option<Delivery> {
    let attempt = match message.info() {
        Ok(info) => u32::try_from(info.delivered).unwrap_or(u32::MAX),
        Err(error) => {
            tracing::error!(group, %error, "a pulled message has no JetStream metadata; dropping it");
            return None;
        }
    };
    match serde_json::from_slice::<Envelope>(&message.payload) {
        Ok(envelope) => Some(Delivery { envelope, attempt, handle: Handle::JetStream(Box::new(message)) }),
        Err(error) => {
            tracing::error!(group, subject = %message.subject, %error, "not a bus envelope; terminating it");
            if let Err(error) = message.ack_with(AckKind::Term).await {
                tracing::warn!(group, %error, "could not terminate an undecodable message");
            }
            None
        }
    }
}

/// The JetStream message behind `delivery`, checked to belong to `group`.
fn message_of<'a>(group: &str, delivery: &'a Delivery) -> Result<&'a jetstream::Message, BusError> {
    let Handle::JetStream(message) = &delivery.handle else {
        return Err(BusError::Rejected("the delivery came from another transport".into()));
    };
    let consumer = message.info().map(|info| info.consumer.to_owned()).unwrap_or_default();
    if consumer != group {
        return Err(BusError::Rejected(format!("the delivery belongs to group {consumer:?}, not {group:?}")));
    }
    Ok(message)
}

/// Sends `kind` for `message` and waits for the server to confirm it.
async fn confirm(message: &jetstream::Message, kind: AckKind, what: &str) -> Result<(), BusError> {
    message.double_ack_with(kind).await.map_err(|e| BusError::Unavailable(format!("{what} not confirmed: {e}")))
}

/// A query message as an incoming query; `None` (logged) for one that cannot be answered.
fn into_query(message: async_nats::Message) -> Option<IncomingQuery> {
    let Some(reply_to) = message.reply.as_ref().map(ToString::to_string) else {
        tracing::warn!(subject = %message.subject, "a query without a reply subject; ignoring it");
        return None;
    };
    match serde_json::from_slice::<Envelope>(&message.payload) {
        Ok(envelope) => Some(IncomingQuery { envelope, reply_to }),
        Err(error) => {
            tracing::warn!(subject = %message.subject, %error, "a query that is not a bus envelope; ignoring it");
            None
        }
    }
}

/// A `BAZAAR_DLQ` message as a dead letter.
fn dead_letter_from(message: StreamMessage) -> Result<DeadLetter, BusError> {
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
    let envelope: Envelope = serde_json::from_slice(&message.payload)?;
    Ok(DeadLetter {
        id: message.sequence.to_string(),
        group: header(HEADER_GROUP).unwrap_or_default(),
        envelope,
        error: header(HEADER_ERROR).unwrap_or_default(),
        attempts: header(HEADER_ATTEMPTS).and_then(|a| a.parse().ok()).unwrap_or(0),
        dead_at: message.time,
    })
}

/// `text` as a header value: line breaks (which NATS headers cannot hold)
/// become spaces, and it is cut to [`MAX_ERROR_LEN`] bytes.
fn header_text(text: &str) -> HeaderValue {
    let mut flat: String = text.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
    if flat.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !flat.is_char_boundary(end) {
            end -= 1;
        }
        flat.truncate(end);
    }
    // Cannot fail: the only characters a header value rejects were replaced above.
    HeaderValue::from_str(&flat).unwrap_or_default()
}

/// The subject the queries of `message_type` travel on.
fn query_subject(message_type: &str) -> String {
    format!("{QUERY_PREFIX}.{message_type}")
}

/// The filter that lets replays of `group`'s dead letters reach its consumer.
fn replay_filter(group: &str) -> String {
    format!("{}{REPLAY_TOKEN}.{group}.>", crate::SUBJECT_PREFIX)
}

/// A group name is one subject token and a consumer name (the rule all transports share).
fn validate_group(group: &str) -> Result<(), BusError> {
    crate::check_group_name(group)
        .map_err(|problem| BusError::Rejected(format!("invalid consumer group name {group:?}: {problem}")))
}

/// A message type becomes subject tokens (the rule all transports share).
fn validate_type(message_type: &str) -> Result<(), BusError> {
    crate::check_message_type(message_type)
        .map_err(|problem| BusError::Rejected(format!("invalid message type {message_type:?}: {problem}")))
}

/// A JetStream API error: the server refused (4xx) or could not serve (5xx).
fn api_error(error: &jetstream::Error, text: String) -> BusError {
    if (400..500).contains(&error.code()) { BusError::Rejected(text) } else { BusError::Unavailable(text) }
}

fn consumer_error(error: jetstream::stream::ConsumerError, context: &str) -> BusError {
    let text = format!("{context}: {error}");
    match error.kind() {
        jetstream::stream::ConsumerErrorKind::JetStream(ref api) => api_error(api, text),
        jetstream::stream::ConsumerErrorKind::InvalidName => BusError::Rejected(text),
        _ => BusError::Unavailable(text),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent whatever panicked while holding them: each update is one insert.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_single_subject_tokens() {
        assert!(validate_group("inventory").is_ok());
        assert!(validate_group("web-bff_2").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>"] {
            assert!(matches!(validate_group(bad), Err(BusError::Rejected(_))), "{bad:?}");
        }
    }

    #[test]
    fn message_types_must_make_literal_subjects_outside_the_replay_space() {
        assert!(validate_type("orders.order-placed.v1").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a.*.b", "a.>", "a b", "replay.x.v1"] {
            assert!(matches!(validate_type(bad), Err(BusError::Rejected(_))), "{bad:?}");
        }
    }

    #[test]
    fn queries_and_dead_letters_travel_outside_the_stored_subjects() {
        let stored = crate::SUBJECT_PREFIX;
        assert!(!query_subject("catalog.product.v1").starts_with(stored));
        assert!(!format!("{DLQ_PREFIX}.g.t").starts_with(stored));
        assert_eq!(replay_filter("inventory"), "bazaar.replay.inventory.>");
    }

    #[test]
    fn handler_errors_become_single_line_bounded_headers() {
        assert_eq!(header_text("line one\r\nline two").as_str(), "line one  line two");
        let long = "é".repeat(MAX_ERROR_LEN);
        let value = header_text(&long);
        assert!(value.as_str().len() <= MAX_ERROR_LEN);
        assert!(value.as_str().chars().all(|c| c == 'é'));
    }

    #[test]
    fn default_options_suit_a_single_node() {
        let options = JetStreamOptions::default();
        assert_eq!(options.replicas, 1);
        assert!(options.duplicate_window >= Duration::from_secs(120));
        assert!(options.max_age > options.duplicate_window);
    }
}
