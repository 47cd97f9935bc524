//! Messages that can never be applied, kept with the reason for an operator instead of being
//! retried forever or dropped.

use ates_db::{Db, to_micros};

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
