//! `bazaar status`: what `bazaar up` is running in a data dir and how each
//! process answers its `/health` right now.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

use crate::state::{ProcessState, RunState};

/// How long one process may take to answer. A process asks each of its own
/// dependencies with a 1 s timeout before it answers (`DEPENDENCY_TIMEOUT` in
/// the chassis health module), so a gateway whose upstream hangs answers
/// `degraded` after just over 1 s; waiting only as long would call it
/// `unreachable` instead.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// Options of `bazaar status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory of the platform.
    #[arg(long, value_name = "DIR", env = "BAZAAR_DATA_DIR", default_value = ".bazaar")]
    pub data_dir: PathBuf,
    /// Prints JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One process with its current health.
#[derive(Debug, Serialize)]
struct ProcessStatus {
    #[serde(flatten)]
    process: ProcessState,
    /// `healthy`, `degraded`, `unhealthy` (from its `/health`) or `unreachable`.
    status: String,
}

/// The platform with its processes' current health.
#[derive(Debug, Serialize)]
struct Status {
    started_at: String,
    profile: crate::state::Profile,
    gateway_url: String,
    supervisor_pid: u32,
    processes: Vec<ProcessStatus>,
}

/// Prints the status; fails when no platform is running in the data dir.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let state = match RunState::read(&args.data_dir)? {
        Some(state) if state.supervisor_is_running() => state,
        _ => bail!("bazaar is not running in {}; start it with `bazaar up --data-dir {0}`", args.data_dir.display()),
    };
    let http = client()?;
    let checks = state.processes.iter().map(|p| health(&http, &p.url));
    let statuses = futures_util::future::join_all(checks).await;
    let status = Status {
        started_at: state.started_at,
        profile: state.profile,
        gateway_url: state.gateway_url,
        supervisor_pid: state.supervisor_pid,
        processes: state
            .processes
            .into_iter()
            .zip(statuses)
            .map(|(process, status)| ProcessStatus { process, status })
            .collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

fn render(status: &Status) -> String {
    let rows: Vec<Vec<String>> = status
        .processes
        .iter()
        .map(|p| {
            vec![
                p.process.service.clone(),
                p.process.instance.to_string(),
                p.process.pid.to_string(),
                p.process.url.clone(),
                p.status.clone(),
                p.process.restarts.to_string(),
            ]
        })
        .collect();
    let mut out = crate::table::render(&["service", "instance", "pid", "url", "status", "restarts"], &rows);
    out.push_str(&format!(
        "\ngateway  {}\nprofile  {}, supervisor pid {}, up since {}\n",
        status.gateway_url, status.profile, status.supervisor_pid, status.started_at
    ));
    out
}

/// The client that asks the processes.
fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().no_proxy().timeout(HEALTH_TIMEOUT).build()
}

/// The `status` field of the process's health document, or `unreachable`.
async fn health(http: &reqwest::Client, url: &str) -> String {
    let Ok(response) = http.get(format!("{url}/health")).send().await else {
        return "unreachable".to_owned();
    };
    let code = response.status();
    match response.json::<serde_json::Value>().await {
        Ok(body) => match body.get("status").and_then(serde_json::Value::as_str) {
            Some(status) => status.to_owned(),
            None => format!("http {}", code.as_u16()),
        },
        Err(_) => format!("http {}", code.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_state_file_means_not_running() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let args = Args { data_dir: dir.path().to_path_buf(), json: false };
        let error = run(args).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.starts_with(&format!("bazaar is not running in {}", dir.path().display())), "{error}");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let http = client().unwrap_or_else(|e| panic!("{e}"));
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(health(&http, &format!("http://127.0.0.1:{port}")).await, "unreachable");
    }

    #[tokio::test]
    async fn a_process_waiting_out_its_dependency_timeout_is_degraded_not_unreachable() {
        // The process answers only after its own 1 s dependency timeout ran out.
        let app = axum::Router::new().route(
            "/health",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(1200)).await;
                axum::Json(serde_json::json!({"status": "degraded"}))
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap_or_else(|e| panic!("{e}"));
        let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
        chassis::task::spawn("fake-health", async move { axum::serve(listener, app).await });
        let http = client().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(health(&http, &url).await, "degraded");
    }

    #[test]
    fn the_table_lists_each_process_with_its_status() {
        let status = Status {
            started_at: "2025-01-01T00:00:00Z".into(),
            profile: crate::state::Profile::Embedded,
            gateway_url: "http://127.0.0.1:8080".into(),
            supervisor_pid: 10,
            processes: vec![ProcessStatus {
                process: ProcessState {
                    service: "catalog".into(),
                    instance: 1,
                    pid: 11,
                    port: 4000,
                    url: "http://127.0.0.1:4000".into(),
                    restarts: 2,
                },
                status: "healthy".into(),
            }],
        };
        let text = render(&status);
        assert!(text.starts_with("SERVICE  INSTANCE  PID  URL                    STATUS   RESTARTS\n"), "{text}");
        assert!(text.contains("catalog  1         11   http://127.0.0.1:4000  healthy  2\n"), "{text}");
        let json = serde_json::to_value(&status).unwrap_or_default();
        assert_eq!(json["processes"][0]["status"], "healthy");
        assert_eq!(json["processes"][0]["port"], 4000);
    }
}
