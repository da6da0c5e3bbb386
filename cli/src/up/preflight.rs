//! Checks `bazaar up` makes before it starts anything, each failing with a
//! message that says what to change: the data dir is private and writable, no platform
//! is already running on it, and the gateway's port is free.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use chassis::config::Sources;

use crate::datadir::{self, Secured};
use crate::state::RunState;

/// Why `bazaar up` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The data dir cannot be created or written.
    #[error("the data dir {path} is not usable ({reason}); pass --data-dir with a directory you can write to")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A platform is already running on this data dir.
    #[error(
        "bazaar is already running in {path} (supervisor pid {pid}, gateway {url}); stop it first, or pass another --data-dir"
    )]
    AlreadyRunning {
        /// The data dir.
        path: PathBuf,
        /// The running supervisor.
        pid: u32,
        /// Its gateway.
        url: String,
    },
    /// The gateway's port is taken.
    #[error("port {port} is in use; stop what uses it or pass --port")]
    PortInUse {
        /// The port.
        port: u16,
    },
    /// The gateway's port cannot be bound for another reason.
    #[error("cannot listen on {host}:{port} ({reason}); pass another --port or fix gateway.http.host")]
    PortUnusable {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// Why.
        reason: String,
    },
    /// The state file or configuration could not be read.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Makes `dir` absolute, creates it private to its owner (or tightens it when
/// group or others can read it), creates `logs/`, `run/` and `services/` in
/// it, and proves it is writable with a probe file. Returns the absolute path
/// and what securing it did, for the supervisor to log.
pub fn data_dir(dir: &Path) -> Result<(PathBuf, Secured), PreflightError> {
    let unusable = |reason: String| PreflightError::DataDir { path: dir.to_path_buf(), reason };
    let dir = std::path::absolute(dir).map_err(|e| unusable(e.to_string()))?;
    let unusable = |reason: String| PreflightError::DataDir { path: dir.clone(), reason };
    let secured = datadir::secure(&dir).map_err(|e| unusable(e.to_string()))?;
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe").map_err(|e| unusable(format!("cannot write in it: {e}")))?;
    std::fs::remove_file(&probe).map_err(|e| unusable(format!("cannot remove a file in it: {e}")))?;
    for sub in ["logs", "run", "services"] {
        datadir::create_private(&dir.join(sub)).map_err(|e| unusable(format!("cannot create {sub}/: {e}")))?;
    }
    Ok((dir, secured))
}

/// Refuses to go on when `run/state.json` names a live supervisor; removes a stale file.
pub fn not_running(data_dir: &Path) -> Result<(), PreflightError> {
    let state = RunState::read(data_dir).map_err(anyhow::Error::from)?;
    match state {
        Some(state) if state.supervisor_is_running() => Err(PreflightError::AlreadyRunning {
            path: data_dir.to_path_buf(),
            pid: state.supervisor_pid,
            url: state.gateway_url,
        }),
        Some(_) => Ok(RunState::remove(data_dir).map_err(anyhow::Error::from)?),
        None => Ok(()),
    }
}

/// The gateway's section as far as `up` needs it: only the host it binds.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct EdgeView {
    http: HostView,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct HostView {
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
}

/// The host the edge service will bind: `<edge>.http.host` from the
/// configuration, or every interface when it is not set. Reading it also
/// checks the configuration's sections against `sections`, so a misspelt one
/// stops `up` before any process starts.
pub fn edge_host(edge: &str, config: &[PathBuf], sections: Vec<String>) -> Result<String, PreflightError> {
    let sources = Sources {
        files: (!config.is_empty()).then(|| config.to_vec()),
        known_sections: Some(sections),
        ..Sources::default()
    };
    let view: EdgeView = chassis::config::load(edge, &sources).map_err(anyhow::Error::from)?;
    Ok(view.http.host.unwrap_or_else(|| "0.0.0.0".to_owned()))
}

/// Checks that `port` can be bound on `host` (and on loopback, where `up` probes it).
pub fn port_free(host: &str, port: u16) -> Result<(), PreflightError> {
    let mut hosts = vec![host];
    if host != "127.0.0.1" {
        hosts.push("127.0.0.1");
    }
    for host in hosts {
        if let Err(e) = TcpListener::bind((host, port)) {
            return Err(if e.kind() == std::io::ErrorKind::AddrInUse {
                PreflightError::PortInUse { port }
            } else {
                PreflightError::PortUnusable { host: host.to_owned(), port, reason: e.to_string() }
            });
        }
    }
    Ok(())
}

/// Picks `count` distinct free loopback ports. Every listener is held until
/// all are picked so the kernel cannot hand out the same port twice.
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..count).map(|_| TcpListener::bind(("127.0.0.1", 0))).collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Profile, RunState};

    #[test]
    fn a_data_dir_under_a_file_is_refused_with_a_fix() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
        let error = data_dir(&file.join("data")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("is not usable"), "{error}");
        assert!(error.contains("--data-dir"), "{error}");
    }

    #[test]
    fn a_fresh_data_dir_is_created_private_with_its_subdirectories() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (made, secured) = data_dir(&dir.path().join("a/b")).unwrap_or_else(|e| panic!("{e}"));
        assert!(made.is_absolute());
        assert_eq!(secured, Secured::Created);
        let mode = |path: &Path| std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or_default();
        assert_eq!(mode(&made), 0o700);
        for sub in ["logs", "run", "services"] {
            assert_eq!(mode(&made.join(sub)), 0o700, "{sub}/");
        }
        let leftovers: Vec<_> = std::fs::read_dir(&made).map(|d| d.flatten().collect()).unwrap_or_default();
        assert_eq!(leftovers.len(), 3, "the probe file is gone");
    }

    #[test]
    fn an_existing_data_dir_open_to_others_is_tightened() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
        let (_, secured) = data_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(secured, Secured::Tightened { from: 0o755 });
    }

    #[test]
    fn a_taken_port_is_reported_as_in_use() {
        let taken = TcpListener::bind(("127.0.0.1", 0)).unwrap_or_else(|e| panic!("{e}"));
        let port = taken.local_addr().map(|a| a.port()).unwrap_or_default();
        let error = port_free("0.0.0.0", port).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(error, format!("port {port} is in use; stop what uses it or pass --port"));
    }

    #[test]
    fn picked_ports_are_distinct() {
        let ports = free_ports(8).unwrap_or_else(|e| panic!("{e}"));
        let unique: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), 8);
    }

    #[test]
    fn a_stale_state_file_is_removed_and_a_live_one_refuses() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut child = std::process::Command::new("true").spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
        let dead = child.id();
        child.wait().unwrap_or_else(|e| panic!("{e}"));
        let state = RunState {
            started_at: "2025-01-01T00:00:00Z".into(),
            profile: Profile::Embedded,
            gateway_url: "http://127.0.0.1:8080".into(),
            supervisor_pid: dead,
            processes: vec![],
            nats_urls: Vec::new(),
        };
        state.write(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(not_running(dir.path()).is_ok());
        assert!(!RunState::path(dir.path()).exists());
    }

    #[test]
    fn the_edge_binds_every_interface_unless_configured() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("bazaar.toml");
        std::fs::write(&file, "[gateway]\nrate_limit = 5\n[gateway.http]\nport = 1\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            edge_host("gateway", std::slice::from_ref(&file), vec!["gateway".into()]).unwrap_or_else(|e| panic!("{e}")),
            "0.0.0.0"
        );
        std::fs::write(&file, "[gateway.http]\nhost = \"127.0.0.1\"\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            edge_host("gateway", &[file], vec!["gateway".into()]).unwrap_or_else(|e| panic!("{e}")),
            "127.0.0.1"
        );
    }
}
