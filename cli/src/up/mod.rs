//! `bazaar up`: runs the whole platform on one machine. It checks it can
//! start (data dir, gateway port, no other platform on the same data dir),
//! makes the admin credentials on first start, starts every service as its
//! own `bazaar serve` process stage by stage on loopback ports it picks,
//! waits until each is ready, then supervises them (restart with backoff)
//! until Ctrl-C or SIGTERM, when it stops them edge first.
//!
//! # Layout
//! - [`preflight`]: the checks made before anything starts.
//! - [`credentials`]: the admin credentials file.
//! - [`process`]: one supervised process.
//! - [`backoff`]: the restart schedule.
//! - [`sink`]: where the processes' output goes (files and terminal).

mod backoff;
mod credentials;
mod preflight;
mod process;
mod sink;

pub use self::sink::{SUPERVISOR, SUPERVISOR_FILE};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chassis::server::Shutdown;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::process::{Event, ProcessSpec, Shared};
use self::sink::{Sink, Terminal};
use crate::datadir::Secured;
use crate::logline::Level;
use crate::state::{ProcessState, Profile, RunState};
use crate::topology::{self, Need, Service, Stage};

/// How long start-up may take before `up` gives up.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long processes get to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How often readiness is polled during start-up.
const READY_POLL: Duration = Duration::from_millis(100);
/// The most replicas of one service `up` runs.
const MAX_REPLICAS: u32 = 32;

/// Options of `bazaar up`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory: databases, logs, credentials and run state live under it; kept private to you (mode 0700).
    #[arg(long, value_name = "DIR", env = "BAZAAR_DATA_DIR", default_value = ".bazaar")]
    pub data_dir: PathBuf,
    /// The public port of the gateway.
    #[arg(long, value_name = "N", default_value_t = 8080, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Storage engines: SQLite files in the data dir, or one PostgreSQL database per service.
    #[arg(long, value_enum, default_value_t = Profile::Embedded)]
    pub profile: Profile,
    /// Runs N instances of a service, e.g. `--replicas catalog=3`; repeatable.
    #[arg(long = "replicas", value_name = "SVC=N", value_parser = parse_replicas)]
    pub replicas: Vec<(String, u32)>,
    /// The PostgreSQL server of the distributed profile; `up` creates a `bazaar_<svc>` database per service on it.
    /// Prefer the environment variable: a flag's value (with its password) shows in `ps`.
    #[arg(long, value_name = "URL", env = "BAZAAR_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// The NATS servers of the distributed profile's bus (JetStream); repeat or comma-separate for a cluster.
    /// Three or more servers make the streams replicated three times.
    #[arg(
        long = "nats-url",
        value_name = "URL",
        env = "BAZAAR_NATS_URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub nats_urls: Vec<String>,
    /// A configuration file handed to every process instead of ./bazaar.toml; repeat to layer files.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,
}

/// Parses `SVC=N`.
fn parse_replicas(text: &str) -> Result<(String, u32), String> {
    let (name, count) = text.split_once('=').ok_or_else(|| format!("expected SVC=N (e.g. catalog=3), got `{text}`"))?;
    let count: u32 = count.trim().parse().map_err(|_| format!("the count in `{text}` is not a whole number"))?;
    if !(1..=MAX_REPLICAS).contains(&count) {
        return Err(format!("the count in `{text}` must be between 1 and {MAX_REPLICAS}"));
    }
    Ok((name.trim().to_owned(), count))
}

/// Runs the platform until Ctrl-C or SIGTERM.
pub async fn run(args: Args, catalogue: &'static [Service]) -> anyhow::Result<()> {
    let clock = Instant::now();
    let started_at = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
    let plan = plan(catalogue, &args.replicas, args.profile)?;
    let edge = catalogue.iter().find(|s| s.stage == Stage::Edge).context("no service listens on the public port")?;

    let (data_dir, secured) = preflight::data_dir(&args.data_dir)?;
    preflight::not_running(&data_dir)?;
    let config = config_files(&args.config)?;
    let host = preflight::edge_host(edge.name, &config, catalogue.iter().map(|s| s.name.to_owned()).collect())?;
    preflight::port_free(&host, args.port)?;
    if args.profile == Profile::Distributed && args.nats_urls.is_empty() {
        bail!(
            "the distributed profile's bus is NATS JetStream: pass --nats-url nats://HOST:4222 (repeat for a cluster) \
             or set BAZAAR_NATS_URL"
        );
    }
    let databases = match args.profile {
        Profile::Embedded => BTreeMap::new(),
        Profile::Distributed => postgres_databases(&plan, args.postgres_url.as_deref()).await?,
    };
    let credentials = credentials::ensure(&data_dir)?;

    let gateway_url = format!("http://{}:{}", reachable_host(&host), args.port);
    let specs = specs(
        &plan,
        &Layout {
            data_dir: &data_dir,
            config: &config,
            edge_port: args.port,
            gateway_url: &gateway_url,
            credentials: &credentials.path,
            databases: &databases,
            nats_urls: &args.nats_urls,
        },
    )?;
    let tags: Vec<Arc<str>> = specs.iter().map(|s| s.tag.clone()).collect();
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let sink =
        Sink::start(data_dir.join("logs"), &tags, Terminal::Show { colour }).context("cannot start the log writer")?;
    let log = sink.handle();
    if let Secured::Tightened { from } = secured {
        log.log(
            Level::Warn,
            format!(
                "the data dir {} was open to other users (mode {from:o}); made it private (mode 700)",
                data_dir.display()
            ),
            Map::from_iter([
                ("data_dir".to_owned(), json!(data_dir)),
                ("mode_before".to_owned(), json!(format!("{from:o}"))),
            ]),
        );
    }
    if credentials.created {
        log.log(
            Level::Info,
            format!("first start: admin credentials written to {} (readable only by you)", credentials.path.display()),
            Map::from_iter([("path".to_owned(), json!(credentials.path))]),
        );
    }
    log.log(
        Level::Info,
        format!("starting {} processes ({} profile) in {}", specs.len(), args.profile, data_dir.display()),
        Map::from_iter([
            ("profile".to_owned(), json!(args.profile.to_string())),
            ("data_dir".to_owned(), json!(data_dir)),
        ]),
    );

    let exe = std::env::current_exe().context("cannot find the bazaar executable to start the services with")?;
    let state = RunState {
        started_at,
        profile: args.profile,
        gateway_url: gateway_url.clone(),
        supervisor_pid: std::process::id(),
        processes: specs
            .iter()
            .map(|s| ProcessState {
                service: s.service.name.to_owned(),
                instance: s.instance,
                pid: 0,
                port: s.port,
                url: s.url.clone(),
                restarts: 0,
            })
            .collect(),
        nats_urls: args.nats_urls.clone(),
    };
    let shared = Arc::new(Shared { exe, sink: log.clone(), supervising: false.into() });
    let mut supervisor = Supervisor::new(specs, shared, state, data_dir);
    // Claim the data dir before the first process starts, so a second `up` refuses right away.
    supervisor.save_state();
    let shutdown = Shutdown::on_os_signal();
    let outcome = match supervisor.start(&shutdown).await {
        Ok(()) => {
            let took = clock.elapsed();
            log.print(supervisor.summary(took));
            // Tests and tools watch for this record to know the platform is up.
            log.record(
                Level::Info,
                format!("all {} processes healthy in {:.1} s", supervisor.specs.len(), took.as_secs_f64()),
                Map::from_iter([
                    ("phase".to_owned(), json!("running")),
                    ("processes".to_owned(), json!(supervisor.specs.len())),
                    ("startup_secs".to_owned(), json!(took.as_secs_f64())),
                    ("gateway_url".to_owned(), json!(gateway_url)),
                ]),
            );
            supervisor.watch(&shutdown).await;
            Ok(())
        }
        Err(Abort::Signal) => Ok(()),
        Err(Abort::Failed(reason)) => {
            // The terminal gets the reason once, as the command's error; the file keeps it too.
            log.record(Level::Error, format!("start-up failed: {reason}"), Map::new());
            Err(anyhow::anyhow!(reason))
        }
    };
    supervisor.stop_all().await;
    sink.close();
    outcome
}

/// Every process to run, in start order: stage by stage, in table order,
/// replicas together. The distributed profile runs no embedded broker.
fn plan(
    catalogue: &'static [Service],
    replicas: &[(String, u32)],
    profile: Profile,
) -> anyhow::Result<Vec<(&'static Service, u32)>> {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for (name, count) in replicas {
        let Some(service) = topology::find(catalogue, name) else {
            bail!("unknown service `{name}` in --replicas; valid names: {}", topology::names(catalogue));
        };
        if service.stage == Stage::Edge && *count != 1 {
            bail!("--replicas {name}={count}: {name} is the single public entry point on --port and runs one instance");
        }
        if service.stage == Stage::Bus && *count != 1 {
            bail!("--replicas {name}={count}: the {name} alone owns its log and runs one instance");
        }
        counts.insert(service.name, *count);
    }
    let mut ordered: Vec<&'static Service> =
        catalogue.iter().filter(|s| !(profile == Profile::Distributed && s.stage == Stage::Bus)).collect();
    ordered.sort_by_key(|s| s.stage);
    Ok(ordered.into_iter().flat_map(|s| (1..=counts.get(s.name).copied().unwrap_or(1)).map(move |n| (s, n))).collect())
}

/// Makes the `--config` paths absolute (the processes may resolve them elsewhere) and checks they exist.
fn config_files(files: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    files
        .iter()
        .map(|file| {
            if !file.is_file() {
                bail!("configuration file {} does not exist; fix the --config path", file.display());
            }
            std::path::absolute(file).with_context(|| format!("cannot resolve {}", file.display()))
        })
        .collect()
}

/// Creates one database per service on the PostgreSQL server and returns their URLs by service.
async fn postgres_databases(
    plan: &[(&'static Service, u32)],
    server: Option<&str>,
) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let server = server.filter(|s| !s.is_empty()).context(
        "the distributed profile needs a PostgreSQL server: pass --postgres-url postgres://USER@HOST:5432/postgres \
         or set BAZAAR_POSTGRES_URL",
    )?;
    let mut urls = BTreeMap::new();
    for (service, _) in plan {
        if urls.contains_key(service.name) || !service.needs(Need::Database) {
            continue;
        }
        let name = format!("bazaar_{}", service.name.replace('-', "_"));
        let url = chassis::db::ensure_postgres_database(server, &name).await.with_context(|| {
            format!("cannot create database {name}; check --postgres-url and that the server is up")
        })?;
        urls.insert(service.name, url);
    }
    Ok(urls)
}

/// The host to reach a listener on from this machine.
fn reachable_host(bound: &str) -> String {
    match bound {
        "" | "0.0.0.0" | "::" | "[::]" => "127.0.0.1".to_owned(),
        host if host.contains(':') && !host.starts_with('[') => format!("[{host}]"),
        host => host.to_owned(),
    }
}

/// Where things are, for building the processes' command lines.
struct Layout<'a> {
    data_dir: &'a Path,
    config: &'a [PathBuf],
    edge_port: u16,
    gateway_url: &'a str,
    credentials: &'a Path,
    databases: &'a BTreeMap<&'static str, String>,
    /// The NATS servers; empty in the embedded profile, whose bus is the broker process.
    nats_urls: &'a [String],
}

/// Builds each process's spec: a port (fresh loopback ones for all but the
/// edge), its `bazaar serve` command line and its environment.
fn specs(plan: &[(&'static Service, u32)], layout: &Layout<'_>) -> anyhow::Result<Vec<Arc<ProcessSpec>>> {
    let inner = plan.iter().filter(|(s, _)| s.stage != Stage::Edge).count();
    let mut ports =
        preflight::free_ports(inner).context("cannot find free loopback ports for the services")?.into_iter();
    let mut placed = Vec::new();
    for &(service, instance) in plan {
        let (port, url) = if service.stage == Stage::Edge {
            (layout.edge_port, layout.gateway_url.to_owned())
        } else {
            let port = ports.next().context("ran out of picked ports")?;
            (port, format!("http://127.0.0.1:{port}"))
        };
        placed.push((service, instance, port, url));
    }
    // The edge is told every instance of every service behind it; the bus is not public.
    let mut upstreams: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (service, _, _, url) in &placed {
        if service.stage == Stage::Core {
            upstreams.entry(service.name).or_default().push(url.clone());
        }
    }
    let broker_url = placed.iter().find(|(s, ..)| s.stage == Stage::Bus).map(|(.., url)| url.clone());
    Ok(placed
        .into_iter()
        .map(|(service, instance, port, url)| {
            let mut args: Vec<OsString> = vec!["serve".into(), service.name.into(), "--data-dir".into()];
            args.push(layout.data_dir.into());
            args.extend(["--port".into(), port.to_string().into(), "--instance".into(), instance.to_string().into()]);
            for file in layout.config {
                args.extend(["--config".into(), file.into()]);
            }
            let mut set = |key: &str, value: Value| args.extend(["--set".into(), format!("{key}={value}").into()]);
            if service.needs(Need::AdminCredentials) {
                set("admin_credentials_file", json!(layout.credentials));
            }
            if service.needs(Need::Upstreams) {
                for (name, urls) in &upstreams {
                    set(&format!("upstreams.{name}"), json!(urls));
                }
            }
            if service.needs(Need::Bus) && layout.nats_urls.is_empty() {
                set("bus.url", json!(broker_url.clone().unwrap_or_default()));
            }
            // The URL carries the database password: any local user can read a
            // command line (`ps`), only the owner a process's environment.
            let mut env: Vec<(String, String)> = layout
                .databases
                .get(service.name)
                .map(|url| (chassis::config::env_var(service.name, "database.url"), url.clone()))
                .into_iter()
                .collect();
            // NATS URLs may carry credentials too: the environment, not the command line.
            if service.needs(Need::Bus) && !layout.nats_urls.is_empty() {
                let replicas = if layout.nats_urls.len() >= 3 { 3 } else { 1 };
                env.extend([
                    (chassis::config::env_var(service.name, "bus.transport"), "jetstream".to_owned()),
                    (chassis::config::env_var(service.name, "bus.nats_urls"), json!(layout.nats_urls).to_string()),
                    (chassis::config::env_var(service.name, "bus.replicas"), replicas.to_string()),
                ]);
            }
            let tag: Arc<str> = Arc::from(format!("{}-{instance}", service.name));
            Arc::new(ProcessSpec { service, instance, port, url, args, env, tag })
        })
        .collect())
}

/// Why start-up ended early.
enum Abort {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// A process failed or was not ready in time; the text says which and why.
    Failed(String),
}

/// The supervisor: the process tasks, their stop switches and the run state.
struct Supervisor {
    specs: Vec<Arc<ProcessSpec>>,
    shared: Arc<Shared>,
    stops: Vec<watch::Sender<Option<Instant>>>,
    tasks: Vec<Option<JoinHandle<()>>>,
    state: RunState,
    data_dir: PathBuf,
    events: mpsc::UnboundedReceiver<Event>,
    events_tx: mpsc::UnboundedSender<Event>,
    http: reqwest::Client,
}

impl Supervisor {
    fn new(specs: Vec<Arc<ProcessSpec>>, shared: Arc<Shared>, state: RunState, data_dir: PathBuf) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let stops = specs.iter().map(|_| watch::channel(None).0).collect();
        let tasks = specs.iter().map(|_| None).collect();
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(1)).build().unwrap_or_default();
        Self { specs, shared, stops, tasks, state, data_dir, events, events_tx, http }
    }

    /// The distinct stages of the processes, in start order.
    fn stages(&self) -> Vec<Stage> {
        let mut stages: Vec<Stage> = self.specs.iter().map(|s| s.service.stage).collect();
        stages.sort();
        stages.dedup();
        stages
    }

    fn in_stage(&self, stage: Stage) -> Vec<usize> {
        (0..self.specs.len()).filter(|&i| self.specs[i].service.stage == stage).collect()
    }

    fn launch(&mut self, index: usize) {
        let stop = self.stops[index].subscribe();
        let task =
            process::supervise(index, self.specs[index].clone(), self.shared.clone(), stop, self.events_tx.clone());
        self.tasks[index] = Some(task);
    }

    /// Starts the stages in order, each once the one before is ready. Within
    /// a stage the first instance of every service starts first and the
    /// replicas once it is ready, so one process alone creates and migrates
    /// the database the replicas share.
    async fn start(&mut self, shutdown: &Shutdown) -> Result<(), Abort> {
        let deadline = Instant::now() + START_DEADLINE;
        for stage in self.stages() {
            let (first, replicas): (Vec<usize>, Vec<usize>) =
                self.in_stage(stage).into_iter().partition(|&i| self.specs[i].instance == 1);
            for group in [first, replicas] {
                for &index in &group {
                    self.launch(index);
                }
                self.wait_ready(group, deadline, shutdown).await?;
            }
        }
        self.shared.supervising.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Polls `/health/ready` of `pending` until all answer 200.
    async fn wait_ready(
        &mut self,
        mut pending: Vec<usize>,
        deadline: Instant,
        shutdown: &Shutdown,
    ) -> Result<(), Abort> {
        loop {
            let probes = pending.iter().map(|&i| is_ready(&self.http, &self.specs[i].url));
            let ready = futures_util::future::join_all(probes).await;
            pending = pending.into_iter().zip(ready).filter(|(_, ready)| !ready).map(|(i, _)| i).collect();
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let names: Vec<&str> = pending.iter().map(|&i| &*self.specs[i].tag).collect();
                return Err(Abort::Failed(format!(
                    "not ready within {} s: {}; see their lines above or in {}",
                    START_DEADLINE.as_secs(),
                    names.join(", "),
                    self.data_dir.join("logs").display()
                )));
            }
            tokio::select! {
                Some(event) = self.events.recv() => {
                    if let Some(failure) = self.on_event(event) {
                        return Err(Abort::Failed(failure));
                    }
                }
                () = shutdown.clone().wait() => return Err(Abort::Signal),
                () = tokio::time::sleep(READY_POLL) => {}
            }
        }
    }

    /// Records what a process task reports; returns a failure description if start-up must end.
    fn on_event(&mut self, event: Event) -> Option<String> {
        match event {
            Event::Started { index, pid, restarts } => {
                if let Some(process) = self.state.processes.get_mut(index) {
                    process.pid = pid;
                    process.restarts = restarts;
                }
                self.save_state();
                None
            }
            Event::Failed { index, reason, recent } => {
                let spec = &self.specs[index];
                if self.shared.supervising.load(Ordering::SeqCst) {
                    // It ended in the instant between its readiness and the end of start-up: supervise it anew.
                    self.shared.sink.log(
                        Level::Warn,
                        format!("{} exited ({reason}); restarting it", spec.tag),
                        Map::new(),
                    );
                    self.launch(index);
                    return None;
                }
                let mut text = format!("{} exited during start-up ({reason})", spec.tag);
                if recent.is_empty() {
                    text.push_str(" without writing anything");
                } else {
                    text.push_str("; its last lines:");
                    for line in recent {
                        text.push_str("\n  ");
                        text.push_str(&line);
                    }
                }
                Some(text)
            }
        }
    }

    fn save_state(&self) {
        if let Err(e) = self.state.write(&self.data_dir) {
            self.shared.sink.log(Level::Error, format!("cannot update the run state: {e}"), Map::new());
        }
    }

    /// The table printed once everything is ready.
    fn summary(&self, took: Duration) -> String {
        let rows: Vec<Vec<String>> = self
            .state
            .processes
            .iter()
            .map(|p| {
                vec![p.service.clone(), p.instance.to_string(), p.pid.to_string(), p.url.clone(), "healthy".to_owned()]
            })
            .collect();
        let mut out = format!("\n{}", crate::table::render(&["service", "instance", "pid", "url", "status"], &rows));
        out.push_str(&format!("\ngateway  {}\ndocs     {}/docs\n", self.state.gateway_url, self.state.gateway_url));
        out.push_str(&format!(
            "all {} processes healthy in {:.1} s; Ctrl-C stops them\n",
            rows.len(),
            took.as_secs_f64()
        ));
        out
    }

    /// Supervises until Ctrl-C or SIGTERM.
    async fn watch(&mut self, shutdown: &Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.clone().wait() => return,
                Some(event) = self.events.recv() => { self.on_event(event); }
            }
        }
    }

    /// Stops every process, the edge first, each stage waiting for the one
    /// after it; whatever still runs when the grace period ends is killed.
    async fn stop_all(&mut self) {
        let deadline = Instant::now() + STOP_GRACE;
        self.shared.sink.log(Level::Info, format!("stopping {} processes", self.specs.len()), Map::new());
        for stage in self.stages().into_iter().rev() {
            let indices = self.in_stage(stage);
            for &index in &indices {
                let _ = self.stops[index].send(Some(deadline));
            }
            for index in indices {
                if let Some(task) = self.tasks[index].take() {
                    let _ = task.await;
                }
            }
        }
        // Restart reports that raced with the stop are moot now.
        while self.events.try_recv().is_ok() {}
        if let Err(e) = RunState::remove(&self.data_dir) {
            self.shared.sink.log(Level::Error, format!("cannot remove the run state: {e}"), Map::new());
        }
        self.shared.sink.log(Level::Info, "all processes stopped", Map::new());
    }
}

/// Whether `url` answers 200 on `/health/ready`.
async fn is_ready(http: &reqwest::Client, url: &str) -> bool {
    http.get(format!("{url}/health/ready")).send().await.is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::fake::CATALOGUE;

    fn tags(plan: &[(&'static Service, u32)]) -> Vec<String> {
        plan.iter().map(|(s, n)| format!("{}-{n}", s.name)).collect()
    }

    #[test]
    fn plan_starts_the_bus_then_the_core_with_replicas_then_the_edge() {
        let plan = plan(CATALOGUE, &[("catalog".into(), 2)], Profile::Embedded).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tags(&plan), ["broker-1", "identity-1", "catalog-1", "catalog-2", "gateway-1"]);
    }

    #[test]
    fn the_distributed_profile_runs_no_broker_and_the_broker_runs_once() {
        let plan = plan(CATALOGUE, &[], Profile::Distributed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tags(&plan), ["identity-1", "catalog-1", "gateway-1"]);
        let twice = plan_error(&[("broker".into(), 2)]);
        assert!(twice.contains("alone owns its log"), "{twice}");
    }

    fn plan_error(replicas: &[(String, u32)]) -> String {
        plan(CATALOGUE, replicas, Profile::Embedded).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn plan_refuses_unknown_services_and_edge_replicas() {
        let unknown = plan_error(&[("catalogue".into(), 2)]);
        assert!(
            unknown.contains("unknown service `catalogue`") && unknown.contains("broker, identity, catalog, gateway"),
            "{unknown}"
        );
        let edge = plan_error(&[("gateway".into(), 2)]);
        assert!(edge.contains("one instance"), "{edge}");
    }

    #[test]
    fn replicas_flag_needs_a_name_and_a_sane_count() {
        assert_eq!(parse_replicas("catalog=3"), Ok(("catalog".into(), 3)));
        assert!(parse_replicas("catalog").is_err());
        assert!(parse_replicas("catalog=0").is_err());
        assert!(parse_replicas("catalog=many").is_err());
    }

    #[test]
    fn command_lines_carry_ports_credentials_upstreams_and_the_bus_and_the_environment_databases() {
        let plan = plan(CATALOGUE, &[("catalog".into(), 2)], Profile::Embedded).unwrap_or_else(|e| panic!("{e}"));
        let database = "postgres://bazaar:s3cret@h/bazaar_catalog";
        let databases = BTreeMap::from([("catalog", database.to_owned())]);
        let layout = Layout {
            data_dir: Path::new("/data"),
            config: &[PathBuf::from("/etc/bazaar.toml")],
            edge_port: 8080,
            gateway_url: "http://127.0.0.1:8080",
            credentials: Path::new("/data/admin.credentials"),
            databases: &databases,
            nats_urls: &[],
        };
        let specs = specs(&plan, &layout).unwrap_or_else(|e| panic!("{e}"));
        let line =
            |i: usize| -> Vec<String> { specs[i].args.iter().map(|a| a.to_string_lossy().into_owned()).collect() };

        let broker = line(0);
        assert_eq!(broker[..2], ["serve", "broker"]);
        let identity = line(1);
        assert_eq!(
            identity[..8],
            ["serve", "identity", "--data-dir", "/data", "--port", &specs[1].port.to_string(), "--instance", "1"]
        );
        assert!(identity.contains(&r#"admin_credentials_file="/data/admin.credentials""#.to_owned()), "{identity:?}");
        assert!(identity.windows(2).any(|w| w == ["--config", "/etc/bazaar.toml"]));
        assert!(identity.contains(&format!(r#"bus.url="{}""#, specs[0].url)), "{identity:?}");

        let catalog2 = line(3);
        assert!(catalog2.windows(2).any(|w| w == ["--instance", "2"]));
        assert!(!catalog2.iter().any(|a| a.contains("database.url") || a.contains("s3cret")), "{catalog2:?}");
        assert_eq!(specs[3].env, [("BAZAAR_CATALOG__DATABASE__URL".to_owned(), database.to_owned())]);
        assert!(!catalog2.iter().any(|a| a.starts_with("admin_credentials_file")));
        assert!(catalog2.contains(&format!(r#"bus.url="{}""#, specs[0].url)), "{catalog2:?}");
        assert!(specs[1].env.is_empty() && specs[4].env.is_empty(), "only catalog has a database here");

        let gateway = line(4);
        assert_eq!(specs[4].port, 8080);
        assert_eq!(specs[4].url, "http://127.0.0.1:8080");
        let upstream = format!(r#"upstreams.catalog=["{}","{}"]"#, specs[2].url, specs[3].url);
        assert!(gateway.contains(&upstream), "{gateway:?}");
        assert!(gateway.contains(&format!(r#"upstreams.identity=["{}"]"#, specs[1].url)), "{gateway:?}");
        assert!(!gateway.iter().any(|a| a.contains("upstreams.broker")), "the bus is not public: {gateway:?}");

        let ports: std::collections::BTreeSet<u16> = specs.iter().map(|s| s.port).collect();
        assert_eq!(ports.len(), 5, "every process has its own port");
    }

    #[test]
    fn in_the_distributed_profile_services_are_pointed_at_nats() {
        let plan = plan(CATALOGUE, &[], Profile::Distributed).unwrap_or_else(|e| panic!("{e}"));
        let nats = ["nats://10.0.0.1:4222".to_owned(), "nats://10.0.0.2:4222".to_owned()];
        let layout = Layout {
            data_dir: Path::new("/data"),
            config: &[],
            edge_port: 8080,
            gateway_url: "http://127.0.0.1:8080",
            credentials: Path::new("/data/admin.credentials"),
            databases: &BTreeMap::new(),
            nats_urls: &nats,
        };
        let specs = specs(&plan, &layout).unwrap_or_else(|e| panic!("{e}"));
        let catalog: Vec<String> = specs[1].args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(!catalog.iter().any(|a| a.contains("nats") || a.starts_with("bus.")), "{catalog:?}");
        let env: std::collections::BTreeMap<_, _> = specs[1].env.iter().cloned().collect();
        assert_eq!(env.get("BAZAAR_CATALOG__BUS__TRANSPORT").map(String::as_str), Some("jetstream"));
        assert_eq!(env.get("BAZAAR_CATALOG__BUS__NATS_URLS"), Some(&serde_json::json!(nats).to_string()));
        assert_eq!(env.get("BAZAAR_CATALOG__BUS__REPLICAS").map(String::as_str), Some("1"), "two servers: R1");
    }

    #[test]
    fn wildcard_binds_are_reached_on_loopback() {
        assert_eq!(reachable_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(reachable_host("::"), "127.0.0.1");
        assert_eq!(reachable_host("10.0.0.5"), "10.0.0.5");
        assert_eq!(reachable_host("::1"), "[::1]");
    }

    #[tokio::test]
    async fn distributed_profile_without_a_server_says_how_to_name_one() {
        let plan = plan(CATALOGUE, &[], Profile::Distributed).unwrap_or_else(|e| panic!("{e}"));
        let error = postgres_databases(&plan, None).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("--postgres-url") && error.contains("BAZAAR_POSTGRES_URL"), "{error}");
    }
}
