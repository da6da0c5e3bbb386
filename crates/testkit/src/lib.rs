//! Test support for bazaar: real dependencies, started and stopped per test.
//! A throwaway PostgreSQL server, the whole platform through the real
//! `bazaar up` binary, and the small helpers every test needs (a free port,
//! polling with a deadline instead of sleeping, skipping loudly when a
//! dependency is not installed, failing instead when `CI=true`).
//!
//! # Layout
//! - [`postgres`]: [`Postgres`], a private PostgreSQL server in a temp dir.
//! - [`nats`]: [`Nats`] and [`NatsCluster`], private JetStream-enabled nats-servers.
//! - [`platform`]: [`Platform`], `bazaar up` in a temp data dir on a free port.
//! - [`service`]: [`RunningService`], one built service in this process on a free port.
//! - `sys`: sending signals to the processes started here.

pub mod nats;
pub mod platform;
pub mod postgres;
pub mod service;
mod sys;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub use nats::{Nats, NatsCluster, NatsError, nats_cluster_or_skip, nats_or_skip};
pub use platform::{Platform, PlatformError, PlatformOptions};
pub use postgres::{Postgres, PostgresError};
pub use service::RunningService;

/// How often [`wait_until`] checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// # Panics
/// When no port can be bound at all (the machine is out of ports).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"))
}

/// Polls `check` until it returns true or `timeout` passes; returns whether it became true.
///
/// Use this instead of sleeping: `assert!(wait_until(Duration::from_secs(5), || async { ... }).await)`.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Whether missing test dependencies must fail the test (`CI=true`) rather than skip it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Reports that a test cannot run because `reason`: a loud `SKIPPED:` line on
/// stderr, or a panic (a failed test) when `CI=true`, where every dependency
/// must be installed.
///
/// # Panics
/// When `CI=true`.
pub fn skip(reason: &str) {
    if in_ci() {
        panic!("{reason}; CI=true, so a missing test dependency fails the test instead of skipping it");
    }
    eprintln!("\n*** SKIPPED: {reason} ***\n");
}

/// The path of executable `name` on `PATH`, or `None` after [`skip`]ping
/// (which panics when `CI=true`). For tests that need a tool such as `nats-server`.
pub fn require(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p)))
        .unwrap_or_default();
    if found.is_none() {
        skip(&format!("{name} not found on PATH"));
    }
    found
}

/// Checks a `/metrics` body with `promtool check metrics` (Prometheus's own
/// linter); skips loudly when promtool is not installed (fails when `CI=true`).
///
/// # Panics
/// When promtool rejects the text, with its complaints.
pub fn assert_promtool_accepts(metrics: &str) {
    use std::io::Write as _;
    let Some(promtool) = require("promtool") else { return };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool does not start: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(metrics.as_bytes()).unwrap_or_else(|e| panic!("writing to promtool: {e}"));
    }
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("promtool: {e}"));
    assert!(
        output.status.success(),
        "promtool rejected the metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A PostgreSQL server for this test, or `None` after [`skip`]ping when its
/// binaries are not installed (a panic when `CI=true`):
/// `let Some(pg) = testkit::postgres_or_skip().await else { return };`
///
/// # Panics
/// When the binaries exist but the server does not start: that is a real failure.
pub async fn postgres_or_skip() -> Option<Postgres> {
    match Postgres::start().await {
        Ok(pg) => Some(pg),
        Err(PostgresError::Missing(looked)) => {
            skip(&format!("PostgreSQL binaries not found ({looked})"));
            None
        }
        Err(e) => panic!("PostgreSQL is installed but did not start: {e}"),
    }
}

/// The `bazaar` binary of this build: `$BAZAAR_BIN` when set, else `bazaar`
/// in the `target/<profile>/` directory the running test executable lives under.
/// (Cargo sets `CARGO_BIN_EXE_bazaar` only for the cli crate's own tests.)
///
/// # Panics
/// When the binary is not there; build it first with `cargo build -p bazaar`.
pub fn bazaar_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BAZAAR_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test executable: {e}"));
    // Test executables live in target/<profile>/deps/; the binary in target/<profile>/.
    let mut candidates =
        exe.ancestors().skip(1).take(3).map(|dir| dir.join(format!("bazaar{}", std::env::consts::EXE_SUFFIX)));
    candidates.find(|p| is_executable(p)).unwrap_or_else(|| {
        panic!(
            "the bazaar binary is not built next to {}; run `cargo build -p bazaar` first or set BAZAAR_BIN",
            exe.display()
        )
    })
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn free_ports_can_be_bound() {
        let port = free_port();
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    }

    #[tokio::test]
    async fn wait_until_returns_as_soon_as_the_condition_holds() {
        let calls = AtomicU32::new(0);
        let became_true =
            wait_until(Duration::from_secs(5), || async { calls.fetch_add(1, Ordering::SeqCst) >= 2 }).await;
        assert!(became_true);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn wait_until_gives_up_at_the_deadline() {
        assert!(!wait_until(Duration::from_millis(120), || async { false }).await);
    }

    #[test]
    fn require_finds_tools_on_the_path() {
        if in_ci() {
            return;
        }
        assert!(require("sh").is_some());
        assert!(require("surely-not-an-installed-tool-4d1f").is_none());
    }
}
