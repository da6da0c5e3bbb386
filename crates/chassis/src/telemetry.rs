//! Structured logs: one JSON object per line on stdout with `timestamp`, `level`,
//! `service`, `traceId`, `spanId`, `message` and `metadata` (every other field
//! of the event). `bazaar up` gathers these lines from every process into one
//! place, and `bazaar logs` searches them by service, trace, level or text.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::trace;

/// The JSON line layer.
pub struct JsonLines {
    service: String,
}

impl JsonLines {
    /// A layer that stamps every line with `service`.
    pub fn new(service: impl Into<String>) -> Self {
        Self { service: service.into() }
    }

    /// Renders one event as a JSON line (without the newline).
    fn render(&self, event: &Event<'_>) -> String {
        let mut visitor = FieldVisitor::default();
        event.record(&mut visitor);
        let meta = event.metadata();
        let mut metadata = visitor.fields;
        metadata.insert("target".into(), Value::String(meta.target().to_owned()));
        let ctx = trace::current();
        let line = serde_json::json!({
            "timestamp": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            "level": level_name(meta.level()),
            "service": self.service,
            "traceId": ctx.map(|c| c.trace_id_hex()),
            "spanId": ctx.map(|c| c.span_id_hex()),
            "message": visitor.message,
            "metadata": metadata,
        });
        line.to_string()
    }
}

impl<S: Subscriber> Layer<S> for JsonLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut line = self.render(event);
        line.push('\n');
        // One write call per line keeps lines whole when several threads log.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

#[derive(Default)]
struct FieldVisitor {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for FieldVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.insert(field.name().to_owned(), Value::String(value.to_owned()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.insert(field.name().to_owned(), Value::String(text));
        }
    }
}

/// Installs the JSON line logger for `service` as the global subscriber.
///
/// `filter` is an `EnvFilter` directive (`info`, `info,sqlx=warn`); `RUST_LOG`
/// overrides it. Calling it twice in one process (as tests do) keeps the first.
pub fn init(service: &str, filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let _ = tracing_subscriber::registry().with(filter).with(JsonLines::new(service)).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::TraceContext;
    use std::sync::{Arc, Mutex};

    struct Capture(Arc<Mutex<Vec<String>>>, JsonLines);

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            if let Ok(mut lines) = self.0.lock() {
                lines.push(self.1.render(event));
            }
        }
    }

    #[tokio::test]
    async fn log_line_has_the_documented_fields_and_the_current_trace() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(lines.clone(), JsonLines::new("catalog")));
        let ctx = TraceContext::new_root();
        let _guard = tracing::subscriber::set_default(subscriber);
        ctx.scope(async { tracing::info!(sku = "ELE-0001", count = 3, "product read") }).await;
        let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
        let line: Value = serde_json::from_str(&lines[0]).unwrap_or_default();
        assert_eq!(line["service"], "catalog");
        assert_eq!(line["level"], "info");
        assert_eq!(line["message"], "product read");
        assert_eq!(line["traceId"], ctx.trace_id_hex());
        assert_eq!(line["spanId"], ctx.span_id_hex());
        assert_eq!(line["metadata"]["sku"], "ELE-0001");
        assert_eq!(line["metadata"]["count"], 3);
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
