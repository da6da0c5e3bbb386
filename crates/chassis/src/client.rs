//! The outgoing HTTP client every service uses for calls to other services:
//! pooled keep-alive connections, a timeout, and the W3C `traceparent` of the
//! current request on every call, so the callee's log lines join the trace.

use std::time::Duration;

/// A shared HTTP client for calls to other bazaar processes.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    /// A client whose calls give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let inner = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self { inner }
    }

    /// A GET request carrying the trace context.
    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, url)
    }

    /// A request of any method carrying the trace context.
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.inner.request(method, url).header(crate::trace::HEADER, crate::trace::outgoing_header())
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}
