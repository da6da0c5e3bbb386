//! Reading the JSON log lines every process writes (`timestamp`, `level`,
//! `service`, `traceId`, `spanId`, `message`, `metadata`): parsing them,
//! wrapping lines that are not JSON (a panic message), filtering them for
//! `bazaar logs`, merging several files into one timeline, and rendering a
//! line for a person to read.

use std::fmt;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The severity of a log line, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    /// Step-by-step detail.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the process survived.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// Reads a level as processes write it; unknown names are `None`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "trace" => Some(Self::Trace),
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warn" | "warning" => Some(Self::Warn),
            "error" | "fatal" => Some(Self::Error),
            _ => None,
        }
    }

    /// The name written in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Padding applies so columns line up in the terminal.
        f.pad(self.as_str())
    }
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The line exactly as stored.
    pub raw: String,
    /// When it was written, if the line says so in RFC 3339.
    pub timestamp: Option<OffsetDateTime>,
    /// Its severity; lines without a known level count as `info`.
    pub level: Level,
    /// The process that wrote it (`catalog-1`).
    pub service: String,
    /// The trace it belongs to, if any.
    pub trace_id: Option<String>,
    /// The human-readable message.
    pub message: String,
    /// Every other field, as the process wrote it.
    pub metadata: Map<String, Value>,
}

impl Record {
    /// Parses a stored line. `fallback_service` names the process when the line
    /// does not (taken from the file name). Lines that are not JSON objects are `None`.
    pub fn parse(line: &str, fallback_service: &str) -> Option<Self> {
        let Value::Object(object) = serde_json::from_str::<Value>(line).ok()? else {
            return None;
        };
        let text = |key: &str| object.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        Some(Self {
            raw: line.to_owned(),
            timestamp: text("timestamp").and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok()),
            level: text("level").and_then(|l| Level::parse(&l)).unwrap_or(Level::Info),
            service: text("service").unwrap_or_else(|| fallback_service.to_owned()),
            trace_id: text("traceId"),
            message: text("message").unwrap_or_default(),
            metadata: object.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default(),
        })
    }

    /// The line for a person: `timestamp service level [traceId] message {metadata}`.
    pub fn render(&self) -> String {
        let timestamp = self.timestamp.and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_else(|| "-".to_owned());
        let mut out = format!("{timestamp} {} {:<5}", self.service, self.level);
        if let Some(trace) = &self.trace_id {
            out.push_str(&format!(" [{trace}]"));
        }
        out.push(' ');
        out.push_str(&self.message);
        if !self.metadata.is_empty() {
            out.push(' ');
            out.push_str(&Value::Object(self.metadata.clone()).to_string());
        }
        out
    }

    /// The short form shown while `bazaar up` runs: `level message`, plus the
    /// fields of warnings and errors, which usually carry the reason.
    pub fn summary(&self) -> String {
        let mut out = format!("{:<5} {}", self.level, self.message);
        if self.level >= Level::Warn {
            let fields: Map<String, Value> = self
                .metadata
                .iter()
                .filter(|(k, _)| k.as_str() != "target")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !fields.is_empty() {
                out.push(' ');
                out.push_str(&Value::Object(fields).to_string());
            }
        }
        out
    }
}

/// Wraps a line that is not JSON (a panic message, a start-up error) into a
/// log line of level `error` so the stored file stays one JSON object per line.
pub fn wrap_plain(line: &str, service: &str, stream: &str, now: OffsetDateTime) -> String {
    json!({
        "timestamp": now.format(&Rfc3339).unwrap_or_default(),
        "level": Level::Error.as_str(),
        "service": service,
        "traceId": null,
        "spanId": null,
        "message": line,
        "metadata": {"stream": stream},
    })
    .to_string()
}

/// Builds a log line in the shape every process writes, for the supervisor's own lines.
pub fn line(service: &str, level: Level, message: &str, metadata: Map<String, Value>, now: OffsetDateTime) -> String {
    json!({
        "timestamp": now.format(&Rfc3339).unwrap_or_default(),
        "level": level.as_str(),
        "service": service,
        "traceId": null,
        "spanId": null,
        "message": message,
        "metadata": metadata,
    })
    .to_string()
}

/// Whether a line's `service` (`catalog-2`) is `wanted`: the exact process
/// (`catalog-2`) or any instance of the service (`catalog`).
pub fn service_matches(service: &str, wanted: &str) -> bool {
    if service == wanted {
        return true;
    }
    service
        .strip_prefix(wanted)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What `bazaar logs` keeps.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only lines of this service or process.
    pub service: Option<String>,
    /// Only lines of this trace (case-insensitive).
    pub trace_id: Option<String>,
    /// Only lines at least this severe.
    pub min_level: Option<Level>,
    /// Only lines containing this text anywhere (case-insensitive).
    pub grep: Option<String>,
}

impl Filter {
    /// Whether `record` passes every condition that is set.
    pub fn matches(&self, record: &Record) -> bool {
        self.service.as_deref().is_none_or(|s| service_matches(&record.service, s))
            && self
                .trace_id
                .as_deref()
                .is_none_or(|t| record.trace_id.as_deref().is_some_and(|id| id.eq_ignore_ascii_case(t)))
            && self.min_level.is_none_or(|min| record.level >= min)
            && self.grep.as_deref().is_none_or(|g| record.raw.to_lowercase().contains(&g.to_lowercase()))
    }
}

/// Merges the lines of several files into one timeline. Each file is in the
/// order it was written; a line without a readable timestamp keeps its place
/// after the line before it in its file. Equal timestamps keep file order.
pub fn merge(files: Vec<Vec<Record>>) -> Vec<Record> {
    let mut keyed = Vec::new();
    for (file, records) in files.into_iter().enumerate() {
        let mut last = None;
        for (index, record) in records.into_iter().enumerate() {
            let at = record.timestamp.or(last);
            last = at;
            keyed.push((at, file, index, record));
        }
    }
    // `None` sorts first: such lines come before anything that was timed.
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    keyed.into_iter().map(|(_, _, _, record)| record).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn line_at(service: &str, at: &str, level: &str, message: &str) -> String {
        json!({"timestamp": at, "level": level, "service": service, "traceId": null, "spanId": null,
               "message": message, "metadata": {"target": "x"}})
        .to_string()
    }

    fn record(service: &str, at: &str, level: &str, message: &str) -> Record {
        Record::parse(&line_at(service, at, level, message), "file").unwrap_or_else(|| panic!("unparsable"))
    }

    #[test]
    fn parses_the_documented_fields() {
        let raw = r#"{"timestamp":"2025-03-01T10:00:00.250Z","level":"warn","service":"catalog-2","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","message":"slow query","metadata":{"ms":612}}"#;
        let record = Record::parse(raw, "ignored").unwrap_or_else(|| panic!("unparsable"));
        assert_eq!(record.timestamp, Some(datetime!(2025-03-01 10:00:00.250 UTC)));
        assert_eq!(record.level, Level::Warn);
        assert_eq!(record.service, "catalog-2");
        assert_eq!(record.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(record.message, "slow query");
        assert_eq!(record.metadata["ms"], 612);
        assert_eq!(record.raw, raw);
    }

    #[test]
    fn a_line_that_is_not_json_is_not_a_record() {
        assert!(Record::parse("thread 'main' panicked at src/main.rs:1:1", "x").is_none());
        assert!(Record::parse("[1,2]", "x").is_none());
    }

    #[test]
    fn missing_service_comes_from_the_file_and_missing_level_counts_as_info() {
        let record = Record::parse(r#"{"message":"hi"}"#, "identity-1").unwrap_or_else(|| panic!("unparsable"));
        assert_eq!(record.service, "identity-1");
        assert_eq!(record.level, Level::Info);
        assert_eq!(record.timestamp, None);
    }

    #[test]
    fn a_wrapped_plain_line_is_an_error_record_keeping_the_text() {
        let wrapped = wrap_plain("thread 'main' panicked", "catalog-1", "stderr", datetime!(2025-03-01 10:00 UTC));
        let record = Record::parse(&wrapped, "x").unwrap_or_else(|| panic!("unparsable"));
        assert_eq!(record.level, Level::Error);
        assert_eq!(record.message, "thread 'main' panicked");
        assert_eq!(record.service, "catalog-1");
        assert_eq!(record.metadata["stream"], "stderr");
        assert!(record.timestamp.is_some());
    }

    #[test]
    fn service_filter_matches_the_service_or_one_instance() {
        assert!(service_matches("catalog-1", "catalog"));
        assert!(service_matches("catalog-12", "catalog"));
        assert!(service_matches("catalog-2", "catalog-2"));
        assert!(!service_matches("catalog-2", "catalog-1"));
        assert!(!service_matches("catalog-x", "catalog"));
        assert!(!service_matches("catalogue-1", "catalog"));
        assert!(!service_matches("web-bff-1", "web"));
    }

    #[test]
    fn level_filter_keeps_that_severity_and_above() {
        let filter = Filter { min_level: Some(Level::Warn), ..Filter::default() };
        assert!(!filter.matches(&record("a-1", "2025-01-01T00:00:00Z", "info", "m")));
        assert!(filter.matches(&record("a-1", "2025-01-01T00:00:00Z", "warn", "m")));
        assert!(filter.matches(&record("a-1", "2025-01-01T00:00:00Z", "error", "m")));
    }

    #[test]
    fn trace_and_text_filters_ignore_case() {
        let raw = r#"{"timestamp":"2025-01-01T00:00:00Z","level":"info","service":"a-1","traceId":"ABCDEF","message":"Order Placed","metadata":{}}"#;
        let record = Record::parse(raw, "x").unwrap_or_else(|| panic!("unparsable"));
        let by_trace = Filter { trace_id: Some("abcdef".into()), ..Filter::default() };
        let by_text = Filter { grep: Some("order placed".into()), ..Filter::default() };
        let other_trace = Filter { trace_id: Some("123".into()), ..Filter::default() };
        assert!(by_trace.matches(&record));
        assert!(by_text.matches(&record));
        assert!(!other_trace.matches(&record));
    }

    #[test]
    fn all_conditions_must_hold() {
        let filter = Filter { service: Some("catalog".into()), min_level: Some(Level::Error), ..Filter::default() };
        assert!(!filter.matches(&record("catalog-1", "2025-01-01T00:00:00Z", "info", "m")));
        assert!(!filter.matches(&record("identity-1", "2025-01-01T00:00:00Z", "error", "m")));
        assert!(filter.matches(&record("catalog-1", "2025-01-01T00:00:00Z", "error", "m")));
    }

    #[test]
    fn merge_interleaves_files_by_timestamp() {
        let a = vec![
            record("a-1", "2025-01-01T00:00:01Z", "info", "a1"),
            record("a-1", "2025-01-01T00:00:03Z", "info", "a3"),
        ];
        let b = vec![
            record("b-1", "2025-01-01T00:00:02Z", "info", "b2"),
            record("b-1", "2025-01-01T00:00:04Z", "info", "b4"),
        ];
        let merged: Vec<String> = merge(vec![a, b]).into_iter().map(|r| r.message).collect();
        assert_eq!(merged, ["a1", "b2", "a3", "b4"]);
    }

    #[test]
    fn merge_compares_instants_not_text_across_offsets() {
        let a = vec![record("a-1", "2025-01-01T01:00:00+02:00", "info", "earlier")];
        let b = vec![record("b-1", "2025-01-01T00:00:00Z", "info", "later")];
        let merged: Vec<String> = merge(vec![b, a]).into_iter().map(|r| r.message).collect();
        assert_eq!(merged, ["earlier", "later"]);
    }

    #[test]
    fn merge_keeps_file_order_for_equal_times_and_untimed_lines_follow_their_predecessor() {
        let untimed =
            Record::parse(r#"{"message":"untimed","service":"a-1"}"#, "a-1").unwrap_or_else(|| panic!("unparsable"));
        let a = vec![record("a-1", "2025-01-01T00:00:02Z", "info", "a2"), untimed];
        let b = vec![
            record("b-1", "2025-01-01T00:00:02Z", "info", "b2"),
            record("b-1", "2025-01-01T00:00:03Z", "info", "b3"),
        ];
        let merged: Vec<String> = merge(vec![a, b]).into_iter().map(|r| r.message).collect();
        assert_eq!(merged, ["a2", "untimed", "b2", "b3"]);
    }

    #[test]
    fn render_shows_the_trace_only_when_there_is_one() {
        let raw = r#"{"timestamp":"2025-01-01T00:00:00Z","level":"info","service":"catalog-1","traceId":"abc","message":"read","metadata":{"sku":"X"}}"#;
        let record = Record::parse(raw, "x").unwrap_or_else(|| panic!("unparsable"));
        assert_eq!(record.render(), r#"2025-01-01T00:00:00Z catalog-1 info  [abc] read {"sku":"X"}"#);
        let plain = self::record("catalog-1", "2025-01-01T00:00:00Z", "info", "read");
        assert_eq!(plain.render(), r#"2025-01-01T00:00:00Z catalog-1 info  read {"target":"x"}"#);
    }

    #[test]
    fn summary_is_level_and_message_with_fields_only_for_problems() {
        let info = record("a-1", "2025-01-01T00:00:00Z", "info", "listening");
        assert_eq!(info.summary(), "info  listening");
        let raw = r#"{"level":"error","message":"task failed","metadata":{"target":"t","error":"disk full"}}"#;
        let error = Record::parse(raw, "a-1").unwrap_or_else(|| panic!("unparsable"));
        assert_eq!(error.summary(), r#"error task failed {"error":"disk full"}"#);
    }
}
