//! Span export over OTLP/HTTP (JSON encoding) when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: one server span per
//! request each process handles and one client span per call the gateway
//! forwards, all carrying the W3C trace ids of [`crate::trace`], so a
//! collector (Jaeger, Tempo, the OpenTelemetry Collector) shows one request as
//! one trace across the processes.
//!
//! Recording never blocks a request: spans go into a bounded queue that a
//! background task sends in batches; when the queue is full a span is dropped
//! and counted (`otel_spans_dropped_total`).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::trace::TraceContext;

/// Metric: spans dropped because the export queue was full or the collector refused them.
pub const SPANS_DROPPED: &str = "otel_spans_dropped_total";

/// The queue length; past it spans are dropped rather than slowing requests.
const QUEUE: usize = 8_192;
/// The most spans in one export request.
const BATCH: usize = 512;
/// How long a span may wait for its batch to fill.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

static EXPORTER: OnceLock<mpsc::Sender<SpanRecord>> = OnceLock::new();

/// What kind of hop a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Handling an incoming request.
    Server,
    /// Calling another process.
    Client,
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// The hop's ids.
    pub context: TraceContext,
    /// `GET /api/v1/products`.
    pub name: String,
    /// Server or client.
    pub kind: SpanKind,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// The HTTP status (0 when no response came).
    pub status: u16,
    /// Other attributes (`peer.service`, `url.full`).
    pub attributes: Vec<(&'static str, String)>,
}

/// Starts the exporter if the environment names a collector. Call once per process.
pub fn init_from_env(service: &str, instance: &str) {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").ok().or_else(|| {
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
    });
    if let Some(endpoint) = endpoint.filter(|e| !e.is_empty()) {
        init(&endpoint, service, instance);
    }
}

/// Starts the exporter sending to `endpoint` (the full `/v1/traces` URL).
pub fn init(endpoint: &str, service: &str, instance: &str) {
    let (tx, rx) = mpsc::channel(QUEUE);
    if EXPORTER.set(tx).is_err() {
        return;
    }
    let resource = json!({"attributes": [
        attribute("service.name", service),
        attribute("service.instance.id", instance),
        attribute("service.version", crate::VERSION),
    ]});
    tracing::info!(endpoint, "exporting spans over OTLP/HTTP");
    crate::task::spawn("otlp-exporter", export(endpoint.to_owned(), resource, rx));
}

/// Whether spans are being exported (so callers can skip building them).
pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// Queues a finished span for export; drops it if the queue is full.
pub fn record(span: SpanRecord) {
    if let Some(tx) = EXPORTER.get()
        && tx.try_send(span).is_err()
    {
        metrics::counter!(SPANS_DROPPED).increment(1);
    }
}

async fn export(
    endpoint: String,
    resource: Value,
    mut rx: mpsc::Receiver<SpanRecord>,
) -> Result<(), std::convert::Infallible> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let deadline = tokio::time::sleep(FLUSH_EVERY);
        tokio::pin!(deadline);
        while batch.len() < BATCH {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(span) => batch.push(span),
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        if batch.is_empty() {
            if rx.is_closed() {
                return Ok(());
            }
            continue;
        }
        let body = encode(&resource, &batch);
        let sent = client.post(&endpoint).json(&body).send().await;
        if !matches!(&sent, Ok(response) if response.status().is_success()) {
            metrics::counter!(SPANS_DROPPED).increment(batch.len() as u64);
        }
        batch.clear();
    }
}

fn attribute(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn unix_nanos(at: SystemTime) -> String {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default().to_string()
}

/// The OTLP/JSON `ExportTraceServiceRequest` for `spans`.
pub fn encode(resource: &Value, spans: &[SpanRecord]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|span| {
            let mut attributes: Vec<Value> =
                span.attributes.iter().map(|(key, value)| attribute(key, value)).collect();
            if span.status != 0 {
                attributes.push(json!({"key": "http.response.status_code", "value": {"intValue": span.status.to_string()}}));
            }
            // OTLP status: 2 (error) for server errors or no response, else unset.
            let failed = span.status == 0 || span.status >= 500;
            json!({
                "traceId": span.context.trace_id_hex(),
                "spanId": span.context.span_id_hex(),
                "parentSpanId": span.context.parent_span_id.map(|p| TraceContext { span_id: p, ..span.context }.span_id_hex()).unwrap_or_default(),
                "name": span.name,
                "kind": match span.kind { SpanKind::Server => 2, SpanKind::Client => 3 },
                "startTimeUnixNano": unix_nanos(span.start),
                "endTimeUnixNano": unix_nanos(span.end),
                "attributes": attributes,
                "status": {"code": if failed { 2 } else { 0 }},
            })
        })
        .collect();
    json!({"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "bazaar", "version": crate::VERSION}, "spans": spans}]}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_spans_in_the_otlp_json_shape() {
        let parent = TraceContext::new_root();
        let child = parent.child();
        let start = UNIX_EPOCH + Duration::from_secs(1);
        let span = SpanRecord {
            context: child,
            name: "GET /api/v1/products".into(),
            kind: SpanKind::Server,
            start,
            end: start + Duration::from_millis(3),
            status: 503,
            attributes: vec![("peer.service", "catalog".into())],
        };
        let body = encode(&json!({"attributes": []}), &[span]);
        let encoded = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(encoded["traceId"], parent.trace_id_hex());
        assert_eq!(encoded["parentSpanId"], parent.span_id_hex());
        assert_eq!(encoded["kind"], 2);
        assert_eq!(encoded["startTimeUnixNano"], "1000000000");
        assert_eq!(encoded["endTimeUnixNano"], "1003000000");
        assert_eq!(encoded["status"]["code"], 2);
        assert_eq!(encoded["attributes"][1]["value"]["intValue"], "503");
    }
}
