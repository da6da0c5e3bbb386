//! The bus settings every service that publishes or consumes shares
//! (`[<service>.bus]`), and connecting to the transport they name.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::BusError;
use crate::transport::Transport;

/// Which transport carries the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// The embedded broker process (`bazaar serve broker`), at `url`.
    Embedded,
    /// NATS JetStream, at `nats_urls`.
    Jetstream,
}

/// `[<service>.bus]`: where the bus is. `bazaar up` fills these in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    /// `embedded` (default) or `jetstream`.
    pub transport: TransportKind,
    /// The embedded broker's base URL, e.g. `http://127.0.0.1:4300`. Empty:
    /// no bus, and messages wait in the service's outbox until there is one.
    pub url: String,
    /// The NATS servers (any of a cluster), e.g. `["nats://10.0.0.1:4222"]`.
    pub nats_urls: Vec<String>,
    /// Replicas of the JetStream streams (1, or 3 on a cluster).
    pub replicas: usize,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self { transport: TransportKind::Embedded, url: String::new(), nats_urls: Vec::new(), replicas: 1 }
    }
}

impl BusSettings {
    /// Whether a bus is named at all.
    pub fn is_configured(&self) -> bool {
        match self.transport {
            TransportKind::Embedded => !self.url.is_empty(),
            TransportKind::Jetstream => true,
        }
    }

    /// Connects to the configured transport; `None` when no bus is configured.
    pub async fn connect(&self) -> Result<Option<Transport>, BusError> {
        match self.transport {
            TransportKind::Embedded if self.url.is_empty() => Ok(None),
            TransportKind::Embedded => Ok(Some(Transport::Embedded(crate::EmbeddedTransport::new(&self.url)))),
            TransportKind::Jetstream if self.nats_urls.is_empty() => {
                Err(BusError::Rejected("bus.transport is jetstream but bus.nats_urls is empty".into()))
            }
            TransportKind::Jetstream => {
                let options = crate::jetstream::JetStreamOptions { replicas: self.replicas, ..Default::default() };
                let transport = crate::JetStreamTransport::connect(&self.nats_urls, options).await?;
                Ok(Some(Transport::JetStream(transport)))
            }
        }
    }

    /// Adds the embedded broker to a service's `/health` dependencies (a
    /// service without its bus is degraded: its messages wait in the outbox).
    /// JetStream's health belongs to the NATS servers' own monitoring.
    pub fn declare_health(&self, health: chassis::health::HealthBuilder) -> chassis::health::HealthBuilder {
        match self.transport {
            TransportKind::Embedded if !self.url.is_empty() => health.dependency("broker", vec![self.url.clone()]),
            _ => health,
        }
    }
}

/// Adds this process's outbox relay to `service` as a background worker when
/// a bus is configured; without one, the service runs and its messages wait
/// in the outbox (logged once at start). The relay connects in the
/// background, retrying, so a service starts and serves while its bus is down.
pub fn with_relay(
    service: chassis::service::Service,
    settings: &BusSettings,
    outbox: &crate::Outbox,
) -> Result<chassis::service::Service, BusError> {
    if settings.transport == TransportKind::Jetstream && settings.nats_urls.is_empty() {
        return Err(BusError::Rejected("bus.transport is jetstream but bus.nats_urls is empty".into()));
    }
    if !settings.is_configured() {
        tracing::warn!("no bus configured (bus.url is empty): published messages wait in the outbox");
        return Ok(service);
    }
    let settings = settings.clone();
    let outbox = outbox.clone();
    Ok(service.with_worker("outbox-relay", move |shutdown| async move {
        let Some(transport) = connect_until_stopped(&settings, &shutdown).await else { return Ok(()) };
        crate::Relay::new(&outbox, transport, crate::RelayOptions::default()).run(shutdown).await
    }))
}

/// Connects to the configured transport, retrying with backoff until it
/// answers; `None` when shutdown comes first (or nothing is configured).
pub async fn connect_until_stopped(settings: &BusSettings, shutdown: &chassis::server::Shutdown) -> Option<Transport> {
    let backoff = crate::Backoff { base: Duration::from_millis(200), cap: Duration::from_secs(10), jitter: 0.1 };
    let mut attempt = 0;
    loop {
        match settings.connect().await {
            Ok(transport) => return transport,
            Err(error) => {
                attempt += 1;
                let pause = backoff.delay(attempt);
                tracing::warn!(error = %error, retry_in_ms = pause.as_millis() as u64, "cannot reach the bus yet");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.clone().wait() => return None,
                }
            }
        }
    }
}
