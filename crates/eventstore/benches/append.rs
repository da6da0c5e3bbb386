//! Append throughput of the event store beside raw inserts of the same rows,
//! measured in one run on one fresh database.
//!
//! The raw baseline writes rows of the `events` shape (same columns, same
//! primary key and `UNIQUE (stream_id, version)` index) into a table of its
//! own, through the same `Db` (sqlx `Any`, the single SQLite writer, `BEGIN
//! IMMEDIATE`), so the ratio shows the store's own work per append: input
//! checks, the stream-version and global-position lookups, the timestamp and
//! the version check.
//!
//! Sizes come from the environment: `BENCH_SINGLE` (appends of one event,
//! default 20 000), `BENCH_BATCHED` (events appended in batches, default
//! 200 000) and `BENCH_BATCH` (events per batch, default 100). When
//! `BENCH_POSTGRES_URL` names a PostgreSQL server, the same cases run there too
//! in a database created for the run and dropped after it.

use std::error::Error;
use std::time::{Duration, Instant};

use chassis::db::{Db, Dialect, ensure_postgres_database, replace_database_in_url};
use eventstore::{EventStore, ExpectedVersion, NewEvent};
use serde_json::{Value, json};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Streams the events are spread over, so the version lookup searches a real index.
const STREAMS: usize = 100;

const EVENT_TYPE: &str = "order-line-added.v1";

/// Columns per row, for numbering placeholders.
const COLUMNS: usize = 7;

/// A timestamp of the length the store writes, for the raw rows.
const RAW_RECORDED_AT: &str = "2026-11-25T12:00:00.000000Z";

struct Sizes {
    single: usize,
    batched: usize,
    batch: usize,
}

impl Sizes {
    fn from_env() -> BenchResult<Self> {
        let read = |name: &str, default: usize| -> BenchResult<usize> {
            match std::env::var(name) {
                Ok(value) => Ok(value.trim().parse().map_err(|e| format!("{name}={value}: {e}"))?),
                Err(_) => Ok(default),
            }
        };
        let sizes = Self {
            single: read("BENCH_SINGLE", 20_000)?,
            batched: read("BENCH_BATCHED", 200_000)?,
            batch: read("BENCH_BATCH", 100)?,
        };
        // 7 parameters a row: SQLite allows 32766 per statement, and the store
        // splits larger batches itself, but the raw baseline does not.
        if sizes.batch == 0 || sizes.batch > 1_000 {
            return Err(format!("BENCH_BATCH must be between 1 and 1000, not {}", sizes.batch).into());
        }
        Ok(sizes)
    }
}

/// One measured case.
struct Measured {
    case: String,
    events: usize,
    elapsed: Duration,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// The payload of every event: a small order line, about 100 bytes as JSON.
fn payload(n: usize) -> Value {
    json!({
        "order_id": format!("order-{:08}", n / 4),
        "line": n % 4,
        "sku": format!("SKU-{:05}", n % 10_000),
        "quantity": 1 + n % 5,
        "unit_price_cents": 1_999,
    })
}

/// Tracks each stream's version so every append can expect an exact version,
/// as an aggregate would.
struct Streams {
    prefix: &'static str,
    versions: Vec<u64>,
    next: usize,
}

impl Streams {
    fn new(prefix: &'static str) -> Self {
        Self { prefix, versions: vec![0; STREAMS], next: 0 }
    }

    /// The next stream round-robin, its id and current version.
    fn pick(&mut self) -> (usize, String, u64) {
        let index = self.next % STREAMS;
        self.next += 1;
        (index, format!("{}-{index:03}", self.prefix), self.versions[index])
    }

    fn advance(&mut self, index: usize, by: u64) {
        self.versions[index] += by;
    }
}

async fn create_raw_table(db: &Db) -> BenchResult<()> {
    let key = match db.dialect() {
        Dialect::Sqlite => "INTEGER PRIMARY KEY",
        Dialect::Postgres => "BIGINT PRIMARY KEY",
    };
    let mut tx = db.begin_write().await?;
    tx.execute(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE raw_events (global_position {key}, stream_id TEXT NOT NULL, version BIGINT NOT NULL, \
         event_type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, recorded_at TEXT NOT NULL, \
         UNIQUE (stream_id, version))"
    )))
    .await?;
    tx.commit().await?;
    Ok(())
}

fn raw_insert_sql(rows: usize) -> String {
    let placeholders: Vec<String> = (0..rows)
        .map(|row| {
            let columns: Vec<String> = (1..=COLUMNS).map(|c| format!("${}", row * COLUMNS + c)).collect();
            format!("({})", columns.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO raw_events (global_position, stream_id, version, event_type, data, metadata, recorded_at) \
         VALUES {}",
        placeholders.join(", ")
    )
}

/// Inserts `total` rows into the raw table, `per_tx` rows per transaction in one
/// multi-row INSERT, each transaction on one stream as an append would be.
async fn raw_inserts(
    db: &Db,
    streams: &mut Streams,
    first_position: &mut i64,
    total: usize,
    per_tx: usize,
) -> BenchResult<()> {
    let full_sql = raw_insert_sql(per_tx);
    let mut written = 0;
    while written < total {
        let rows = per_tx.min(total - written);
        let sql = if rows == per_tx { full_sql.clone() } else { raw_insert_sql(rows) };
        let (index, stream_id, version) = streams.pick();
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in 0..rows {
            let n = written + row;
            insert = insert
                .bind(*first_position + row as i64)
                .bind(stream_id.clone())
                .bind(i64::try_from(version).unwrap_or(i64::MAX) + 1 + row as i64)
                .bind(EVENT_TYPE)
                .bind(payload(n).to_string())
                .bind("{}")
                .bind(RAW_RECORDED_AT);
        }
        let mut tx = db.begin_write().await?;
        insert.execute(&mut *tx).await?;
        tx.commit().await?;
        streams.advance(index, rows as u64);
        *first_position += rows as i64;
        written += rows;
    }
    Ok(())
}

/// Appends `total` events through the store, `per_append` events per call,
/// each call expecting the stream's exact version.
async fn store_appends(store: &EventStore, streams: &mut Streams, total: usize, per_append: usize) -> BenchResult<()> {
    let mut written = 0;
    while written < total {
        let count = per_append.min(total - written);
        let (index, stream_id, version) = streams.pick();
        let events = (written..written + count).map(|n| NewEvent::new(EVENT_TYPE, payload(n))).collect();
        store.append(&stream_id, ExpectedVersion::Exact(version), events).await?;
        streams.advance(index, count as u64);
        written += count;
    }
    Ok(())
}

async fn timed<F>(case: String, events: usize, work: F) -> BenchResult<Measured>
where
    F: Future<Output = BenchResult<()>>,
{
    let started = Instant::now();
    work.await?;
    Ok(Measured { case, events, elapsed: started.elapsed() })
}

/// Runs the four cases on a fresh `db`, interleaving raw and store runs so a
/// noisy neighbour skews both sides of a ratio alike.
async fn run(db: Db, sizes: &Sizes) -> BenchResult<Vec<(Measured, Measured)>> {
    eventstore::migrate(&db).await?;
    create_raw_table(&db).await?;
    let store = EventStore::new(db.clone());
    let mut raw_position = 1i64;

    let mut raw_streams = Streams::new("raw-single");
    let raw_single = timed("1 event per tx".into(), sizes.single, async {
        raw_inserts(&db, &mut raw_streams, &mut raw_position, sizes.single, 1).await
    })
    .await?;
    let mut store_streams = Streams::new("order-single");
    let store_single = timed("1 event per append".into(), sizes.single, async {
        store_appends(&store, &mut store_streams, sizes.single, 1).await
    })
    .await?;

    let mut raw_streams = Streams::new("raw-batched");
    let raw_batched = timed(format!("{} events per tx", sizes.batch), sizes.batched, async {
        raw_inserts(&db, &mut raw_streams, &mut raw_position, sizes.batched, sizes.batch).await
    })
    .await?;
    let mut store_streams = Streams::new("order-batched");
    let store_batched = timed(format!("{} events per append", sizes.batch), sizes.batched, async {
        store_appends(&store, &mut store_streams, sizes.batched, sizes.batch).await
    })
    .await?;

    let head = store.head_position().await?;
    let expected = (sizes.single + sizes.batched) as u64;
    if head != expected {
        return Err(format!("the store holds {head} events, expected {expected}").into());
    }
    db.close().await;
    Ok(vec![(raw_single, store_single), (raw_batched, store_batched)])
}

fn print_table(engine: &str, pairs: &[(Measured, Measured)]) {
    println!();
    println!("| engine | case | events | seconds | events/s | store / raw |");
    println!("|---|---|---|---|---|---|");
    for (raw, store) in pairs {
        for (label, m) in [("raw insert", raw), ("event store", store)] {
            let ratio = if std::ptr::eq(m, store) {
                format!("{:.2}x", store.per_second() / raw.per_second())
            } else {
                String::new()
            };
            println!(
                "| {engine} | {label}, {} | {} | {:.2} | {:.0} | {ratio} |",
                m.case,
                m.events,
                m.elapsed.as_secs_f64(),
                m.per_second()
            );
        }
    }
}

async fn sqlite(sizes: &Sizes) -> BenchResult<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let db = Db::connect(&url, 2).await?;
    let pairs = run(db, sizes).await?;
    print_table("SQLite (WAL, synchronous=NORMAL)", &pairs);
    Ok(())
}

async fn postgres(server_url: &str, sizes: &Sizes) -> BenchResult<()> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let name = format!("bazaar_bench_append_{}_{stamp}", std::process::id());
    let url = ensure_postgres_database(server_url, &name).await?;
    let db = Db::connect(&url, 2).await?;
    let outcome = run(db, sizes).await;
    // The database was made for this run; a leftover one would only cost disk.
    let admin = replace_database_in_url(server_url, "postgres");
    if let Ok(options) = admin.parse::<sqlx::any::AnyConnectOptions>()
        && let Ok(mut conn) = options.disable_statement_logging().connect().await
    {
        let _ = conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).await;
        let _ = conn.close().await;
    }
    print_table("PostgreSQL", &outcome?);
    Ok(())
}

fn main() -> BenchResult<()> {
    let sizes = Sizes::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        println!(
            "event store append throughput: {} single appends, {} events in batches of {}, {STREAMS} streams per case",
            sizes.single, sizes.batched, sizes.batch
        );
        sqlite(&sizes).await?;
        match std::env::var("BENCH_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => postgres(&url, &sizes).await?,
            _ => println!("\nPostgreSQL skipped (set BENCH_POSTGRES_URL to a server URL to include it)"),
        }
        Ok(())
    })
}
