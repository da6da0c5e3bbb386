//! Where every line of every supervised process goes: appended whole to
//! `logs/<svc>-<n>.jsonl` (lines that are not JSON are wrapped into an error
//! line first) and shown on the terminal shortened, behind a `svc-n |` tag
//! that is coloured when stdout is a terminal. The supervisor's own lines go
//! the same way, to `logs/up.jsonl` as service `bazaar-up`.
//!
//! One thread owns the files and the terminal, so lines from different
//! processes never interleave mid-line and file writes never block the runtime.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::logline::{self, Level, Record};

/// The service name of the supervisor's own log lines.
pub const SUPERVISOR: &str = "bazaar-up";
/// The supervisor's log file name inside `logs/` (`up.jsonl`).
pub const SUPERVISOR_FILE: &str = "up";
/// Where the sink shows lines besides the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// On stdout, with coloured tags or without.
    Show {
        /// Whether to colour the tags (stdout is a terminal).
        colour: bool,
    },
    /// Nowhere (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Discard,
}

/// ANSI foreground colours given to process tags in turn.
const COLOURS: &[u8] = &[36, 33, 35, 32, 34, 96, 93, 95, 92, 94];

/// Which output of a child a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output: the JSON log lines.
    Stdout,
    /// Standard error: panics and start-up errors.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

enum Message {
    Line { tag: Arc<str>, stream: Stream, line: String },
    Own { level: Level, message: String, metadata: Map<String, Value>, show: bool },
    Print(String),
    Close,
}

/// A cheap handle for sending lines to the sink from any task.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    tx: mpsc::Sender<Message>,
}

impl SinkHandle {
    /// A line a child wrote.
    pub fn line(&self, tag: &Arc<str>, stream: Stream, line: String) {
        let _ = self.tx.send(Message::Line { tag: tag.clone(), stream, line });
    }

    /// A line of the supervisor itself.
    pub fn log(&self, level: Level, message: impl Into<String>, metadata: Map<String, Value>) {
        let _ = self.tx.send(Message::Own { level, message: message.into(), metadata, show: true });
    }

    /// A line of the supervisor for its log file only, when the terminal shows the same news another way.
    pub fn record(&self, level: Level, message: impl Into<String>, metadata: Map<String, Value>) {
        let _ = self.tx.send(Message::Own { level, message: message.into(), metadata, show: false });
    }

    /// Text for the terminal only (tables, summaries), in order with the log lines.
    pub fn print(&self, text: impl Into<String>) {
        let _ = self.tx.send(Message::Print(text.into()));
    }
}

/// The sink thread and a handle to it.
#[derive(Debug)]
pub struct Sink {
    handle: SinkHandle,
    thread: JoinHandle<()>,
}

impl Sink {
    /// Starts the sink writing into `logs_dir`. `tags` are the processes to
    /// expect, so their tags line up and keep their colours.
    pub fn start(logs_dir: PathBuf, tags: &[Arc<str>], terminal: Terminal) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let width = tags.iter().map(|t| t.len()).chain([SUPERVISOR.len()]).max().unwrap_or_default();
        let colours = tags.iter().enumerate().map(|(i, t)| (t.to_string(), COLOURS[i % COLOURS.len()])).collect();
        let writer = Writer { logs_dir, files: HashMap::new(), failed: HashSet::new(), width, terminal, colours };
        let thread = std::thread::Builder::new().name("log-sink".into()).spawn(move || writer.run(rx))?;
        Ok(Self { handle: SinkHandle { tx }, thread })
    }

    /// A handle for sending lines.
    pub fn handle(&self) -> SinkHandle {
        self.handle.clone()
    }

    /// Writes out everything sent so far and stops the thread.
    pub fn close(self) {
        let _ = self.handle.tx.send(Message::Close);
        let _ = self.thread.join();
    }
}

struct Writer {
    logs_dir: PathBuf,
    files: HashMap<String, File>,
    failed: HashSet<String>,
    width: usize,
    terminal: Terminal,
    colours: HashMap<String, u8>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        for message in rx {
            match message {
                Message::Line { tag, stream, line } => self.child_line(&tag, stream, &line),
                Message::Own { level, message, metadata, show } => {
                    let line = logline::line(SUPERVISOR, level, &message, metadata, OffsetDateTime::now_utc());
                    self.append(SUPERVISOR_FILE, &line);
                    if show {
                        let summary = Record::parse(&line, SUPERVISOR).map(|r| r.summary()).unwrap_or(message);
                        self.show(SUPERVISOR, &summary, level >= Level::Warn);
                    }
                }
                Message::Print(text) => {
                    if self.terminal != Terminal::Discard {
                        let _ = writeln!(io::stdout().lock(), "{text}");
                    }
                }
                Message::Close => break,
            }
        }
    }

    fn child_line(&mut self, tag: &str, stream: Stream, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        match Record::parse(line, tag) {
            Some(record) => {
                self.append(tag, line);
                self.show(tag, &record.summary(), false);
            }
            None => {
                let wrapped = logline::wrap_plain(line, tag, stream.as_str(), OffsetDateTime::now_utc());
                self.append(tag, &wrapped);
                self.show(tag, line, false);
            }
        }
    }

    /// Appends one line to `logs/<name>.jsonl`, opening it on first use.
    fn append(&mut self, name: &str, line: &str) {
        if !self.files.contains_key(name) {
            let path = self.logs_dir.join(format!("{name}.jsonl"));
            match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
                Ok(file) => {
                    self.files.insert(name.to_owned(), file);
                }
                Err(e) => return self.report_failure(name, &path, &e),
            }
        }
        if let Some(file) = self.files.get_mut(name) {
            // One write per line: `bazaar logs --follow` never reads half a line it cannot finish.
            let mut bytes = Vec::with_capacity(line.len() + 1);
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
            if let Err(e) = file.write_all(&bytes) {
                let path = self.logs_dir.join(format!("{name}.jsonl"));
                self.report_failure(name, &path, &e);
            }
        }
    }

    /// Says once per file that it cannot be written; the terminal still shows the lines.
    fn report_failure(&mut self, name: &str, path: &std::path::Path, error: &io::Error) {
        if self.failed.insert(name.to_owned()) {
            let _ = writeln!(io::stderr().lock(), "bazaar up: cannot write {}: {error}", path.display());
        }
    }

    fn show(&self, tag: &str, text: &str, to_stderr: bool) {
        let Terminal::Show { colour } = self.terminal else { return };
        let padded = format!("{tag:<width$}", width = self.width);
        let tagged = match self.colours.get(tag).filter(|_| colour) {
            Some(code) => format!("\x1b[{code}m{padded} |\x1b[0m {text}"),
            None if colour => format!("\x1b[1m{padded} |\x1b[0m {text}"),
            None => format!("{padded} | {text}"),
        };
        // A closed terminal (output piped into `head`) must not stop the platform.
        let _ = if to_stderr {
            writeln!(io::stderr().lock(), "{tagged}")
        } else {
            writeln!(io::stdout().lock(), "{tagged}")
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_lines(path: &std::path::Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect()
    }

    #[test]
    fn json_lines_are_kept_whole_and_plain_lines_are_wrapped_as_errors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let tag: Arc<str> = Arc::from("catalog-1");
        let sink = Sink::start(dir.path().to_path_buf(), std::slice::from_ref(&tag), Terminal::Discard)
            .unwrap_or_else(|e| panic!("{e}"));
        let handle = sink.handle();
        let json_line = r#"{"timestamp":"2025-01-01T00:00:00Z","level":"info","service":"catalog-1","message":"listening","metadata":{"port":1}}"#;
        handle.line(&tag, Stream::Stdout, json_line.to_owned());
        handle.line(&tag, Stream::Stderr, "thread 'main' panicked at src/lib.rs:1".to_owned());
        handle.log(Level::Warn, "catalog-1 exited", Map::new());
        sink.close();

        let lines = read_lines(&dir.path().join("catalog-1.jsonl"));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["metadata"]["port"], 1, "the JSON line is stored as written");
        assert_eq!(lines[1]["level"], "error");
        assert_eq!(lines[1]["message"], "thread 'main' panicked at src/lib.rs:1");
        assert_eq!(lines[1]["metadata"]["stream"], "stderr");

        let own = read_lines(&dir.path().join("up.jsonl"));
        assert_eq!(own[0]["service"], SUPERVISOR);
        assert_eq!(own[0]["level"], "warn");
        assert_eq!(own[0]["message"], "catalog-1 exited");
    }
}
