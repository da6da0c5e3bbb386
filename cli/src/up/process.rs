//! One supervised process: starting it as `bazaar serve ...` with its output
//! piped into the sink, restarting it with backoff when it exits unexpectedly,
//! and stopping it (SIGTERM, then SIGKILL at the deadline) when asked.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::sink::{SinkHandle, Stream};
use crate::logline::Level;
use crate::sys::{self, Signal};
use crate::topology::Service;

/// How many of a process's last lines are kept for a start-up failure report.
const RECENT_LINES: usize = 20;
/// How long to wait for a dead process's pipes to reach end of file.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything needed to start one process.
#[derive(Debug)]
pub struct ProcessSpec {
    /// The service it runs.
    pub service: &'static Service,
    /// Which replica, from 1.
    pub instance: u32,
    /// The port it listens on, the same across restarts.
    pub port: u16,
    /// Its base URL.
    pub url: String,
    /// The arguments after the executable (`serve <svc> --port ...`).
    pub args: Vec<OsString>,
    /// Variables added to its environment: settings too secret for the command line.
    pub env: Vec<(String, String)>,
    /// Its name in logs and on the terminal: `<svc>-<n>`.
    pub tag: Arc<str>,
}

/// What the process tasks tell the supervisor.
#[derive(Debug)]
pub enum Event {
    /// A process (re)started.
    Started {
        /// Its index in the spec list.
        index: usize,
        /// Its pid.
        pid: u32,
        /// How many restarts came before this start.
        restarts: u32,
    },
    /// A process ended while the platform was still starting; it is not restarted.
    Failed {
        /// Its index in the spec list.
        index: usize,
        /// How it ended.
        reason: String,
        /// Its last lines of output.
        recent: Vec<String>,
    },
}

/// What every process task shares.
#[derive(Debug)]
pub struct Shared {
    /// The `bazaar` executable.
    pub exe: PathBuf,
    /// Where output goes.
    pub sink: SinkHandle,
    /// Whether start-up is over: from then on an exit means restart, before it means failure.
    pub supervising: AtomicBool,
}

/// Starts the task that runs and supervises process `index`. Sending a
/// deadline on `stop` stops it; the task ends once the process is gone.
pub fn supervise(
    index: usize,
    spec: Arc<ProcessSpec>,
    shared: Arc<Shared>,
    stop: watch::Receiver<Option<Instant>>,
    events: mpsc::UnboundedSender<Event>,
) -> JoinHandle<()> {
    chassis::task::spawn("supervise-process", async move {
        Supervised { index, spec, shared, stop, events }.run().await;
        Ok::<(), std::convert::Infallible>(())
    })
}

struct Supervised {
    index: usize,
    spec: Arc<ProcessSpec>,
    shared: Arc<Shared>,
    stop: watch::Receiver<Option<Instant>>,
    events: mpsc::UnboundedSender<Event>,
}

impl Supervised {
    async fn run(mut self) {
        let mut backoff = Backoff::default();
        let mut restarts = 0;
        loop {
            let started = Instant::now();
            let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT_LINES)));
            let reason = match self.start(&recent, restarts) {
                Ok(mut running) => {
                    let pid = running.child.id().unwrap_or_default();
                    let _ = self.events.send(Event::Started { index: self.index, pid, restarts });
                    tokio::select! {
                        status = running.child.wait() => {
                            running.drain().await;
                            status.map_or_else(|e| format!("lost track of it: {e}"), |s| s.to_string())
                        }
                        deadline = stop_requested(&mut self.stop) => {
                            running.stop(deadline, &self.shared.sink, &self.spec.tag).await;
                            return;
                        }
                    }
                }
                Err(e) => format!("could not start: {e}"),
            };
            if self.stop.borrow().is_some() {
                return;
            }
            if !self.shared.supervising.load(Ordering::SeqCst) {
                let recent = recent.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default();
                let _ = self.events.send(Event::Failed { index: self.index, reason, recent });
                return;
            }
            let uptime = started.elapsed();
            let delay = backoff.after_exit(uptime);
            self.shared.sink.log(
                Level::Warn,
                format!(
                    "{} exited unexpectedly ({reason}) after {:.1} s; restarting in {:.1} s",
                    self.spec.tag,
                    uptime.as_secs_f64(),
                    delay.as_secs_f64()
                ),
                self.metadata(
                    json!({"reason": reason, "uptime_secs": uptime.as_secs_f64(), "delay_secs": delay.as_secs_f64()}),
                ),
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop_requested(&mut self.stop) => return,
            }
            restarts += 1;
        }
    }

    /// Spawns the process with its output piped into the sink.
    fn start(&self, recent: &Arc<Mutex<VecDeque<String>>>, restarts: u32) -> std::io::Result<Running> {
        let mut command = std::process::Command::new(&self.shared.exe);
        command
            .args(&self.spec.args)
            .envs(self.spec.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group: Ctrl-C in the terminal reaches only the
        // supervisor, which then stops the processes in order.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        sys::die_with_parent(&mut command);
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let mut child = command.spawn()?;
        let pid = child.id().unwrap_or_default();
        // Logged before the output readers exist, so it precedes the process's own lines.
        let message = match restarts {
            0 => format!("started {} (pid {pid}) on {}", self.spec.tag, self.spec.url),
            n => format!("restarted {} (pid {pid}, restart {n}) on {}", self.spec.tag, self.spec.url),
        };
        self.shared.sink.log(
            Level::Info,
            message,
            self.metadata(json!({"pid": pid, "url": self.spec.url, "restarts": restarts})),
        );
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(self.read_lines(stdout, Stream::Stdout, recent.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(self.read_lines(stderr, Stream::Stderr, recent.clone()));
        }
        Ok(Running { child, readers })
    }

    /// Forwards each line of `reader` to the sink and keeps the last few.
    fn read_lines<R>(&self, reader: R, stream: Stream, recent: Arc<Mutex<VecDeque<String>>>) -> JoinHandle<()>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let sink = self.shared.sink.clone();
        let tag = self.spec.tag.clone();
        chassis::task::spawn("process-output", async move {
            let mut reader = BufReader::new(reader);
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                if reader.read_until(b'\n', &mut buffer).await? == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                // A process may write invalid UTF-8 (a binary dump); keep what is readable.
                let line = String::from_utf8_lossy(&buffer).trim_end_matches(['\n', '\r']).to_owned();
                if let Ok(mut recent) = recent.lock() {
                    if recent.len() == RECENT_LINES {
                        recent.pop_front();
                    }
                    recent.push_back(line.clone());
                }
                sink.line(&tag, stream, line);
            }
        })
    }

    fn metadata(&self, extra: Value) -> Map<String, Value> {
        let mut metadata = Map::from_iter([
            ("process".to_owned(), Value::String(self.spec.tag.to_string())),
            ("port".to_owned(), Value::from(self.spec.port)),
        ]);
        if let Value::Object(extra) = extra {
            metadata.extend(extra);
        }
        metadata
    }
}

/// A started process and the tasks reading its output.
struct Running {
    child: Child,
    readers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits for the output readers to reach end of file, so the last lines
    /// (a panic message) are in the sink before anyone reports the exit.
    async fn drain(&mut self) {
        for reader in self.readers.drain(..) {
            // A grandchild holding the pipe open must not hold up the supervisor.
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, reader).await;
        }
    }

    /// SIGTERM, then SIGKILL if it is still running at `deadline`.
    async fn stop(mut self, deadline: Instant, sink: &SinkHandle, tag: &str) {
        if let Some(pid) = self.child.id() {
            let _ = sys::send(pid, Signal::Term);
        }
        if tokio::time::timeout_at(deadline, self.child.wait()).await.is_err() {
            sink.log(Level::Warn, format!("{tag} did not stop in time; killing it"), Map::new());
            let _ = self.child.kill().await;
        }
        self.drain().await;
    }
}

/// Resolves with the stop deadline once one is sent (or now, if the supervisor is gone).
async fn stop_requested(stop: &mut watch::Receiver<Option<Instant>>) -> Instant {
    loop {
        if let Some(deadline) = *stop.borrow_and_update() {
            return deadline;
        }
        if stop.changed().await.is_err() {
            return Instant::now();
        }
    }
}
