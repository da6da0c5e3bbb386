//! W3C trace context (`traceparent`): read on every incoming request, created
//! when absent, and sent on every outgoing call, so one request is one trace
//! across all the processes it touches.
//!
//! The context of the request being handled lives in a task-local, set by the
//! server middleware around the handler; the log layer and the HTTP client read
//! it from there, so no handler has to pass it along by hand.

use std::fmt;

/// The `traceparent` header name.
pub const HEADER: &str = "traceparent";

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// One hop of a distributed trace: the trace id shared by every hop, this
/// hop's span id, and the id of the span that called it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The 16-byte trace id shared by the whole request.
    pub trace_id: [u8; 16],
    /// The 8-byte id of this hop's span.
    pub span_id: [u8; 8],
    /// The caller's span id, when the request came with a `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// A new root trace, for a request that arrived without a `traceparent`.
    pub fn new_root() -> Self {
        Self { trace_id: random_nonzero(), span_id: random_nonzero(), parent_span_id: None, flags: 1 }
    }

    /// The context of this hop for a request that carried `header`, or a new
    /// root when the header is absent or malformed (the spec says to restart
    /// the trace rather than reject the request).
    pub fn from_incoming(header: Option<&str>) -> Self {
        match header.and_then(Self::parse) {
            Some(parent) => parent.child(),
            None => Self::new_root(),
        }
    }

    /// Parses a `traceparent` header value (version 00; later versions are read
    /// by their first four fields, as the spec asks).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || !is_lower_hex(version) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = decode_hex(trace)?;
        let span_id: [u8; 8] = decode_hex(span)?;
        let [flags]: [u8; 1] = decode_hex(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, span_id, parent_span_id: None, flags })
    }

    /// A child span of this one, for an outgoing call.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: random_nonzero(),
            parent_span_id: Some(self.span_id),
            flags: self.flags,
        }
    }

    /// The `traceparent` header value naming this span.
    pub fn header_value(&self) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), self.flags)
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }

    /// Runs `fut` with this context as the current one.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

/// The trace context of the request this task is handling, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|ctx| *ctx).ok()
}

/// The `traceparent` value to send on an outgoing call: a child of the current
/// span, or a new root when the call is not part of a request.
pub fn outgoing_header() -> String {
    current().map_or_else(TraceContext::new_root, |ctx| ctx.child()).header_value()
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes != [0; N] {
            return bytes;
        }
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn keeps_the_trace_id_of_an_incoming_traceparent_with_a_new_span() {
        let ctx = TraceContext::from_incoming(Some(SAMPLE));
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(ctx.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(ctx.parent_span_id.map(|p| hex(&p)).as_deref(), Some("00f067aa0ba902b7"));
    }

    #[test]
    fn restarts_the_trace_when_traceparent_is_malformed() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "accepted {bad:?}");
            assert!(TraceContext::from_incoming(Some(bad)).parent_span_id.is_none());
        }
    }

    #[test]
    fn accepts_future_versions_by_their_first_fields() {
        let ctx = TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more");
        assert!(ctx.is_some());
    }

    #[tokio::test]
    async fn outgoing_header_continues_the_current_trace() {
        let ctx = TraceContext::new_root();
        let header = ctx.scope(async { outgoing_header() }).await;
        let sent = TraceContext::parse(&header).unwrap_or_else(TraceContext::new_root);
        assert_eq!(sent.trace_id, ctx.trace_id);
        assert_ne!(sent.span_id, ctx.span_id);
    }

    proptest! {
        #[test]
        fn header_round_trips(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(), flags in any::<u8>()) {
            prop_assume!(trace != [0; 16] && span != [0; 8]);
            let ctx = TraceContext { trace_id: trace, span_id: span, parent_span_id: None, flags };
            prop_assert_eq!(TraceContext::parse(&ctx.header_value()), Some(ctx));
        }
    }
}
