//! The transactional outbox: append inside the producer's transaction, read in `seq` order.

use ates_db::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, FromRow};

use crate::NewEvent;

/// Rows per INSERT: seven parameters each keeps a statement far below either backend's limit.
const CHUNK: usize = 500;

/// PostgreSQL channel notified when a transaction that appended events commits.
pub const NOTIFY_CHANNEL: &str = "ates_outbox";

/// Key of the PostgreSQL advisory lock that orders outbox writers.
const APPEND_LOCK: i64 = 0x0A7E_5001;

/// Appends `events` in order, a few statements for any number of events.
///
/// Consumers follow `seq` and never look back, so a row must not become visible after a row
/// with a higher `seq`. On PostgreSQL identities are handed out before commit, in no commit
/// order; the transaction therefore takes a lock that it holds until it commits, so writers
/// append (and commit) one after another. Call it last in the transaction: the lock is held
/// from here to the commit. SQLite has one writer at a time already.
pub async fn append(conn: &mut AnyConnection, events: &[NewEvent]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    if conn.backend_name() == "PostgreSQL" {
        // The notification is delivered at commit, and only if the transaction commits.
        sqlx::query("SELECT pg_advisory_xact_lock($1), pg_notify($2, '')")
            .bind(APPEND_LOCK)
            .bind(NOTIFY_CHANNEL)
            .execute(&mut *conn)
            .await?;
    }
    for chunk in events.chunks(CHUNK) {
        let mut sql = String::from(
            "INSERT INTO outbox (id, event_type, version, aggregate_id, payload, occurred_at) VALUES ",
        );
        for i in 0..chunk.len() {
            let p = i * 6;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6
            ));
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for event in chunk {
            query = query
                .bind(event.id.to_string())
                .bind(event.event_type)
                .bind(event.version)
                .bind(event.aggregate_id.clone())
                .bind(event.payload.to_string())
                .bind(to_micros(event.occurred_at));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub id: String,
    pub event_type: String,
    pub version: i64,
    pub aggregate_id: String,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct Row {
    seq: i64,
    id: String,
    event_type: String,
    version: i64,
    aggregate_id: String,
    payload: String,
    occurred_at: i64,
}

/// Up to `limit` events after `after_seq`, oldest first.
pub async fn read_after(
    conn: &mut AnyConnection,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, id, event_type, version, aggregate_id, payload, occurred_at \
         FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after_seq)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(StoredEvent {
                seq: row.seq,
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

/// How far a consumer of the outbox has got: the `seq` of the last event it is done with.
pub async fn offset<'e, E>(executor: E, consumer: &str) -> Result<i64, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let offset: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM consumer_offsets WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(executor)
            .await?;
    Ok(offset.unwrap_or(0))
}

/// Moves a consumer's offset forward to `seq`; never back, so consumers racing on several
/// replicas cannot undo each other's progress.
pub async fn advance<'e, E>(executor: E, consumer: &str, seq: i64) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO consumer_offsets (consumer, last_seq) VALUES ($1, $2) \
         ON CONFLICT (consumer) DO UPDATE SET last_seq = excluded.last_seq \
         WHERE consumer_offsets.last_seq < excluded.last_seq",
    )
    .bind(consumer)
    .bind(seq)
    .execute(executor)
    .await?;
    Ok(())
}
