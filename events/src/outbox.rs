//! The transactional outbox: append inside the producer's transaction, read in order.
//!
//! Consumers follow the outbox by [`Position`]: the id of the transaction that wrote a row,
//! then its `seq`. On PostgreSQL identities are handed out before commit, in no commit order,
//! so following `seq` alone could pass a row whose transaction commits later. Instead a
//! consumer reads only the rows of transactions older than every transaction still running;
//! those are all settled, and any transaction that commits later has a higher id, so the order
//! never changes behind a consumer. Writers need not wait for each other to commit. SQLite has
//! one writer at a time: `seq` is commit order there, and every row's xid is 0.

use ates_db::{Backend, Db, Value, from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, FromRow};

use crate::NewEvent;

/// Rows per INSERT: six parameters each keeps a statement far below either backend's limit.
const CHUNK: usize = 500;

/// The rows a consumer may read: on PostgreSQL, those of transactions older than every
/// transaction still running.
const SETTLED_PG: &str =
    "xid < CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)";

/// A place in the outbox's order: events are consumed by increasing position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The writing transaction (PostgreSQL); 0 on SQLite and for rows older than positions.
    pub xid: i64,
    pub seq: i64,
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub xid: i64,
    pub id: String,
    pub event_type: String,
    pub version: i64,
    pub aggregate_id: String,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

impl StoredEvent {
    pub fn position(&self) -> Position {
        Position {
            xid: self.xid,
            seq: self.seq,
        }
    }
}

/// Where a batch of events ends: the position of the last one.
pub fn last_position(events: &[StoredEvent]) -> Option<Position> {
    events.iter().map(StoredEvent::position).max()
}

/// The rows past the position bound to `$1` (xid) and `$2` (seq), in a form each planner
/// serves from `outbox_by_position`: PostgreSQL compares the pair in the index; SQLite would
/// scan every row of the first column's range, but its xid is always 0.
fn past_position(postgres: bool) -> &'static str {
    if postgres {
        "(xid, seq) > ($1, $2)"
    } else {
        "xid = $1 AND seq > $2"
    }
}

/// Appends `events` in order, a few statements for any number of events, and returns them as
/// stored (with their positions).
///
/// It sends no `NOTIFY`: on PostgreSQL a transaction that notifies holds a lock of the whole
/// database through its commit, so every notifying writer would wait for the one before it to
/// flush. Whoever commits tells the other replicas afterwards, on `Channel::Appended`.
pub async fn append(
    conn: &mut AnyConnection,
    events: &[NewEvent],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut stored = Vec::with_capacity(events.len());
    for chunk in events.chunks(CHUNK) {
        let sql = format!(
            "{INSERT} VALUES {} RETURNING id, seq, xid",
            ates_db::row_placeholders(Backend::of(conn), chunk.len(), COLUMNS_IN)
        );
        let query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        let positions = ates_db::bind_all_as(query, chunk.iter().flat_map(values))
            .fetch_all(&mut *conn)
            .await?;
        stored.extend(as_stored(chunk, positions)?);
    }
    Ok(stored)
}

/// Appends `events` with `write`, atomically, and only if `write` wrote a row; in one round
/// trip to the database.
///
/// `write` is one data-modifying statement (an `INSERT … SELECT … WHERE`, say) whose
/// parameters are `write_values`, numbered from `$1`. On PostgreSQL it becomes a writing
/// `WITH` of the outbox insert: one statement, atomic without a transaction of its own. SQLite
/// has no writing `WITH`: the two run as one script in one transaction, the insert guarded by
/// `changes()`, the rows `write` changed.
///
/// Returns the events as stored, or none when `write` wrote nothing.
pub async fn append_after(
    db: &Db,
    write: &str,
    write_values: Vec<Value>,
    events: &[NewEvent],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    if events.len() > CHUNK {
        return Err(sqlx::Error::Protocol(format!(
            "at most {CHUNK} events are appended with a write"
        )));
    }
    let rows = ates_db::numbered_rows(write_values.len() + 1, events.len(), COLUMNS_IN + 1);
    let ordered = events
        .iter()
        .zip(0i64..)
        .flat_map(|(event, n)| values(event).into_iter().chain([Value::Int(n)]));
    let values: Vec<Value> = write_values.into_iter().chain(ordered).collect();
    let positions: Vec<(String, i64, i64)> = match db.backend() {
        Backend::Postgres => {
            let sql = format!(
                "WITH written AS ({write} RETURNING 1) {INSERT} \
                 SELECT v.id, v.event_type, v.version, v.aggregate_id, v.payload, v.occurred_at \
                 FROM written, (VALUES {rows}) AS v (id, event_type, version, aggregate_id, payload, occurred_at, n) \
                 ORDER BY v.n RETURNING id, seq, xid"
            );
            let query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            ates_db::bind_all_as(query, values)
                .fetch_all(db.pool())
                .await?
        }
        Backend::Sqlite => {
            let script = format!(
                "{write}; {INSERT} \
                 SELECT column1, column2, column3, column4, column5, column6 \
                 FROM (VALUES {rows}) WHERE changes() = 1 ORDER BY column7 \
                 RETURNING id, seq, xid"
            );
            db.fetch_all_as_one_write(&script, values).await?
        }
    };
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    as_stored(events, positions)
}

const INSERT: &str =
    "INSERT INTO outbox (id, event_type, version, aggregate_id, payload, occurred_at)";

/// Values an event writes, in [`INSERT`]'s order.
const COLUMNS_IN: usize = 6;

fn values(event: &NewEvent) -> [Value; COLUMNS_IN] {
    [
        Value::Text(event.id.to_string()),
        Value::from(event.event_type),
        Value::Int(event.version),
        Value::Text(event.aggregate_id.clone()),
        Value::Text(event.payload.to_string()),
        Value::Int(to_micros(event.occurred_at)),
    ]
}

/// `events` as stored, from the `(id, seq, xid)` rows their insert returned.
fn as_stored(
    events: &[NewEvent],
    positions: Vec<(String, i64, i64)>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let positions: std::collections::HashMap<String, (i64, i64)> = positions
        .into_iter()
        .map(|(id, seq, xid)| (id, (seq, xid)))
        .collect();
    events
        .iter()
        .map(|event| {
            let id = event.id.to_string();
            let (seq, xid) = *positions
                .get(&id)
                .ok_or_else(|| sqlx::Error::Protocol("the outbox did not return a row".into()))?;
            Ok(StoredEvent {
                seq,
                xid,
                id,
                event_type: event.event_type.to_owned(),
                version: event.version,
                aggregate_id: event.aggregate_id.clone(),
                payload: event.payload.clone(),
                occurred_at: event.occurred_at,
            })
        })
        .collect()
}

#[derive(FromRow)]
struct Row {
    seq: i64,
    xid: i64,
    id: String,
    event_type: String,
    version: i64,
    aggregate_id: String,
    payload: String,
    occurred_at: i64,
}

const COLUMNS: &str = "seq, xid, id, event_type, version, aggregate_id, payload, occurred_at";

/// Up to `limit` events past `after` that a consumer may take, in order.
pub async fn read_after(
    conn: &mut AnyConnection,
    after: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let postgres = Backend::of(conn) == Backend::Postgres;
    let settled = if postgres {
        format!(" AND {SETTLED_PG}")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM outbox WHERE {}{settled} ORDER BY xid, seq LIMIT $3",
        past_position(postgres)
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(after.xid)
        .bind(after.seq)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok(StoredEvent {
                seq: row.seq,
                xid: row.xid,
                id: row.id,
                event_type: row.event_type,
                version: row.version,
                aggregate_id: row.aggregate_id,
                payload: serde_json::from_str(&row.payload)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                occurred_at: from_micros(row.occurred_at),
            })
        })
        .collect()
}

/// The position of the last event a consumer may take now: where a follower that wants only
/// what comes next starts.
pub async fn end(conn: &mut AnyConnection) -> Result<Position, sqlx::Error> {
    let settled = if Backend::of(conn) == Backend::Postgres {
        format!("WHERE {SETTLED_PG} ")
    } else {
        String::new()
    };
    let sql = format!("SELECT xid, seq FROM outbox {settled}ORDER BY xid DESC, seq DESC LIMIT 1");
    let last: Option<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_optional(&mut *conn)
        .await?;
    Ok(last.map_or_else(Position::default, |(xid, seq)| Position { xid, seq }))
}

/// The position of the last event committed, whether or not a consumer may take it yet (an
/// older transaction may still be running).
pub async fn last(conn: &mut AnyConnection) -> Result<Position, sqlx::Error> {
    let last: Option<(i64, i64)> =
        sqlx::query_as("SELECT xid, seq FROM outbox ORDER BY xid DESC, seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    Ok(last.map_or_else(Position::default, |(xid, seq)| Position { xid, seq }))
}

/// The position of the event numbered `seq`, for a subscriber that resumes after it. A number
/// that names no event resumes after the last event numbered below it.
pub async fn position_of(conn: &mut AnyConnection, seq: i64) -> Result<Position, sqlx::Error> {
    let found: Option<(i64, i64)> =
        sqlx::query_as("SELECT xid, seq FROM outbox WHERE seq <= $1 ORDER BY seq DESC LIMIT 1")
            .bind(seq)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.map_or_else(Position::default, |(xid, seq)| Position { xid, seq }))
}

/// What a consumer has yet to handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events past the consumer's offset.
    pub waiting: i64,
    /// When the oldest of them occurred.
    pub oldest: Option<DateTime<Utc>>,
}

/// The outbox past `consumer`'s offset.
pub async fn backlog(db: &Db, consumer: &str) -> Result<Backlog, sqlx::Error> {
    let after = offset(db.pool(), consumer).await?;
    let (waiting, oldest): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MIN(occurred_at) FROM outbox WHERE (xid, seq) > ($1, $2)")
            .bind(after.xid)
            .bind(after.seq)
            .fetch_one(db.pool())
            .await?;
    Ok(Backlog {
        waiting,
        oldest: oldest.map(from_micros),
    })
}

/// How far a consumer of the outbox has got: the position of the last event it is done with.
pub async fn offset<'e, E>(executor: E, consumer: &str) -> Result<Position, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let offset: Option<(i64, i64)> =
        sqlx::query_as("SELECT last_xid, last_seq FROM consumer_offsets WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(executor)
            .await?;
    Ok(offset.map_or_else(Position::default, |(xid, seq)| Position { xid, seq }))
}

/// Moves a consumer's offset forward to `to`; never back, so consumers racing on several
/// replicas cannot undo each other's progress.
pub async fn advance<'e, E>(executor: E, consumer: &str, to: Position) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO consumer_offsets (consumer, last_xid, last_seq) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer) DO UPDATE SET last_xid = excluded.last_xid, last_seq = excluded.last_seq \
         WHERE (consumer_offsets.last_xid, consumer_offsets.last_seq) < (excluded.last_xid, excluded.last_seq)",
    )
    .bind(consumer)
    .bind(to.xid)
    .bind(to.seq)
    .execute(executor)
    .await?;
    Ok(())
}

/// What a producer's committed transaction did, and the events it wrote: whoever waits for
/// their effects (the ledger, subscribers) knows which they are and where they lie.
#[derive(Debug, Clone)]
pub struct Committed<T> {
    pub value: T,
    pub events: Vec<StoredEvent>,
}

impl<T> Committed<T> {
    /// The position of the last event written; `None` when none was.
    pub fn position(&self) -> Option<Position> {
        last_position(&self.events)
    }
}
