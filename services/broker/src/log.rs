//! The SQL of the log file: the statements the writer runs inside its
//! transactions, and the reads served from the reader pool. Batches travel
//! into SQLite as one JSON array bound to one parameter (`json_each`), so a
//! publish, an ack or a lease of hundreds of messages is one statement.
//!
//! The tables (see `migrations/`): `messages` in publish order, `groups` with
//! their position, `pending` (a group's delivered-but-unacked messages with
//! their attempt count and the time they become deliverable again) and
//! `dead_letters`.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row as _};

use crate::model::from_ms;

/// A consumer group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupRow {
    /// The row id, which the other tables refer to.
    pub id: i64,
    /// The group's name.
    pub name: String,
    /// The message types it consumes.
    pub types: Vec<String>,
    /// How long a delivery is leased, in milliseconds.
    pub ack_wait_ms: i64,
}

/// A message newly stored by a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// The envelope id.
    pub id: String,
    /// The message type.
    pub message_type: String,
}

/// One message handed to a fetcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// The message's place in the log.
    pub seq: i64,
    /// 1 for the first delivery to the group.
    pub attempt: i64,
    /// The envelope as JSON text.
    pub envelope: String,
}

/// What a fetch leased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Leased {
    /// The deliveries, in seq order.
    pub deliveries: Vec<Delivered>,
    /// When nothing was deliverable: the earliest time one of the group's
    /// pending messages becomes deliverable again (a lease ends, a nak's delay passes).
    pub next_due: Option<i64>,
}

/// A dead letter as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetterRow {
    /// Its id.
    pub id: String,
    /// The group it died in.
    pub group: String,
    /// The message's place in the log.
    pub seq: i64,
    /// The envelope as JSON text.
    pub envelope: String,
    /// The last handler error.
    pub error: String,
    /// How many times it was delivered.
    pub attempts: i64,
    /// When it died, in milliseconds since the epoch.
    pub dead_at: i64,
}

/// Where a replayed dead letter went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplayedRow {
    /// The group it is delivered to again.
    pub group: String,
    /// The message's place in the log.
    pub seq: i64,
}

/// A group's backlog as of one read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupStats {
    /// The highest seq of its types handed to it.
    pub position: i64,
    /// Messages of its types after its position (never delivered).
    pub new: i64,
    /// Messages delivered and not yet acked or dead-lettered.
    pub in_flight: i64,
    /// Messages handed back to it by a replay, not delivered yet.
    pub replayed: i64,
    /// Its dead letters.
    pub dead_letters: i64,
}

impl GroupStats {
    /// Messages of the group's types it has not acked: its consumer lag.
    pub fn lag(&self) -> i64 {
        self.new + self.in_flight + self.replayed
    }
}

/// A list of numbers as the JSON array text `json_each` reads.
pub(crate) fn json_list(numbers: &[i64]) -> String {
    let mut out = String::with_capacity(numbers.len() * 8 + 2);
    out.push('[');
    for (i, n) in numbers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&n.to_string());
    }
    out.push(']');
    out
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn decode_types(raw: &str) -> Result<Vec<String>, sqlx::Error> {
    serde_json::from_str(raw).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn group_from_row(row: &AnyRow) -> Result<GroupRow, sqlx::Error> {
    let types: String = row.try_get("types")?;
    Ok(GroupRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        types: decode_types(&types)?,
        ack_wait_ms: row.try_get("ack_wait_ms")?,
    })
}

/// Every consumer group.
pub(crate) async fn groups(pool: &AnyPool) -> Result<Vec<GroupRow>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, name, types, ack_wait_ms FROM groups ORDER BY name").fetch_all(pool).await?;
    rows.iter().map(group_from_row).collect()
}

/// Stores the envelopes of `envelopes` (a JSON array of checked envelopes) in
/// order, skipping ids already stored; returns those stored.
pub(crate) async fn insert_messages(
    conn: &mut AnyConnection,
    envelopes: &str,
    now: i64,
) -> Result<Vec<Stored>, sqlx::Error> {
    // `WHERE true` settles SQLite's parse of INSERT ... SELECT ... ON CONFLICT;
    // `ORDER BY key` keeps the array's order as the publish order.
    let rows = sqlx::query(
        "INSERT INTO messages (id, type, envelope, published_at) \
         SELECT json_extract(value, '$.id'), json_extract(value, '$.type'), value, $2 \
         FROM json_each($1) WHERE true ORDER BY key \
         ON CONFLICT (id) DO NOTHING \
         RETURNING id, type",
    )
    .bind(envelopes)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|row| Ok(Stored { id: row.try_get("id")?, message_type: row.try_get("type")? })).collect()
}

/// Creates group `name` at the start of the log, or updates its types and
/// lease; returns it and whether it was created.
pub(crate) async fn upsert_group(
    conn: &mut AnyConnection,
    name: &str,
    types: &[String],
    ack_wait_ms: i64,
    now: i64,
) -> Result<(GroupRow, bool), sqlx::Error> {
    let types_json = serde_json::to_string(types).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let existing: Option<i64> =
        sqlx::query_scalar("SELECT id FROM groups WHERE name = $1").bind(name).fetch_optional(&mut *conn).await?;
    let (id, created) = match existing {
        Some(id) => {
            sqlx::query("UPDATE groups SET types = $1, ack_wait_ms = $2 WHERE id = $3")
                .bind(&types_json)
                .bind(ack_wait_ms)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            (id, false)
        }
        None => {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO groups (name, types, ack_wait_ms, position, created_at) \
                 VALUES ($1, $2, $3, 0, $4) RETURNING id",
            )
            .bind(name)
            .bind(&types_json)
            .bind(ack_wait_ms)
            .bind(now)
            .fetch_one(&mut *conn)
            .await?;
            (id, true)
        }
    };
    Ok((GroupRow { id, name: name.to_owned(), types: types.to_vec(), ack_wait_ms }, created))
}

/// Leases up to `max` messages of `group` for its ack wait: first those due
/// again (lease ended, nak delay passed, replayed), longest due first, then
/// new ones after its position. The batch is in seq order.
///
/// Due rows are read in the order of the visibility index, so a fetch costs
/// the size of its batch even when thousands of leases ended at once (after
/// a restart) or thousands more are still held.
pub(crate) async fn lease(
    conn: &mut AnyConnection,
    group: &GroupRow,
    max: usize,
    now: i64,
) -> Result<Leased, sqlx::Error> {
    let lease_until = now.saturating_add(group.ack_wait_ms);
    let due = sqlx::query(
        "SELECT p.seq, p.attempts, m.envelope FROM pending p JOIN messages m ON m.seq = p.seq \
         WHERE p.group_id = $1 AND p.visible_at <= $2 ORDER BY p.visible_at, p.seq LIMIT $3",
    )
    .bind(group.id)
    .bind(now)
    .bind(limit(max))
    .fetch_all(&mut *conn)
    .await?;
    let mut deliveries = Vec::with_capacity(max.min(1024));
    for row in &due {
        let attempts: i64 = row.try_get("attempts")?;
        deliveries.push(Delivered {
            seq: row.try_get("seq")?,
            attempt: attempts + 1,
            envelope: row.try_get("envelope")?,
        });
    }
    if !deliveries.is_empty() {
        let seqs: Vec<i64> = deliveries.iter().map(|d| d.seq).collect();
        sqlx::query(
            "UPDATE pending SET attempts = attempts + 1, visible_at = $1 \
             WHERE group_id = $2 AND seq IN (SELECT value FROM json_each($3))",
        )
        .bind(lease_until)
        .bind(group.id)
        .bind(json_list(&seqs))
        .execute(&mut *conn)
        .await?;
    }
    let remaining = max.saturating_sub(deliveries.len());
    if remaining > 0 {
        deliveries.extend(lease_new(conn, group, remaining, lease_until).await?);
    }
    deliveries.sort_by_key(|d| d.seq);
    let next_due = if deliveries.is_empty() {
        sqlx::query_scalar::<_, Option<i64>>("SELECT MIN(visible_at) FROM pending WHERE group_id = $1")
            .bind(group.id)
            .fetch_one(&mut *conn)
            .await?
    } else {
        None
    };
    Ok(Leased { deliveries, next_due })
}

/// Leases up to `max` messages of the group's types after its position, and moves the position past them.
async fn lease_new(
    conn: &mut AnyConnection,
    group: &GroupRow,
    max: usize,
    lease_until: i64,
) -> Result<Vec<Delivered>, sqlx::Error> {
    let position: i64 =
        sqlx::query_scalar("SELECT position FROM groups WHERE id = $1").bind(group.id).fetch_one(&mut *conn).await?;
    // One indexed range per type, merged here: a scan of the whole log from
    // the position would read every message of every other type too.
    let mut seqs: Vec<i64> = Vec::new();
    for message_type in &group.types {
        let found: Vec<i64> =
            sqlx::query_scalar("SELECT seq FROM messages WHERE type = $1 AND seq > $2 ORDER BY seq LIMIT $3")
                .bind(message_type)
                .bind(position)
                .bind(limit(max))
                .fetch_all(&mut *conn)
                .await?;
        seqs.extend(found);
    }
    seqs.sort_unstable();
    seqs.dedup();
    seqs.truncate(max);
    let Some(&last) = seqs.last() else { return Ok(Vec::new()) };
    let list = json_list(&seqs);
    sqlx::query("INSERT INTO pending (group_id, seq, attempts, visible_at) SELECT $1, value, 1, $2 FROM json_each($3)")
        .bind(group.id)
        .bind(lease_until)
        .bind(&list)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE groups SET position = $1 WHERE id = $2").bind(last).bind(group.id).execute(&mut *conn).await?;
    let rows = sqlx::query("SELECT seq, envelope FROM messages WHERE seq IN (SELECT value FROM json_each($1))")
        .bind(&list)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| Ok(Delivered { seq: row.try_get("seq")?, attempt: 1, envelope: row.try_get("envelope")? }))
        .collect()
}

/// Deletes up to `limit` messages published before `before` that no group
/// still holds (pending or dead-lettered); returns how many went. A group
/// created later starts from the oldest message left.
///
/// The newest message always stays: `seq` is SQLite's rowid, which is the
/// highest remaining plus one, so deleting the newest would hand its number
/// to the next publish, and a group positioned at it would skip that message.
pub(crate) async fn expire(conn: &mut AnyConnection, before: i64, limit: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM messages WHERE seq IN (\
           SELECT m.seq FROM messages m WHERE m.published_at < $1 \
             AND m.seq < (SELECT MAX(seq) FROM messages) \
             AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.seq = m.seq) \
             AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = m.seq) \
           LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Ends the group's deliveries of `seqs`; returns how many were pending.
pub(crate) async fn ack(conn: &mut AnyConnection, group_id: i64, seqs: &[i64]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM pending WHERE group_id = $1 AND seq IN (SELECT value FROM json_each($2))")
        .bind(group_id)
        .bind(json_list(seqs))
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// Makes the group's pending `seqs` deliverable again at `visible_at`; returns how many were pending.
pub(crate) async fn nak(
    conn: &mut AnyConnection,
    group_id: i64,
    seqs: &[i64],
    visible_at: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE pending SET visible_at = $1 WHERE group_id = $2 AND seq IN (SELECT value FROM json_each($3))",
    )
    .bind(visible_at)
    .bind(group_id)
    .bind(json_list(seqs))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Moves the group's pending `seq` to the dead-letter queue under `id`; false
/// when it was not pending (acked or dead-lettered already).
pub(crate) async fn dead_letter(
    conn: &mut AnyConnection,
    group_id: i64,
    seq: i64,
    id: &str,
    error: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let attempts: Option<i64> =
        sqlx::query_scalar("DELETE FROM pending WHERE group_id = $1 AND seq = $2 RETURNING attempts")
            .bind(group_id)
            .bind(seq)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(attempts) = attempts else { return Ok(false) };
    sqlx::query(
        "INSERT INTO dead_letters (id, group_id, seq, error, attempts, dead_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(group_id)
    .bind(seq)
    .bind(error)
    .bind(attempts)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// Hands dead letter `id` back to its group as a message never delivered
/// (its next delivery is attempt 1) and deletes it; `None` when there is no such dead letter.
pub(crate) async fn replay(conn: &mut AnyConnection, id: &str, now: i64) -> Result<Option<ReplayedRow>, sqlx::Error> {
    let row = sqlx::query("DELETE FROM dead_letters WHERE id = $1 RETURNING group_id, seq")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let group_id: i64 = row.try_get("group_id")?;
    let seq: i64 = row.try_get("seq")?;
    sqlx::query(
        "INSERT INTO pending (group_id, seq, attempts, visible_at) VALUES ($1, $2, 0, $3) \
         ON CONFLICT (group_id, seq) DO UPDATE SET attempts = 0, visible_at = excluded.visible_at",
    )
    .bind(group_id)
    .bind(seq)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let group: String =
        sqlx::query_scalar("SELECT name FROM groups WHERE id = $1").bind(group_id).fetch_one(&mut *conn).await?;
    Ok(Some(ReplayedRow { group, seq }))
}

const DEAD_LETTER_COLUMNS: &str = "d.id, g.name, d.seq, m.envelope, d.error, d.attempts, d.dead_at \
     FROM dead_letters d JOIN groups g ON g.id = d.group_id JOIN messages m ON m.seq = d.seq";

fn dead_letter_from_row(row: &AnyRow) -> Result<DeadLetterRow, sqlx::Error> {
    Ok(DeadLetterRow {
        id: row.try_get("id")?,
        group: row.try_get("name")?,
        seq: row.try_get("seq")?,
        envelope: row.try_get("envelope")?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        dead_at: row.try_get("dead_at")?,
    })
}

/// Dead letters, oldest first, of one group or all.
pub(crate) async fn dead_letters(
    pool: &AnyPool,
    group_id: Option<i64>,
    max: usize,
) -> Result<Vec<DeadLetterRow>, sqlx::Error> {
    let rows = match group_id {
        Some(group_id) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DEAD_LETTER_COLUMNS} WHERE d.group_id = $1 ORDER BY d.n LIMIT $2"
            )))
            .bind(group_id)
            .bind(limit(max))
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DEAD_LETTER_COLUMNS} ORDER BY d.n LIMIT $1")))
                .bind(limit(max))
                .fetch_all(pool)
                .await?
        }
    };
    rows.iter().map(dead_letter_from_row).collect()
}

/// One dead letter by id.
pub(crate) async fn dead_letter_by_id(pool: &AnyPool, id: &str) -> Result<Option<DeadLetterRow>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DEAD_LETTER_COLUMNS} WHERE d.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(dead_letter_from_row).transpose()
}

/// The backlog of `group`, read in one snapshot.
pub(crate) async fn group_stats(pool: &AnyPool, group: &GroupRow) -> Result<GroupStats, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let position: i64 =
        sqlx::query_scalar("SELECT position FROM groups WHERE id = $1").bind(group.id).fetch_one(&mut *tx).await?;
    let mut new = 0;
    for message_type in &group.types {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE type = $1 AND seq > $2")
            .bind(message_type)
            .bind(position)
            .fetch_one(&mut *tx)
            .await?;
        new += count;
    }
    let pending = sqlx::query(
        "SELECT COUNT(*) AS total, COALESCE(SUM(attempts = 0), 0) AS replayed FROM pending WHERE group_id = $1",
    )
    .bind(group.id)
    .fetch_one(&mut *tx)
    .await?;
    let total: i64 = pending.try_get("total")?;
    let replayed: i64 = pending.try_get("replayed")?;
    let dead_letters: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters WHERE group_id = $1")
        .bind(group.id)
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(GroupStats { position, new, in_flight: total - replayed, replayed, dead_letters })
}

/// Renders a millisecond timestamp as RFC 3339 for the API.
pub(crate) fn rfc3339(ms: i64) -> String {
    from_ms(ms).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
