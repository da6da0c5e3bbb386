//! Private `nats-server` processes for one test: a single node ([`Nats`]) or
//! a cluster on loopback ([`NatsCluster`]), each node with JetStream on in
//! its own store dir under a temp dir, on free ports. A node can be killed
//! (SIGKILL, as a crash) and restarted on the same ports and store dir, which
//! is what failover tests need. Everything stops and the files go away when
//! the value is dropped.
//!
//! The nodes run with `sync_interval: always`, as production does (see
//! `deploy/nats/nats-server.conf`): a message JetStream acknowledged survives
//! a SIGKILL of the node, so a crash test proves the real guarantee.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a node (or a whole cluster) may take to become ready.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a stopping node may take before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// How many times a start is retried when another process took a port first.
const PORT_ATTEMPTS: usize = 3;
/// The cluster name the nodes of a [`NatsCluster`] share.
const CLUSTER_NAME: &str = "bazaar-test";
/// The environment variable naming a `nats-server` binary to use instead of the one on `PATH`.
const BINARY_ENV: &str = "BAZAAR_NATS_SERVER";

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The `nats-server` binary is not installed; the text says where it was looked for.
    #[error("nats-server not found ({0})")]
    Missing(String),
    /// A step of starting a server failed; the text says which and why.
    #[error("{0}")]
    Setup(String),
    /// A file or process operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A running single-node `nats-server` with JetStream.
#[derive(Debug)]
pub struct Nats {
    node: Node,
    // Removed after the server has stopped: fields drop after `Drop::drop` runs.
    root: TempDir,
}

impl Nats {
    /// Starts a JetStream-enabled server on a free loopback port and waits
    /// until it accepts connections and JetStream is ready.
    ///
    /// Returns [`NatsError::Missing`] when the binary is not installed (see
    /// [`crate::nats_or_skip`] for tests that should then skip).
    pub async fn start() -> Result<Self, NatsError> {
        let binary = find_binary()?;
        let root = tempfile::Builder::new().prefix("bazaar-nats-").tempdir()?;
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let mut node = Node::new(&binary, root.path(), "n0", Ports::pick())?;
            node.write_config(None)?;
            node.spawn()?;
            match node.wait_ready(false).await {
                Ok(()) => return Ok(Self { node, root }),
                Err(error) => {
                    node.kill();
                    last_error = error;
                    if !is_port_clash(&last_error) {
                        break;
                    }
                }
            }
        }
        Err(NatsError::Setup(format!("nats-server did not start: {last_error}")))
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.node.url()
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.node.ports.client
    }

    /// The directory holding the config, the JetStream store and `nats.log`.
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// Kills the server with SIGKILL, as a crash, and waits until it is gone.
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// Starts the server again on the same port and store dir (after [`Nats::kill`])
    /// and waits until it is ready. A running server is killed first.
    pub async fn restart(&mut self) -> Result<(), NatsError> {
        self.node.kill();
        self.node.spawn()?;
        self.node.wait_ready(false).await.map_err(|e| NatsError::Setup(format!("nats-server did not restart: {e}")))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.node.stop();
    }
}

/// A running cluster of JetStream-enabled `nats-server` nodes on loopback.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    // Removed after the servers have stopped: fields drop after `Drop::drop` runs.
    root: TempDir,
}

impl NatsCluster {
    /// Starts `n` nodes (`n0`, `n1`, ...) routed to each other, each with its
    /// own store dir, and waits until every node accepts connections and the
    /// JetStream meta group has a leader.
    ///
    /// Returns [`NatsError::Missing`] when the binary is not installed.
    pub async fn start(n: usize) -> Result<Self, NatsError> {
        if n == 0 {
            return Err(NatsError::Setup("a cluster needs at least one node".into()));
        }
        let binary = find_binary()?;
        let root = tempfile::Builder::new().prefix("bazaar-nats-cluster-").tempdir()?;
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let mut nodes = (0..n)
                .map(|i| Node::new(&binary, root.path(), &format!("n{i}"), Ports::pick()))
                .collect::<Result<Vec<_>, _>>()?;
            let routes: Vec<u16> = nodes.iter().map(|node| node.ports.cluster).collect();
            for node in &mut nodes {
                node.write_config(Some(&routes))?;
                node.spawn()?;
            }
            let mut outcome = Ok(());
            for node in &mut nodes {
                outcome = node.wait_ready(true).await;
                if outcome.is_err() {
                    break;
                }
            }
            match outcome {
                Ok(()) => return Ok(Self { nodes, root }),
                Err(error) => {
                    nodes.iter_mut().for_each(Node::kill);
                    last_error = error;
                    if !is_port_clash(&last_error) {
                        break;
                    }
                }
            }
        }
        Err(NatsError::Setup(format!("the nats-server cluster did not start: {last_error}")))
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never true: [`NatsCluster::start`] refuses zero).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The client URLs of all nodes, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// The client URL of node `i`.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// The server name of node `i` (`n<i>`): what JetStream reports as a stream or consumer leader.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn server_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node named `name`, e.g. the leader JetStream reported.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// The directory holding every node's config, store dir and log.
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// Kills node `i` with SIGKILL, as a crash, and waits until it is gone.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again on the same ports and store dir (after
    /// [`NatsCluster::kill`]) and waits until it is ready and sees the meta leader.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub async fn restart(&mut self, i: usize) -> Result<(), NatsError> {
        let node = &mut self.nodes[i];
        node.kill();
        node.spawn()?;
        node.wait_ready(true).await.map_err(|e| NatsError::Setup(format!("node n{i} did not restart: {e}")))
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.nodes.iter_mut().for_each(Node::stop);
    }
}

/// A single-node server for this test, or `None` after [`crate::skip`]ping when
/// `nats-server` is not installed (a panic when `CI=true`):
/// `let Some(nats) = testkit::nats_or_skip().await else { return };`
///
/// # Panics
/// When the binary exists but the server does not start: that is a real failure.
pub async fn nats_or_skip() -> Option<Nats> {
    match Nats::start().await {
        Ok(nats) => Some(nats),
        Err(NatsError::Missing(looked)) => {
            crate::skip(&format!("nats-server not found ({looked})"));
            None
        }
        Err(e) => panic!("nats-server is installed but did not start: {e}"),
    }
}

/// A cluster of `n` nodes for this test, or `None` after [`crate::skip`]ping
/// when `nats-server` is not installed (a panic when `CI=true`).
///
/// # Panics
/// When the binary exists but the cluster does not start.
pub async fn nats_cluster_or_skip(n: usize) -> Option<NatsCluster> {
    match NatsCluster::start(n).await {
        Ok(cluster) => Some(cluster),
        Err(NatsError::Missing(looked)) => {
            crate::skip(&format!("nats-server not found ({looked})"));
            None
        }
        Err(e) => panic!("nats-server is installed but the cluster did not start: {e}"),
    }
}

/// The ports one node listens on.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    cluster: u16,
    monitor: u16,
}

impl Ports {
    fn pick() -> Self {
        Self { client: crate::free_port(), cluster: crate::free_port(), monitor: crate::free_port() }
    }
}

/// One `nats-server` process and the files it keeps between restarts.
#[derive(Debug)]
struct Node {
    binary: PathBuf,
    name: String,
    dir: PathBuf,
    ports: Ports,
    child: Option<Child>,
}

impl Node {
    fn new(binary: &Path, root: &Path, name: &str, ports: Ports) -> Result<Self, NatsError> {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("store"))?;
        Ok(Self { binary: binary.to_owned(), name: name.to_owned(), dir, ports, child: None })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.ports.client)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("nats-server.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    /// Writes the node's config; `routes` are the cluster ports of every node when clustered.
    fn write_config(&self, routes: Option<&[u16]>) -> Result<(), NatsError> {
        let store = self.dir.join("store");
        let mut config = format!(
            "server_name: {name}\n\
             listen: 127.0.0.1:{client}\n\
             http: 127.0.0.1:{monitor}\n\
             jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n",
            name = self.name,
            client = self.ports.client,
            monitor = self.ports.monitor,
            store = store.display().to_string(),
        );
        if let Some(routes) = routes {
            let routes: Vec<String> = routes.iter().map(|port| format!("nats-route://127.0.0.1:{port}")).collect();
            let _ = write!(
                config,
                "cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{cluster}\n  routes: [{routes}]\n}}\n",
                cluster = self.ports.cluster,
                routes = routes.join(", "),
            );
        }
        std::fs::write(self.config_path(), config)?;
        Ok(())
    }

    fn spawn(&mut self) -> Result<(), NatsError> {
        // Appending keeps the log of a killed run next to the restarted one's.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let child = std::process::Command::new(&self.binary)
            .arg("-c")
            .arg(self.config_path())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| NatsError::Setup(format!("cannot start {}: {e}", self.binary.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls the monitor's `/healthz` (which on a cluster node also requires
    /// contact with the JetStream meta leader) until it answers 200, the
    /// process exits, or the deadline passes. `clustered` also waits for
    /// `/jsz` to name the meta leader.
    async fn wait_ready(&mut self, clustered: bool) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("{} exited ({status}): {}", self.name, self.log_tail()));
            }
            if self.is_ready(clustered).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not ready within {} s: {}",
                    self.name,
                    START_DEADLINE.as_secs(),
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn is_ready(&self, clustered: bool) -> bool {
        let healthy = matches!(monitor_get(self.ports.monitor, "/healthz").await, Some((200, _)));
        if !healthy || !clustered {
            return healthy;
        }
        let Some((200, body)) = monitor_get(self.ports.monitor, "/jsz").await else { return false };
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|jsz| jsz["meta_cluster"]["leader"].as_str().map(|leader| !leader.is_empty()))
            .unwrap_or(false)
    }

    /// The last lines the node logged, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the node gracefully (SIGTERM), then SIGKILL if it takes too long.
    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::sys::stop(child, libc::SIGTERM, STOP_DEADLINE);
        }
    }
}

/// `GET http://127.0.0.1:<port><path>` on a node's monitor port: the status and body.
async fn monitor_get(port: u16, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        // HTTP/1.0 so the server closes the connection after the body and reading to the end suffices.
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let response = String::from_utf8_lossy(&response);
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange).await.ok().flatten()
}

fn is_port_clash(error: &str) -> bool {
    error.contains("address already in use")
}

/// Finds `nats-server`: `$BAZAAR_NATS_SERVER`, else the first executable on `PATH`.
fn find_binary() -> Result<PathBuf, NatsError> {
    if let Some(path) = std::env::var_os(BINARY_ENV) {
        let path = PathBuf::from(path);
        return if crate::is_executable(&path) {
            Ok(path)
        } else {
            Err(NatsError::Missing(format!("${BINARY_ENV} is {} but that is not an executable", path.display())))
        };
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path).map(|dir| dir.join("nats-server")).find(|p| crate::is_executable(p))
        })
        .ok_or_else(|| NatsError::Missing(format!("looked in ${BINARY_ENV} and PATH")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_accepts_connections_and_comes_back_after_a_kill() {
        let Some(mut nats) = nats_or_skip().await else { return };
        let port = nats.port();
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok());
        nats.kill();
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err());
        nats.restart().await.unwrap();
        assert_eq!(nats.port(), port);
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok());
        let config = std::fs::read_to_string(nats.dir().join("n0/nats-server.conf")).unwrap();
        assert!(config.contains("sync_interval: always"), "{config}");
    }

    #[tokio::test]
    async fn a_cluster_elects_a_meta_leader_and_a_killed_node_rejoins() {
        let Some(mut cluster) = nats_cluster_or_skip(3).await else { return };
        assert_eq!(cluster.urls().len(), 3);
        assert_eq!(cluster.index_of("n2"), Some(2));
        cluster.kill(1);
        cluster.restart(1).await.unwrap();
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", cluster.nodes[1].ports.client)).await.is_ok());
    }
}
