//! Idempotency keys: a popug's mutation runs at most once per key, and a retry gets the first
//! answer back.
//!
//! The gateway claims the key before the mutation runs, so a second request with it finds it
//! taken, and stores the answer once the mutation has answered. A run that died between the two
//! (a crash, a timeout) leaves its claim running; once its lease is old, a retry may take the
//! run over, when the mutation can tell whether the first run's effect happened (a task made
//! under a key takes its id from the key: [`Claimed::Run::claimed_at`]).

use chrono::{DateTime, Utc};

use crate::{Db, to_micros};

/// What a key holds when a request arrives with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// This request runs. `claimed_at` is when the key was first claimed (by this request, or
    /// by the run it takes over: `resumed`).
    Run {
        claimed_at: DateTime<Utc>,
        resumed: bool,
    },
    /// The key was used for another request (another document, operation or variables).
    Reused,
    /// A request with this key is running now.
    Running,
    /// The first request's answer, as it was sent.
    Answered {
        status: u16,
        body: String,
        request_error: bool,
    },
}

/// A key of one popug's, and the fingerprint of the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub popug: &'a str,
    pub key: &'a str,
    pub fingerprint: &'a str,
}

/// How long keys are kept, and when a run's lease is old enough to take over.
#[derive(Debug, Clone, Copy)]
pub struct Terms {
    pub keep: chrono::Duration,
    /// A run still running after this long has died: no request runs longer.
    pub lease: chrono::Duration,
    /// Whether a retry may take over a dead run: only when the mutation can tell whether that
    /// run's effect happened, or a second run is harmless.
    pub may_resume: bool,
}

#[derive(sqlx::FromRow)]
struct Row {
    fingerprint: String,
    claimed_at: i64,
    running_since: i64,
    answer_status: Option<i32>,
    answer_body: Option<String>,
    request_error: i32,
    expires_at: i64,
}

/// Claims `key` for a run of its request, or says why this request may not run: another took
/// the key, or it has run and here is its answer. `now` is the business clock's (a task made
/// under the key is stamped with it); leases and expiry go by the real clock.
pub async fn claim(
    db: &Db,
    key: Key<'_>,
    now: DateTime<Utc>,
    terms: Terms,
) -> Result<Claimed, sqlx::Error> {
    let real_now = crate::now();
    // An expired key that the sweep has not reached yet is free again.
    for _ in 0..2 {
        let turn = db.turn_to_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys \
             (popug_id, idempotency_key, fingerprint, claimed_at, running_since, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (popug_id, idempotency_key) DO NOTHING",
        )
        .bind(key.popug.to_owned())
        .bind(key.key.to_owned())
        .bind(key.fingerprint.to_owned())
        .bind(to_micros(now))
        .bind(to_micros(real_now))
        .bind(to_micros(real_now + terms.keep))
        .execute(db.pool())
        .await?
        .rows_affected();
        drop(turn);
        if inserted == 1 {
            return Ok(Claimed::Run {
                claimed_at: now,
                resumed: false,
            });
        }
        let Some(row) = sqlx::query_as::<_, Row>(
            "SELECT fingerprint, claimed_at, running_since, answer_status, answer_body, \
                    request_error, expires_at \
             FROM idempotency_keys WHERE popug_id = $1 AND idempotency_key = $2",
        )
        .bind(key.popug.to_owned())
        .bind(key.key.to_owned())
        .fetch_optional(db.pool())
        .await?
        else {
            continue; // swept in between
        };
        if row.expires_at <= to_micros(real_now) {
            let turn = db.turn_to_write().await?;
            sqlx::query(
                "DELETE FROM idempotency_keys \
                 WHERE popug_id = $1 AND idempotency_key = $2 AND expires_at <= $3",
            )
            .bind(key.popug.to_owned())
            .bind(key.key.to_owned())
            .bind(to_micros(real_now))
            .execute(db.pool())
            .await?;
            drop(turn);
            continue;
        }
        return settle(db, key, row, real_now, terms).await;
    }
    Ok(Claimed::Running)
}

/// What a key already taken means for this request.
async fn settle(
    db: &Db,
    key: Key<'_>,
    row: Row,
    real_now: DateTime<Utc>,
    terms: Terms,
) -> Result<Claimed, sqlx::Error> {
    if row.fingerprint != key.fingerprint {
        return Ok(Claimed::Reused);
    }
    if let (Some(status), Some(body)) = (row.answer_status, row.answer_body) {
        return Ok(Claimed::Answered {
            status: u16::try_from(status).unwrap_or(500),
            body,
            request_error: row.request_error != 0,
        });
    }
    let dead = row.running_since < to_micros(real_now - terms.lease);
    if !(dead && terms.may_resume) {
        return Ok(Claimed::Running);
    }
    // Of two retries that find the run dead, one takes it over.
    let _turn = db.turn_to_write().await?;
    let taken = sqlx::query(
        "UPDATE idempotency_keys SET running_since = $1 \
         WHERE popug_id = $2 AND idempotency_key = $3 AND answer_status IS NULL \
           AND running_since = $4",
    )
    .bind(to_micros(real_now))
    .bind(key.popug.to_owned())
    .bind(key.key.to_owned())
    .bind(row.running_since)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(if taken == 1 {
        Claimed::Run {
            claimed_at: crate::from_micros(row.claimed_at),
            resumed: true,
        }
    } else {
        Claimed::Running
    })
}

/// Keeps the answer of the run that holds `key`, for its retries.
pub async fn answer(
    db: &Db,
    key: Key<'_>,
    status: u16,
    body: &str,
    request_error: bool,
) -> Result<(), sqlx::Error> {
    let _turn = db.turn_to_write().await?;
    sqlx::query(
        "UPDATE idempotency_keys SET answer_status = $1, answer_body = $2, request_error = $3 \
         WHERE popug_id = $4 AND idempotency_key = $5 AND answer_body IS NULL",
    )
    .bind(i32::from(status))
    .bind(body.to_owned())
    .bind(i32::from(request_error))
    .bind(key.popug.to_owned())
    .bind(key.key.to_owned())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Ends the lease of a run that gave no answer worth keeping (it timed out, or found the
/// database busy), so that a retry may take over at once where that is safe.
pub async fn abandon(db: &Db, key: Key<'_>) -> Result<(), sqlx::Error> {
    let _turn = db.turn_to_write().await?;
    sqlx::query(
        "UPDATE idempotency_keys SET running_since = 0 \
         WHERE popug_id = $1 AND idempotency_key = $2 AND answer_body IS NULL",
    )
    .bind(key.popug.to_owned())
    .bind(key.key.to_owned())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Forgets expired keys; how many.
pub async fn sweep(db: &Db) -> Result<u64, sqlx::Error> {
    let _turn = db.turn_to_write().await?;
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(to_micros(crate::now()))
            .execute(db.pool())
            .await?
            .rows_affected(),
    )
}
