//! `bazaar logs`: searches the log files `bazaar up` writes (`logs/*.jsonl`)
//! by service, trace, level and text, prints the matches of all files merged
//! in time order, and with `--follow` keeps printing new lines as they come.
//! The supervisor's own lines (`logs/up.jsonl`, service `bazaar-up`) are
//! asked for as `up` or `bazaar-up`.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::logline::{self, Filter, Level, Record};
use crate::up::{SUPERVISOR, SUPERVISOR_FILE};

/// How often `--follow` looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Options of `bazaar logs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory of the platform.
    #[arg(long, value_name = "DIR", env = "BAZAAR_DATA_DIR", default_value = ".bazaar")]
    pub data_dir: PathBuf,
    /// Only lines of this service (`catalog`) or process (`catalog-2`); `up` (or `bazaar-up`) is the supervisor.
    #[arg(long, value_name = "S")]
    pub service: Option<String>,
    /// Only lines of this trace id.
    #[arg(long, value_name = "ID")]
    pub trace: Option<String>,
    /// Only lines of at least this severity.
    #[arg(long, value_enum, value_name = "L")]
    pub level: Option<Level>,
    /// Only lines containing this text (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// Keeps printing new lines until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Prints the stored JSON lines instead of the readable form.
    #[arg(long)]
    pub json: bool,
}

/// Prints the matching lines (and with `--follow`, new ones until Ctrl-C).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = args.data_dir.join("logs");
    if !dir.is_dir() {
        bail!(
            "no logs in {}; start the platform with `bazaar up --data-dir {}` first",
            dir.display(),
            args.data_dir.display()
        );
    }
    let service = args.service.map(|wanted| if wanted == SUPERVISOR_FILE { SUPERVISOR.to_owned() } else { wanted });
    if let Some(wanted) = &service {
        check_has_logs(&dir, wanted)?;
    }
    let filter = Filter { service, trace_id: args.trace, min_level: args.level, grep: args.grep };
    let mut tail = Tail::new(dir);
    print(&tail.read_new()?, &filter, args.json)?;
    if !args.follow {
        return Ok(());
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(FOLLOW_POLL) => print(&tail.read_new()?, &filter, args.json)?,
        }
    }
}

/// The service named in the lines of a log file, from the file's name
/// (`catalog-2` for `catalog-2.jsonl`, `bazaar-up` for `up.jsonl`).
fn file_service(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if stem == SUPERVISOR_FILE { SUPERVISOR.to_owned() } else { stem }
}

/// The `*.jsonl` files of `dir`, sorted.
fn log_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut paths: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "jsonl")).collect();
    paths.sort();
    Ok(paths)
}

/// Fails, listing the names that have logs, when no log file belongs to
/// `wanted`: a misspelt name would otherwise print nothing and look like silence.
fn check_has_logs(dir: &Path, wanted: &str) -> anyhow::Result<()> {
    let processes: Vec<String> = log_files(dir)?.iter().map(|p| file_service(p)).collect();
    if processes.iter().any(|p| logline::service_matches(p, wanted)) {
        return Ok(());
    }
    // Each service once, then its processes: `catalog (catalog-1, catalog-2)`.
    let mut services: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for process in &processes {
        if process == SUPERVISOR {
            services.entry(SUPERVISOR_FILE.to_owned()).or_default();
            continue;
        }
        let service = process.rsplit_once('-').filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        match service {
            Some((service, _)) => services.entry(service.to_owned()).or_default().push(process),
            None => services.entry(process.clone()).or_default().push(process),
        }
    }
    let names: Vec<String> = services
        .into_iter()
        .map(|(service, processes)| match processes.as_slice() {
            [] => service,
            [only] if *only == service => service,
            processes => format!("{service} ({})", processes.join(", ")),
        })
        .collect();
    if names.is_empty() {
        bail!("no logs of `{wanted}`: there are no log files in {}", dir.display());
    }
    bail!("no logs of `{wanted}` in {}; logs exist for: {}", dir.display(), names.join(", "));
}

/// Prints the records that pass `filter`, merged in time order.
fn print(files: &[Vec<Record>], filter: &Filter, json: bool) -> anyhow::Result<()> {
    let matching =
        files.iter().map(|records| records.iter().filter(|r| filter.matches(r)).cloned().collect()).collect();
    let mut out = std::io::stdout().lock();
    for record in logline::merge(matching) {
        let line = if json { record.raw } else { record.render() };
        if let Err(e) = writeln!(out, "{line}") {
            // The reader went away (`bazaar logs | head`): that is the end, not an error.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            return Err(e.into());
        }
    }
    Ok(())
}

/// Reads the log files incrementally: each call returns the complete lines
/// written since the last one, per file.
#[derive(Debug)]
struct Tail {
    dir: PathBuf,
    /// Per file: how far it has been read, and a trailing line not yet finished.
    files: BTreeMap<PathBuf, (u64, Vec<u8>)>,
}

impl Tail {
    fn new(dir: PathBuf) -> Self {
        Self { dir, files: BTreeMap::new() }
    }

    /// New complete lines of every `*.jsonl` file, parsed; files that appeared are picked up.
    fn read_new(&mut self) -> anyhow::Result<Vec<Vec<Record>>> {
        let mut out = Vec::new();
        for path in log_files(&self.dir)? {
            let lines = self.read_file(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let fallback = file_service(&path);
            let records: Vec<Record> = lines
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|line| {
                    // Files are written by `up`, which wraps non-JSON output; anything else is shown as it is.
                    Record::parse(line, &fallback).unwrap_or_else(|| plain(line, &fallback))
                })
                .collect();
            out.push(records);
        }
        Ok(out)
    }

    fn read_file(&mut self, path: &Path) -> std::io::Result<Vec<String>> {
        let (offset, partial) = self.files.entry(path.to_path_buf()).or_default();
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        if len < *offset {
            // The file was truncated or replaced: start over.
            *offset = 0;
            partial.clear();
        }
        file.seek(SeekFrom::Start(*offset))?;
        let mut bytes = std::mem::take(partial);
        let read = file.read_to_end(&mut bytes)?;
        *offset += read as u64;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        *partial = bytes.split_off(complete);
        Ok(String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect())
    }
}

/// A stored line that is not JSON, kept so that it is not silently lost.
fn plain(line: &str, service: &str) -> Record {
    Record {
        raw: line.to_owned(),
        timestamp: None,
        level: Level::Info,
        service: service.to_owned(),
        trace_id: None,
        message: line.to_owned(),
        metadata: serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(service: &str, at: &str, message: &str) -> String {
        format!(r#"{{"timestamp":"{at}","level":"info","service":"{service}","message":"{message}","metadata":{{}}}}"#)
    }

    fn messages(files: &[Vec<Record>]) -> Vec<String> {
        files.iter().flatten().map(|r| r.message.clone()).collect()
    }

    #[test]
    fn tail_returns_only_new_complete_lines() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("catalog-1.jsonl");
        let first = line("catalog-1", "2025-01-01T00:00:01Z", "one");
        std::fs::write(&path, format!("{first}\n{{\"message\":\"unfin")).unwrap_or_else(|e| panic!("{e}"));
        let mut tail = Tail::new(dir.path().to_path_buf());
        assert_eq!(messages(&tail.read_new().unwrap_or_else(|e| panic!("{e}"))), ["one"]);

        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap_or_else(|e| panic!("{e}"));
        writeln!(file, "ished\"}}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(messages(&tail.read_new().unwrap_or_else(|e| panic!("{e}"))), ["unfinished"]);
        assert!(messages(&tail.read_new().unwrap_or_else(|e| panic!("{e}"))).is_empty());
    }

    #[test]
    fn tail_picks_up_new_files_and_names_the_service_after_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut tail = Tail::new(dir.path().to_path_buf());
        assert!(messages(&tail.read_new().unwrap_or_else(|e| panic!("{e}"))).is_empty());
        std::fs::write(dir.path().join("identity-1.jsonl"), "{\"message\":\"no service field\"}\nnot json\n")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("notes.txt"), "ignored\n").unwrap_or_else(|e| panic!("{e}"));
        let files = tail.read_new().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(messages(&files), ["no service field", "not json"]);
        assert!(files[0].iter().all(|r| r.service == "identity-1"));
    }

    fn logs_dir(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for name in names {
            std::fs::write(dir.path().join(format!("{name}.jsonl")), "").unwrap_or_else(|e| panic!("{e}"));
        }
        dir
    }

    #[test]
    fn a_name_without_log_files_is_refused_listing_the_names_with_logs() {
        let dir = logs_dir(&["catalog-1", "catalog-2", "gateway-1", "up", "custom"]);
        let error = check_has_logs(dir.path(), "nope").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            error.ends_with("logs exist for: catalog (catalog-1, catalog-2), custom, gateway (gateway-1), up"),
            "{error}"
        );
        let empty = logs_dir(&[]);
        let error = check_has_logs(empty.path(), "catalog").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("there are no log files"), "{error}");
    }

    #[test]
    fn services_processes_and_the_supervisor_have_logs() {
        let dir = logs_dir(&["catalog-1", "catalog-2", "up"]);
        for wanted in ["catalog", "catalog-2", SUPERVISOR] {
            assert!(check_has_logs(dir.path(), wanted).is_ok(), "{wanted}");
        }
        assert!(check_has_logs(dir.path(), "catalog-3").is_err());
    }

    #[test]
    fn plain_lines_of_the_supervisor_file_are_the_supervisor_s() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("up.jsonl"), "not json\n").unwrap_or_else(|e| panic!("{e}"));
        let files = Tail::new(dir.path().to_path_buf()).read_new().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(files[0][0].service, SUPERVISOR);
    }

    #[tokio::test]
    async fn a_data_dir_without_logs_says_how_to_get_some() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let args = Args {
            data_dir: dir.path().to_path_buf(),
            service: None,
            trace: None,
            level: None,
            grep: None,
            follow: false,
            json: false,
        };
        let error = run(args).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("no logs in") && error.contains("bazaar up"), "{error}");
    }
}
