//! `bazaar up`, `status` and `logs` as a user runs them: the real binary,
//! its exit codes and messages, and the platform's life cycle.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};
use std::time::Duration;

use testkit::{Platform, PlatformOptions};

const BIN: &str = env!("CARGO_BIN_EXE_bazaar");

fn bazaar(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("NO_COLOR", "1").output().unwrap_or_else(|e| panic!("cannot run bazaar: {e}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn up_refuses_a_port_that_is_taken() {
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap_or_else(|e| panic!("bind: {e}"));
    let port = taken.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{e}")).to_string();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    let output = bazaar(&["up", "--data-dir", &data.to_string_lossy(), "--port", &port]);
    assert!(!output.status.success());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("port {port} is in use; stop what uses it or pass --port")),
        "{}",
        stderr(&output)
    );
    assert!(!data.join("admin.credentials").exists(), "nothing is set up when up cannot start");
}

#[test]
fn up_refuses_a_data_dir_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap_or_else(|e| panic!("{e}"));
    let data = file.join("data");
    let port = testkit::free_port().to_string();
    let output = bazaar(&["up", "--data-dir", &data.to_string_lossy(), "--port", &port]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains(&format!("the data dir {} is not usable", data.display())), "{message}");
    assert!(message.contains("pass --data-dir"), "{message}");
}

#[test]
fn serve_lists_the_valid_names_for_an_unknown_service() {
    let output = bazaar(&["serve", "catalogue"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("identity, catalog, gateway"), "{}", stderr(&output));
}

#[test]
fn status_fails_when_nothing_runs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = bazaar(&["status", "--data-dir", &dir.path().to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("bazaar is not running in {}", dir.path().display())),
        "{}",
        stderr(&output)
    );
}

#[test]
fn every_command_has_help() {
    for command in ["up", "serve", "status", "logs", "dlq"] {
        let output = bazaar(&[command, "--help"]);
        assert!(output.status.success(), "{command} --help");
        assert!(stdout(&output).contains("Usage: bazaar"), "{command}: {}", stdout(&output));
    }
}

#[test]
fn the_distributed_profile_without_nats_says_how_to_name_it() {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = bazaar(&[
        "up",
        "--data-dir",
        &data.path().join("d").to_string_lossy(),
        "--port",
        &testkit::free_port().to_string(),
        "--profile",
        "distributed",
        "--postgres-url",
        "postgres://bazaar@127.0.0.1:1/postgres",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("--nats-url") && stderr(&output).contains("BAZAAR_NATS_URL"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn up_runs_supervises_and_stops_the_platform() {
    let platform = Platform::start(PlatformOptions::new(BIN).args(["--replicas", "catalog=2"]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let data = platform.data_dir().to_string_lossy().into_owned();

    // The state file names every process, with the gateway on the public port.
    let state = platform.state().unwrap_or_else(|| panic!("no state file:\n{}", platform.output()));
    let processes = state["processes"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> =
        processes.iter().map(|p| format!("{}-{}", p["service"].as_str().unwrap_or(""), p["instance"])).collect();
    assert_eq!(names, ["broker-1", "identity-1", "catalog-1", "catalog-2", "gateway-1"]);
    assert_eq!(state["gateway_url"], platform.gateway_url());
    assert!(processes.iter().all(|p| p["pid"].as_u64().unwrap_or(0) > 0 && p["restarts"] == 0));
    assert!(platform.output().contains("all 5 processes healthy in"), "{}", platform.output());

    // The data dir holds password hashes and keys: only its owner may enter it.
    let mode = std::fs::metadata(platform.data_dir()).map(|m| m.permissions().mode() & 0o777).unwrap_or_default();
    assert_eq!(mode, 0o700, "data dir mode {mode:o}");

    // First start wrote the admin credentials, readable by the owner only.
    let (email, password) = platform.admin_credentials();
    assert_eq!(email, "admin@bazaar.local");
    assert_eq!(password.len(), 24);
    assert!(!platform.output().contains(&password), "the password is never printed");

    // `status` reports each process healthy.
    let status = bazaar(&["status", "--data-dir", &data, "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    let statuses: Vec<&str> = report["processes"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(statuses.len(), 5, "{report}");
    assert!(statuses.iter().all(|s| *s == "healthy" || *s == "degraded"), "{report}");

    // A second `up` on the same data dir refuses.
    let second = bazaar(&["up", "--data-dir", &data, "--port", &testkit::free_port().to_string()]);
    assert_eq!(second.status.code(), Some(1));
    assert!(stderr(&second).contains("bazaar is already running in"), "{}", stderr(&second));

    // A process that dies is restarted on the same port, and the state file says so.
    let victim = processes[2]["pid"].as_u64().unwrap_or(0) as i32;
    let port = processes[2]["port"].as_u64().unwrap_or(0);
    let killed = Command::new("kill").args(["-9", &victim.to_string()]).status().map(|s| s.success()).unwrap_or(false);
    assert!(killed);
    let restarted = testkit::wait_until(Duration::from_secs(20), || async {
        platform.state().is_some_and(|s| s["processes"][2]["restarts"] == 1 && s["processes"][2]["pid"] != victim)
    })
    .await;
    assert!(restarted, "{}", platform.output());
    let health = format!("http://127.0.0.1:{port}/health/ready");
    let http = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
    let ready = testkit::wait_until(Duration::from_secs(20), || async {
        http.get(&health).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "the restarted process answers on its old port");

    // Every process's lines are in logs/, the supervisor's too, and `logs` finds them.
    assert!(platform.logs("catalog").iter().any(|l| l["service"] == "catalog-2"));
    assert!(
        platform
            .logs("up")
            .iter()
            .any(|l| l["level"] == "warn" && l["message"].as_str().is_some_and(|m| m.contains("exited unexpectedly")))
    );
    for supervisor in ["bazaar-up", "up"] {
        let warnings = bazaar(&["logs", "--data-dir", &data, "--service", supervisor, "--level", "warn"]);
        assert!(warnings.status.success(), "{supervisor}: {}", stderr(&warnings));
        assert!(stdout(&warnings).contains("catalog-1 exited unexpectedly"), "{supervisor}: {}", stdout(&warnings));
    }
    let nope = bazaar(&["logs", "--data-dir", &data, "--service", "nope"]);
    assert_eq!(nope.status.code(), Some(1), "{}", stdout(&nope));
    assert!(stdout(&nope).is_empty(), "{}", stdout(&nope));
    assert!(
        stderr(&nope).contains("no logs of `nope`")
            && stderr(&nope).contains(
                "broker (broker-1), catalog (catalog-1, catalog-2), gateway (gateway-1), identity (identity-1), up"
            ),
        "{}",
        stderr(&nope)
    );

    // SIGTERM stops everything and exits cleanly, removing the state file.
    let pids: Vec<u64> = platform
        .state()
        .and_then(|s| s["processes"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    let data_dir = platform.data_dir().to_path_buf();
    let status = platform.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(!data_dir.join("run/state.json").exists());
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} outlived up");
    }
}

#[tokio::test]
async fn distributed_profile_gives_each_service_its_own_postgres_database_and_uses_jetstream() {
    let Some(pg) = testkit::postgres_or_skip().await else { return };
    let Some(nats) = testkit::nats_or_skip().await else { return };
    let platform = Platform::start(PlatformOptions::new(BIN).args([
        "--profile",
        "distributed",
        "--postgres-url",
        &pg.server_url(),
        "--nats-url",
        &nats.url(),
    ]))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(platform.state().map(|s| s["profile"].clone()), Some(serde_json::json!("distributed")));
    for service in ["identity", "catalog"] {
        let url = pg.url(&format!("bazaar_{service}"));
        let connected = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await;
        assert!(connected.is_ok(), "database bazaar_{service} exists: {connected:?}");
    }
    assert!(!platform.data_dir().join("services/catalog/catalog.sqlite").exists(), "no SQLite file in this profile");
    assert!(!platform.data_dir().join("broker").exists(), "no embedded broker in this profile");
    let services: Vec<String> = platform
        .state()
        .and_then(|s| s["processes"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["service"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(services, ["identity", "catalog", "gateway"]);
    // The database URLs (with their passwords) reach the processes through
    // their environment, which only their owner can read, not their command lines.
    for process in platform.state().and_then(|s| s["processes"].as_array().cloned()).unwrap_or_default() {
        let service = process["service"].as_str().unwrap_or_default().to_owned();
        let pid = process["pid"].as_u64().unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains("database.url"), "{service}: {cmdline:?}");
        let environ =
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default()).into_owned();
        let variable = format!("BAZAAR_{}__DATABASE__URL=postgres", service.to_uppercase());
        assert_eq!(environ.contains(&variable), service != "gateway", "{service}: {variable}");
        let bus = format!("BAZAAR_{}__BUS__NATS_URLS=", service.to_uppercase());
        assert_eq!(environ.contains(&bus), service != "gateway", "{service}: {bus}");
        assert!(!String::from_utf8_lossy(&cmdline).contains("nats://"), "{service}: {cmdline:?}");
    }
    // The seeded catalog's product changes reach JetStream through catalog's outbox.
    let jetstream = bus::JetStreamTransport::connect(&[nats.url()], Default::default()).await.unwrap();
    let watcher = bus::Subscription {
        group: "watcher".into(),
        types: vec!["catalog.product-changed.v1".into()],
        ack_wait: Duration::from_secs(30),
    };
    jetstream.subscribe(&watcher).await.unwrap();
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen < 240 {
        assert!(tokio::time::Instant::now() < deadline, "only {seen} product changes reached JetStream");
        let batch = jetstream.fetch("watcher", 500, Duration::from_secs(1)).await.unwrap();
        jetstream.ack("watcher", &batch).await.unwrap();
        seen += batch.len();
    }
    assert!(platform.stop().is_some_and(|s| s.success()));
}

#[test]
fn serve_stops_at_start_naming_a_bad_key_and_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().to_string_lossy().into_owned();
    let from_env = Command::new(BIN)
        .args(["serve", "catalog", "--data-dir", &data, "--port", "0"])
        .env("BAZAAR_CATALOG__HTTP__PROT", "9000")
        .output()
        .unwrap_or_else(|e| panic!("cannot run bazaar: {e}"));
    assert!(!from_env.status.success());
    assert!(stderr(&from_env).contains("catalog.http.prot"), "{}", stderr(&from_env));
    assert!(stderr(&from_env).contains("unknown field"), "{}", stderr(&from_env));

    let file = dir.path().join("bazaar.toml");
    std::fs::write(&file, "[catalog]\ncache_max_age_secs = \"soon\"\n").unwrap_or_else(|e| panic!("{e}"));
    let from_file =
        bazaar(&["serve", "catalog", "--data-dir", &data, "--port", "0", "--config", &file.to_string_lossy()]);
    assert!(!from_file.status.success());
    assert!(stderr(&from_file).contains("catalog.cache_max_age_secs"), "{}", stderr(&from_file));
    assert!(stderr(&from_file).contains("bazaar.toml"), "the message names the file: {}", stderr(&from_file));
}

#[test]
fn serve_refuses_a_misspelt_section_naming_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let file = dir.path().join("bazaar.toml");
    std::fs::write(&file, "[catalg]\ncache_max_age_secs = 30\n").unwrap_or_else(|e| panic!("{e}"));
    let output = bazaar(&["serve", "catalog", "--data-dir", &data, "--port", "0", "--config", &file.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("`catalg` is not a section"), "{message}");
    assert!(message.contains(&file.display().to_string()), "the message names the file: {message}");
    assert!(message.contains("identity, catalog, gateway"), "{message}");

    std::fs::write(&file, "[catalog]\ncache_max_age_secs = 30\n").unwrap_or_else(|e| panic!("{e}"));
    let from_env = Command::new(BIN)
        .args(["serve", "catalog", "--data-dir", &data, "--port", "0", "--config", &file.to_string_lossy()])
        .env("BAZAAR_CATLOG__HTTP__PORT", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run bazaar: {e}"));
    assert_eq!(from_env.status.code(), Some(1));
    assert!(stderr(&from_env).contains("`catlog` is not a section"), "{}", stderr(&from_env));
}

#[test]
fn serve_makes_an_open_data_dir_private_and_says_so() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("bazaar.toml");
    // A setting that fails only after the data dir is secured, so the process stops by itself.
    std::fs::write(&file, "[catalog]\ncache_max_age_secs = \"soon\"\n").unwrap_or_else(|e| panic!("{e}"));
    let output = bazaar(&[
        "serve",
        "catalog",
        "--data-dir",
        &data.to_string_lossy(),
        "--port",
        "0",
        "--config",
        &file.to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let mode = std::fs::metadata(&data).map(|m| m.permissions().mode() & 0o777).unwrap_or_default();
    assert_eq!(mode, 0o700, "data dir mode {mode:o}");
    assert!(stdout(&output).contains("made it private (mode 700)"), "{}", stdout(&output));
}

#[test]
fn up_refuses_a_misspelt_section_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("bazaar.toml");
    std::fs::write(&file, "[catalg]\nseed_demo = false\n").unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    let port = testkit::free_port().to_string();
    let output =
        bazaar(&["up", "--data-dir", &data.to_string_lossy(), "--port", &port, "--config", &file.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("catalg"), "{}", stderr(&output));
    assert!(!data.join("admin.credentials").exists(), "nothing was started: {}", stdout(&output));
}
