//! The client of the embedded broker (`services/broker`): every transport
//! operation is one loopback HTTP/JSON call (batches travel in one request),
//! made with the chassis client so the trace context goes along. The broker
//! answers a publish, ack or nak only after its commit, so an `Ok` here means
//! durable. The API it calls is documented in the broker crate.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::transport::Handle;
use crate::{BusError, DeadLetter, Delivery, Envelope, IncomingQuery, Subscription};

/// How long an ordinary call may take: far beyond a commit, short enough to
/// notice a broker that stopped answering.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// What a long poll may take beyond the wait it asked for.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(30);
/// The most deliveries or queries the broker hands out per fetch by default.
const MAX_FETCH: usize = 1_000;
/// The longest wait the broker accepts by default.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The embedded broker over loopback HTTP.
#[derive(Debug, Clone)]
pub struct EmbeddedTransport {
    base_url: String,
    http: chassis::client::HttpClient,
}

/// A publish, serialised straight from the caller's envelopes.
#[derive(Serialize)]
struct PublishBody<'a> {
    envelopes: &'a [Envelope],
}

#[derive(Serialize)]
struct SeqsBody<'a> {
    seqs: &'a [i64],
}

#[derive(Deserialize)]
struct ProblemBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    detail: String,
}

#[derive(Deserialize)]
struct FetchBody {
    deliveries: Vec<DeliveryBody>,
}

#[derive(Deserialize)]
struct DeliveryBody {
    seq: i64,
    attempt: u32,
    envelope: Envelope,
}

#[derive(Deserialize)]
struct DeadLetterBody {
    id: String,
    group: String,
    envelope: Envelope,
    error: String,
    attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    dead_at: OffsetDateTime,
}

impl From<DeadLetterBody> for DeadLetter {
    fn from(body: DeadLetterBody) -> Self {
        Self {
            id: body.id,
            group: body.group,
            envelope: body.envelope,
            error: body.error,
            attempts: body.attempts,
            dead_at: body.dead_at,
        }
    }
}

#[derive(Deserialize)]
struct DeadLettersBody {
    items: Vec<DeadLetterBody>,
}

#[derive(Deserialize)]
struct EnvelopeBody {
    envelope: Envelope,
}

#[derive(Deserialize)]
struct QueriesBody {
    queries: Vec<QueryBody>,
}

#[derive(Deserialize)]
struct QueryBody {
    reply_to: String,
    envelope: Envelope,
}

/// Why a call to the broker failed.
enum Failure {
    /// No answer: the broker is down, unreachable or too slow.
    Transport(String),
    /// An answer that is not what the API documents.
    Decode(serde_json::Error),
    /// A problem response.
    Status { status: u16, code: String, detail: String },
}

impl Failure {
    fn into_bus_error(self, on_not_found: impl FnOnce(String) -> BusError) -> BusError {
        match self {
            Self::Transport(detail) => BusError::Unavailable(detail),
            Self::Decode(error) => BusError::Codec(error),
            Self::Status { status, code, detail } => {
                let detail = if code.is_empty() { detail } else { format!("{detail} ({code})") };
                match status {
                    404 => on_not_found(detail),
                    408 | 429 | 500..=599 => BusError::Unavailable(detail),
                    _ => BusError::Rejected(detail),
                }
            }
        }
    }
}

/// Writes `segment` so it stays one path segment whatever it contains.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn seq_of(delivery: &Delivery) -> Result<i64, BusError> {
    match &delivery.handle {
        Handle::Embedded { seq } => Ok(*seq),
        Handle::JetStream(_) => {
            Err(BusError::Rejected("a JetStream delivery cannot be settled on the embedded broker".into()))
        }
    }
}

impl EmbeddedTransport {
    /// A client of the broker at `base_url` (`http://127.0.0.1:4222`).
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http: chassis::client::HttpClient::new(CALL_TIMEOUT),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn group_url(&self, group: &str, action: &str) -> String {
        format!("{}/v1/groups/{}{action}", self.base_url, encode(group))
    }

    /// Sends `request`; a success is read as `T`, a failure becomes a
    /// [`BusError`] (`on_not_found` says what a 404 means for this call).
    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        on_not_found: impl FnOnce(String) -> BusError,
    ) -> Result<T, BusError> {
        self.send(request).await.map_err(|failure| failure.into_bus_error(on_not_found))
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, Failure> {
        let response = request.send().await.map_err(|e| Failure::Transport(describe(&e)))?;
        let status = response.status();
        if status.is_success() {
            let bytes = response.bytes().await.map_err(|e| Failure::Transport(describe(&e)))?;
            return serde_json::from_slice(&bytes).map_err(Failure::Decode);
        }
        let problem: ProblemBody = response
            .json()
            .await
            .unwrap_or_else(|_| ProblemBody { code: String::new(), detail: format!("the broker answered {status}") });
        Err(Failure::Status { status: status.as_u16(), code: problem.code, detail: problem.detail })
    }

    fn post<B: Serialize + ?Sized>(&self, url: &str, body: &B) -> reqwest::RequestBuilder {
        self.http.request(reqwest::Method::POST, url).json(body)
    }

    /// Stores `batch` durably, in order. Envelope ids already stored are skipped.
    pub async fn publish(&self, batch: &[Envelope]) -> Result<(), BusError> {
        if batch.is_empty() {
            return Ok(());
        }
        let body = PublishBody { envelopes: batch };
        let _: Value = self.call(self.post(&self.url("/v1/publish"), &body), BusError::Rejected).await?;
        Ok(())
    }

    /// Creates the consumer group, or updates its types and lease. Idempotent.
    pub async fn subscribe(&self, subscription: &Subscription) -> Result<(), BusError> {
        let body = json!({
            "types": subscription.types,
            "ack_wait_ms": millis(subscription.ack_wait).max(1),
        });
        let request = self.http.request(reqwest::Method::PUT, &self.group_url(&subscription.group, "")).json(&body);
        let _: Value = self.call(request, BusError::Rejected).await?;
        Ok(())
    }

    /// Up to `max` deliveries for `group`, waiting up to `wait` for the first one.
    pub async fn fetch(&self, group: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let wait = wait.min(MAX_WAIT);
        let body = json!({ "max": max.min(MAX_FETCH), "wait_ms": millis(wait) });
        let request = self.post(&self.group_url(group, "/fetch"), &body).timeout(wait + LONG_POLL_MARGIN);
        let fetched: FetchBody = self.call(request, BusError::Rejected).await?;
        Ok(fetched
            .deliveries
            .into_iter()
            .map(|d| Delivery { envelope: d.envelope, attempt: d.attempt, handle: Handle::Embedded { seq: d.seq } })
            .collect())
    }

    /// Ends these deliveries: the group is done with them.
    pub async fn ack(&self, group: &str, deliveries: &[Delivery]) -> Result<(), BusError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let seqs = deliveries.iter().map(seq_of).collect::<Result<Vec<_>, _>>()?;
        let body = SeqsBody { seqs: &seqs };
        let _: Value = self.call(self.post(&self.group_url(group, "/ack"), &body), BusError::Rejected).await?;
        Ok(())
    }

    /// Hands a delivery back to be delivered again after `delay`.
    pub async fn nak(&self, group: &str, delivery: &Delivery, delay: Duration) -> Result<(), BusError> {
        let body = json!({ "seqs": [seq_of(delivery)?], "delay_ms": millis(delay) });
        let _: Value = self.call(self.post(&self.group_url(group, "/nak"), &body), BusError::Rejected).await?;
        Ok(())
    }

    /// Moves a delivery to the dead-letter queue with the handler's last `error`.
    pub async fn dead_letter(&self, group: &str, delivery: &Delivery, error: &str) -> Result<(), BusError> {
        let body = json!({ "seq": seq_of(delivery)?, "error": error });
        let _: Value = self.call(self.post(&self.group_url(group, "/dead-letter"), &body), BusError::Rejected).await?;
        Ok(())
    }

    /// Dead letters, oldest first, of one group or all.
    pub async fn dead_letters(&self, group: Option<&str>, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut url = self.url(&format!("/v1/dlq?limit={limit}"));
        if let Some(group) = group {
            url.push_str("&group=");
            url.push_str(&encode(group));
        }
        let listed: DeadLettersBody = self.call(self.http.get(&url), BusError::Rejected).await?;
        Ok(listed.items.into_iter().map(DeadLetter::from).collect())
    }

    /// One dead letter by id.
    pub async fn dead_letter_by_id(&self, id: &str) -> Result<DeadLetter, BusError> {
        let url = self.url(&format!("/v1/dlq/{}", encode(id)));
        let found: DeadLetterBody = self.call(self.http.get(&url), |_| BusError::NotFound(id.to_owned())).await?;
        Ok(found.into())
    }

    /// Delivers a dead letter again to the group it died in, as a fresh first
    /// attempt, and removes it from the DLQ.
    pub async fn replay(&self, id: &str) -> Result<(), BusError> {
        let url = self.url(&format!("/v1/dlq/{}/replay", encode(id)));
        let request = self.http.request(reqwest::Method::POST, &url);
        let _: Value = self.call(request, |_| BusError::NotFound(id.to_owned())).await?;
        Ok(())
    }

    /// Sends a query and waits up to `timeout` for its reply.
    pub async fn request(&self, query: &Envelope, timeout: Duration) -> Result<Envelope, BusError> {
        let timeout_ms = millis(timeout).max(1);
        let body = json!({ "envelope": query, "timeout_ms": timeout_ms });
        let request = self.post(&self.url("/v1/queries"), &body).timeout(timeout + LONG_POLL_MARGIN);
        match self.send::<EnvelopeBody>(request).await {
            Ok(reply) => Ok(reply.envelope),
            Err(Failure::Status { status: 504, .. }) => {
                Err(BusError::Timeout { message_type: query.message_type.clone(), timeout_ms })
            }
            Err(failure) => Err(failure.into_bus_error(BusError::Rejected)),
        }
    }

    /// Up to `max` queries of `types` for this responder, waiting up to `wait` for the first.
    pub async fn fetch_queries(
        &self,
        types: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<IncomingQuery>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let wait = wait.min(MAX_WAIT);
        let body = json!({ "types": types, "max": max.min(MAX_FETCH), "wait_ms": millis(wait) });
        let request = self.post(&self.url("/v1/queries/fetch"), &body).timeout(wait + LONG_POLL_MARGIN);
        let fetched: QueriesBody = self.call(request, BusError::Rejected).await?;
        Ok(fetched.queries.into_iter().map(|q| IncomingQuery { envelope: q.envelope, reply_to: q.reply_to }).collect())
    }

    /// Answers `query`. A reply after the requester's deadline is dropped.
    pub async fn reply(&self, query: &IncomingQuery, reply: &Envelope) -> Result<(), BusError> {
        let url = self.url(&format!("/v1/queries/{}/reply", encode(&query.reply_to)));
        let _: Value = self.call(self.post(&url, &json!({ "envelope": reply })), BusError::Rejected).await?;
        Ok(())
    }
}

/// A transport error in words, with its cause (reqwest's own message omits it).
fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded_so_a_name_cannot_change_the_route() {
        assert_eq!(encode("inventory_2-a.b~"), "inventory_2-a.b~");
        assert_eq!(encode("a/b c?"), "a%2Fb%20c%3F");
        let transport = EmbeddedTransport::new("http://127.0.0.1:4222/");
        assert_eq!(transport.group_url("x/y", "/fetch"), "http://127.0.0.1:4222/v1/groups/x%2Fy/fetch");
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_unavailable() {
        // Port 9 on loopback has nothing listening: the connection is refused at once.
        let transport = EmbeddedTransport::new("http://127.0.0.1:9");
        let outcome = transport.fetch("g", 10, Duration::ZERO).await;
        assert!(matches!(outcome, Err(BusError::Unavailable(_))), "{outcome:?}");
    }
}
