//! Messages that can never be applied, kept with the reason for an operator instead of being
//! retried forever or dropped.

use ates_db::{Conditions, Db, Order, Page, PageRequest, Value, read_page, to_micros};

/// Keeps a message received from `source` (e.g. `nats`) on `subject` that cannot be applied.
pub async fn park(
    db: &Db,
    source: &str,
    subject: &str,
    payload: &[u8],
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letters (source, subject, payload, reason, received_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(source.to_owned())
    .bind(subject.to_owned())
    .bind(String::from_utf8_lossy(payload).into_owned())
    .bind(reason.to_owned())
    .bind(to_micros(db.now()))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A message kept because it could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeadLetter {
    pub seq: i64,
    /// Where it came from: `nats`.
    pub source: String,
    pub subject: String,
    /// The message as it came (or as an operator mended it).
    pub payload: String,
    /// Why it could not be applied.
    pub reason: String,
    /// When it was received, in microseconds since the epoch.
    pub received_at: i64,
}

const COLUMNS: &str = "seq, source, subject, payload, reason, received_at";

fn waiting() -> Conditions {
    let mut conditions = Conditions::default();
    conditions.push("replayed_at IS NULL".into());
    conditions
}

/// A page of the letters waiting for an operator, newest first; `after` is a letter's `seq`.
pub async fn list(
    db: &Db,
    page: &PageRequest,
    after: Option<i64>,
) -> Result<Page<DeadLetter>, sqlx::Error> {
    let newest_first = Order {
        column: "seq",
        descending: true,
    };
    let cursor = after.map(Value::Int);
    read_page(
        db,
        COLUMNS,
        "dead_letters",
        waiting(),
        newest_first,
        page,
        cursor,
    )
    .await
}

/// How many letters wait for an operator.
pub async fn count(db: &Db) -> Result<i64, sqlx::Error> {
    waiting().count(db, "dead_letters").await
}

/// The letter `seq`, while it waits.
pub async fn get(db: &Db, seq: i64) -> Result<Option<DeadLetter>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM dead_letters WHERE seq = $1 AND replayed_at IS NULL");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(seq)
        .fetch_optional(db.pool())
        .await
}

/// The outcome of a letter's replay, if it was replayed.
pub async fn outcome(db: &Db, seq: i64) -> Result<Option<String>, sqlx::Error> {
    let found: Option<(Option<String>,)> =
        sqlx::query_as("SELECT outcome FROM dead_letters WHERE seq = $1")
            .bind(seq)
            .fetch_optional(db.pool())
            .await?;
    Ok(found.and_then(|(outcome,)| outcome))
}

/// Records that the letter was replayed with `outcome`; it leaves the list. False when it had
/// been replayed already.
pub async fn replayed(db: &Db, seq: i64, outcome: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE dead_letters SET replayed_at = $1, outcome = $2 WHERE seq = $3 AND replayed_at IS NULL",
    )
    .bind(to_micros(db.now()))
    .bind(outcome.to_owned())
    .bind(seq)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A replay failed again: the letter stays, with the new reason.
pub async fn failed_again(db: &Db, seq: i64, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE dead_letters SET reason = $1 WHERE seq = $2 AND replayed_at IS NULL")
        .bind(reason.to_owned())
        .bind(seq)
        .execute(db.pool())
        .await?;
    Ok(())
}
