//! One built service on a real socket for a test: `spawn_app()` in the
//! zero2prod sense. It binds 127.0.0.1 on a free port, serves until the value
//! is dropped, and says where it listens.

use chassis::server::{Shutdown, ShutdownTrigger};
use chassis::service::Service;

/// A service serving on loopback until dropped.
pub struct RunningService {
    base_url: String,
    _stop: ShutdownTrigger,
}

impl RunningService {
    /// Serves `service` on 127.0.0.1 and a free port.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(name: &'static str, service: Service) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind a loopback port for {name}: {e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{name} has no local address: {e}"));
        let (stop, shutdown) = Shutdown::new();
        chassis::task::spawn(name, service.run(listener, shutdown));
        Self { base_url: format!("http://{address}"), _stop: stop }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}
