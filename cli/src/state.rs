//! `run/state.json`: what `bazaar up` is running (pids, ports, URLs, restart
//! counts), written by the supervisor whenever it changes and read by
//! `bazaar status`, a second `bazaar up`, and tests.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which storage engines the platform runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// One SQLite file per service in the data dir.
    Embedded,
    /// One PostgreSQL database per service.
    Distributed,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Embedded => "embedded",
            Self::Distributed => "distributed",
        })
    }
}

/// The running platform, as stored in `run/state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// When `bazaar up` started, RFC 3339 UTC.
    pub started_at: String,
    /// The profile it runs.
    pub profile: Profile,
    /// The public URL of the gateway.
    pub gateway_url: String,
    /// The pid of the `bazaar up` process supervising the others.
    pub supervisor_pid: u32,
    /// Every supervised process.
    pub processes: Vec<ProcessState>,
    /// The NATS servers of the distributed profile's bus (empty in the embedded profile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nats_urls: Vec<String>,
}

/// One supervised process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    /// The service it runs.
    pub service: String,
    /// Which replica it is, from 1.
    pub instance: u32,
    /// Its current pid (0 until it has started).
    pub pid: u32,
    /// The port it listens on.
    pub port: u16,
    /// Its base URL.
    pub url: String,
    /// How many times the supervisor restarted it.
    pub restarts: u32,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read, written or removed.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a state document.
    #[error("{path} is not a valid state file ({source}); remove it if no platform is running")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

impl RunState {
    /// Where the state file of `data_dir` is.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("run").join("state.json")
    }

    /// Reads the state of `data_dir`; `None` when there is no state file.
    pub fn read(data_dir: &Path) -> Result<Option<Self>, StateError> {
        let path = Self::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_str(&text).map(Some).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Writes the state of `data_dir`, replacing the file in one step so a
    /// reader never sees half a document.
    pub fn write(&self, data_dir: &Path) -> Result<(), StateError> {
        let path = Self::path(data_dir);
        let io_error = |source| StateError::Io { path: path.clone(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_error)?;
        }
        let temp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let mut text = serde_json::to_string_pretty(self).map_err(|e| io_error(io::Error::other(e)))?;
        text.push('\n');
        std::fs::write(&temp, text).map_err(io_error)?;
        std::fs::rename(&temp, &path).map_err(io_error)
    }

    /// Removes the state file of `data_dir` (a missing file is fine).
    pub fn remove(data_dir: &Path) -> Result<(), StateError> {
        let path = Self::path(data_dir);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StateError::Io { path, source: e }),
            _ => Ok(()),
        }
    }

    /// Whether the supervisor named in this state is still running.
    ///
    /// A pid alone could have been reused since a crash, so on Linux the
    /// process must also be a `bazaar up`.
    pub fn supervisor_is_running(&self) -> bool {
        if self.supervisor_pid == std::process::id() || !crate::sys::is_alive(self.supervisor_pid) {
            return false;
        }
        match std::fs::read(format!("/proc/{}/cmdline", self.supervisor_pid)) {
            Ok(cmdline) => cmdline.split(|b| *b == 0).any(|arg| arg == b"up"),
            // Without /proc the live pid is the best evidence there is.
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunState {
        RunState {
            started_at: "2025-03-01T10:00:00Z".into(),
            profile: Profile::Embedded,
            gateway_url: "http://127.0.0.1:8080".into(),
            supervisor_pid: 4242,
            processes: vec![ProcessState {
                service: "catalog".into(),
                instance: 2,
                pid: 4300,
                port: 40123,
                url: "http://127.0.0.1:40123".into(),
                restarts: 1,
            }],
            nats_urls: Vec::new(),
        }
    }

    #[test]
    fn state_survives_a_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = sample();
        state.write(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let read = RunState::read(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read, Some(state));
    }

    #[test]
    fn the_file_has_the_documented_shape() {
        let value = serde_json::to_value(sample()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value["profile"], "embedded");
        assert_eq!(value["supervisor_pid"], 4242);
        assert_eq!(value["processes"][0]["service"], "catalog");
        assert_eq!(value["processes"][0]["restarts"], 1);
        let keys: Vec<&str> = value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(keys.len(), 5, "{keys:?}");
    }

    #[test]
    fn no_file_means_no_state_and_removing_it_twice_is_fine() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(RunState::read(dir.path()).unwrap_or_else(|e| panic!("{e}")), None);
        sample().write(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        RunState::remove(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        RunState::remove(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!RunState::path(dir.path()).exists());
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("run")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(RunState::path(dir.path()), "{not json").unwrap_or_else(|e| panic!("{e}"));
        let error = RunState::read(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("state.json"), "{error}");
    }

    #[test]
    fn a_dead_supervisor_is_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
        let pid = child.id();
        child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
        let state = RunState { supervisor_pid: pid, ..sample() };
        assert!(!state.supervisor_is_running());
    }

    #[test]
    fn a_live_process_that_is_not_bazaar_up_is_not_the_supervisor() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
        let state = RunState { supervisor_pid: child.id(), ..sample() };
        let running = state.supervisor_is_running();
        let _ = child.kill();
        let _ = child.wait();
        assert!(!running || !Path::new("/proc").exists());
    }
}
