//! The whole platform for end-to-end tests: the real `bazaar up` binary in a
//! fresh temp data dir with the gateway on a free port. [`Platform::start`]
//! returns once every process is healthy; dropping the value sends SIGTERM to
//! `up`, which stops every service, and waits for it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// How long `up` may take to report every process healthy, by default.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `up` may take to stop everything before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The phase `up` records in `logs/up.jsonl` once everything is healthy.
const RUNNING_PHASE: &str = "running";

/// How to start the platform.
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    config: Option<String>,
    ready_timeout: Duration,
}

impl PlatformOptions {
    /// Runs the `bazaar` binary at `bin`: `env!("CARGO_BIN_EXE_bazaar")` in the
    /// cli crate's tests, [`crate::bazaar_bin()`] elsewhere.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self { bin: bin.into(), args: Vec::new(), env: Vec::new(), config: None, ready_timeout: READY_TIMEOUT }
    }

    /// Adds an argument to `bazaar up` (after the data dir and port, which are set already).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several arguments to `bazaar up`.
    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for `up` and so for every service (`BAZAAR_<SECTION>__<KEY>`).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Configuration for every service, as the text of a `bazaar.toml`
    /// (e.g. raised rate limits); it is written next to the data dir and passed with `--config`.
    pub fn config(mut self, toml: impl Into<String>) -> Self {
        self.config = Some(toml.into());
        self
    }

    /// How long to wait for every process to be healthy.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
}

/// Why the platform did not start.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// A file or the process could not be created.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// `bazaar up` exited before everything was healthy.
    #[error("bazaar up exited ({status}) before the platform was ready; it printed:\n{output}")]
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// What it printed.
        output: String,
    },
    /// The platform was not healthy in time.
    #[error("the platform was not ready within {} s; bazaar up printed:\n{output}", timeout.as_secs())]
    NotReady {
        /// How long was waited.
        timeout: Duration,
        /// What `up` printed.
        output: String,
    },
}

/// A running platform.
#[derive(Debug)]
pub struct Platform {
    child: Option<Child>,
    gateway_url: String,
    data_dir: PathBuf,
    output: PathBuf,
    // Removed once `up` has stopped: fields drop after `Drop::drop` runs.
    _root: TempDir,
}

impl Platform {
    /// Starts `bazaar up --data-dir <temp> --port <free>` plus the options'
    /// arguments, and waits until it reports every process healthy.
    pub async fn start(options: PlatformOptions) -> Result<Self, PlatformError> {
        let root = tempfile::Builder::new().prefix("bazaar-platform-").tempdir()?;
        let data_dir = root.path().join("data");
        let output = root.path().join("up.out");
        let port = crate::free_port();
        let mut command = std::process::Command::new(&options.bin);
        command.arg("up").arg("--data-dir").arg(&data_dir).args(["--port", &port.to_string()]);
        if let Some(toml) = &options.config {
            let file = root.path().join("bazaar.toml");
            std::fs::write(&file, toml)?;
            command.arg("--config").arg(file);
        }
        let log = std::fs::File::create(&output)?;
        command
            .args(&options.args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .env("NO_COLOR", "1")
            // The gateway listens on every interface by default; tests keep it on loopback.
            .env("BAZAAR_GATEWAY__HTTP__HOST", "127.0.0.1")
            .current_dir(root.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command.spawn()?;
        let mut platform =
            Self { child: Some(child), gateway_url: format!("http://127.0.0.1:{port}"), data_dir, output, _root: root };
        platform.wait_until_running(options.ready_timeout).await?;
        Ok(platform)
    }

    /// The gateway's base URL (`http://127.0.0.1:<port>`).
    pub fn gateway_url(&self) -> &str {
        &self.gateway_url
    }

    /// The platform's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The pid of the `bazaar up` process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The admin's email and password from `admin.credentials`.
    ///
    /// # Panics
    /// When the file is missing or malformed: `up` writes it before starting anything.
    pub fn admin_credentials(&self) -> (String, String) {
        let path = self.data_dir.join("admin.credentials");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        match (body["email"].as_str(), body["password"].as_str()) {
            (Some(email), Some(password)) => (email.to_owned(), password.to_owned()),
            _ => panic!("{} lacks email or password", path.display()),
        }
    }

    /// Every log line written so far by `service` (all its instances: `catalog`),
    /// one process (`catalog-2`), or the supervisor (`up`). Lines are in the
    /// order each process wrote them, processes in name order.
    pub fn logs(&self, service: &str) -> Vec<Value> {
        let dir = self.data_dir.join("logs");
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&dir).map(|entries| entries.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        files.retain(|path| {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            path.extension().is_some_and(|e| e == "jsonl") && names_process(stem, service)
        });
        files.sort();
        files
            .iter()
            .flat_map(|path| {
                std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>()
            })
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect()
    }

    /// `run/state.json` as it is now: pids, ports, URLs and restart counts.
    pub fn state(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.data_dir.join("run").join("state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// What `bazaar up` printed so far (stdout and stderr), for assertion messages.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Stops the platform now and returns how `up` exited (success when it stopped cleanly).
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.shut_down()
    }

    /// Waits for `up`'s record that every process is healthy, failing early if `up` exits.
    async fn wait_until_running(&mut self, timeout: Duration) -> Result<(), PlatformError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(PlatformError::Exited { status, output: self.output() });
            }
            let running = self.logs("up").iter().any(|line| line["metadata"]["phase"] == RUNNING_PHASE);
            if running {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let output = self.output();
                self.shut_down();
                return Err(PlatformError::NotReady { timeout, output });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM to `up` (which stops the services), then SIGKILL if it takes too long.
    fn shut_down(&mut self) -> Option<ExitStatus> {
        crate::sys::stop(self.child.take()?, libc::SIGTERM, STOP_TIMEOUT)
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Whether log file `stem` (`catalog-2`, `up`) belongs to `wanted` (`catalog`, `catalog-2`, `up`).
fn names_process(stem: &str, wanted: &str) -> bool {
    stem == wanted
        || stem
            .strip_prefix(wanted)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_are_chosen_by_service_or_process() {
        assert!(names_process("catalog-1", "catalog"));
        assert!(names_process("catalog-2", "catalog-2"));
        assert!(!names_process("catalog-2", "catalog-1"));
        assert!(names_process("up", "up"));
        assert!(!names_process("identity-1", "catalog"));
    }
}
