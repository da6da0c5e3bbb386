//! A private PostgreSQL server for one test: its own temp dir, a free port,
//! trust authentication for user `bazaar`, durability off for speed. It stops
//! and its files go away when the value is dropped.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root (as in
//! containers) the server runs as the `postgres` OS user: the temp dir is
//! handed to that user and `initdb`/`postgres` are started with its uid and gid.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use tempfile::TempDir;

/// The role the server is initialised with; it needs no password.
pub const USER: &str = "bazaar";
/// How long the server may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a stopping server may take before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// How many times a start is retried when another process took the port first.
const PORT_ATTEMPTS: usize = 3;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The server binaries are not installed; the text says where they were looked for.
    #[error("PostgreSQL binaries not found ({0})")]
    Missing(String),
    /// A step of setting up the server failed; the text says which and why.
    #[error("{0}")]
    Setup(String),
    /// A file or process operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A running PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    child: Option<Child>,
    // Removed after the server has stopped: fields drop after `Drop::drop` runs.
    root: TempDir,
}

impl Postgres {
    /// Initialises a fresh cluster in a temp dir and starts a server on a free port.
    ///
    /// Returns [`PostgresError::Missing`] when the binaries are not installed
    /// (see [`crate::postgres_or_skip`] for tests that should then skip).
    pub async fn start() -> Result<Self, PostgresError> {
        let bindir = find_bindir()?;
        let root = tempfile::Builder::new().prefix("bazaar-pg-").tempdir()?;
        let owner = server_owner(root.path())?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(root.path(), Some(uid), Some(gid))?;
        }
        let data = root.path().join("data");
        initdb(&bindir, root.path(), &data, owner).await?;
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = crate::free_port();
            let mut child = spawn_server(&bindir, root.path(), &data, port, owner)?;
            match wait_until_accepting(&mut child, &server_url(port), root.path()).await {
                Ok(()) => return Ok(Self { port, child: Some(child), root }),
                Err(error) => {
                    stop(child);
                    last_error = error;
                    // Another process took the port between picking and binding it: try another.
                    if !last_error.contains("could not bind") {
                        break;
                    }
                }
            }
        }
        Err(PostgresError::Setup(format!("PostgreSQL did not start: {last_error}")))
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL of the server's maintenance database, as `bazaar up --postgres-url` takes it.
    pub fn server_url(&self) -> String {
        server_url(self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the cluster, the socket and `postgres.log`.
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// Creates database `name` (if missing) and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String, chassis::db::DbError> {
        chassis::db::ensure_postgres_database(&self.server_url(), name).await
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop(child);
        }
    }
}

fn server_url(port: u16) -> String {
    format!("postgres://{USER}@127.0.0.1:{port}/postgres")
}

/// Polls with real connections until the server accepts one, exits, or the deadline passes.
async fn wait_until_accepting(child: &mut Child, url: &str, root: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited ({status}): {}", log_tail(root)));
        }
        if let Ok(conn) = sqlx::PgConnection::connect(url).await {
            let _ = conn.close().await;
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("no connection within {} s: {}", START_DEADLINE.as_secs(), log_tail(root)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last lines the server logged, for error messages.
fn log_tail(root: &Path) -> String {
    let log = std::fs::read_to_string(root.join("postgres.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// Stops the server: a fast shutdown, then SIGKILL if it takes too long.
fn stop(child: Child) {
    // SIGINT is PostgreSQL's fast shutdown. SIGTERM (smart) would wait for
    // every client to disconnect, and a test may still hold a pool.
    crate::sys::stop(child, libc::SIGINT, STOP_DEADLINE);
}

/// Finds the directory holding `initdb` and `postgres`: `$BAZAAR_PG_BINDIR`,
/// `pg_config --bindir`, the newest `/usr/lib/postgresql/*/bin`, or `PATH`.
fn find_bindir() -> Result<PathBuf, PostgresError> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("BAZAAR_PG_BINDIR") {
        candidates.push(dir.into());
    }
    if let Ok(output) = std::process::Command::new("pg_config").arg("--bindir").stderr(Stdio::null()).output()
        && output.status.success()
    {
        candidates.push(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.split('.').next()?.parse().ok()?, e.path().join("bin"))))
                .collect()
        })
        .unwrap_or_default();
    versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    candidates.extend(versioned.into_iter().map(|(_, dir)| dir));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates.into_iter().find(|dir| has_server(dir)).ok_or_else(|| {
        PostgresError::Missing(
            "looked in $BAZAAR_PG_BINDIR, `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH for initdb and postgres"
                .into(),
        )
    })
}

/// The uid and gid to run the server as: `None` (this user) unless we are
/// root, then the `postgres` OS user. `probe` is a file we just created, so
/// its owner is our effective uid.
fn server_owner(probe: &Path) -> Result<Option<(u32, u32)>, PostgresError> {
    if std::fs::metadata(probe)?.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .map(Some)
        .ok_or_else(|| {
            PostgresError::Setup(
                "tests run as root, and PostgreSQL refuses root, but there is no `postgres` OS user to run it as; \
                 create one (useradd postgres) or run the tests as another user"
                    .into(),
            )
        })
}

/// Runs `initdb` for a trusting, UTF-8, C-locale cluster owned by user `bazaar`.
async fn initdb(bindir: &Path, root: &Path, data: &Path, owner: Option<(u32, u32)>) -> Result<(), PostgresError> {
    let mut command = tokio::process::Command::new(bindir.join("initdb"));
    command
        .arg("-D")
        .arg(data)
        .args(["-A", "trust", "-U", USER, "-E", "UTF8", "--locale=C", "--no-sync"])
        .current_dir(root)
        .stdin(Stdio::null());
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    let output = command.output().await.map_err(|e| PostgresError::Setup(format!("cannot run initdb: {e}")))?;
    if !output.status.success() {
        return Err(PostgresError::Setup(format!(
            "initdb failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// Starts `postgres` on loopback `port`, its socket in `root`, logging to `root/postgres.log`.
fn spawn_server(
    bindir: &Path,
    root: &Path,
    data: &Path,
    port: u16,
    owner: Option<(u32, u32)>,
) -> Result<Child, PostgresError> {
    let log = std::fs::File::create(root.join("postgres.log"))?;
    let mut command = std::process::Command::new(bindir.join("postgres"));
    command
        .arg("-D")
        .arg(data)
        .arg("-k")
        .arg(root)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
        // Durability is pointless for a server that lives as long as one test.
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command.spawn().map_err(|e| PostgresError::Setup(format!("cannot start postgres: {e}")))
}
