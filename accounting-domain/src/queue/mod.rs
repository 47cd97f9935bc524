//! What a day close leaves to do afterwards: tell the payment system about each payout, and
//! send each popug its mail. Both are queues in the database, so a close never waits for them
//! and a crash forgets nothing.
//!
//! A worker claims due rows for a lease (another replica skips them until it runs out), does
//! the work, and records the outcome: done, or a failed attempt retried later with backoff,
//! and given up (`FAILED`) after the configured attempts. Queue times are the system's, not
//! the business clock's.

mod mail;
mod payout;

use std::time::Duration;

use ates_db::{Conditions, Db, Page, PageRequest, Value, to_micros};
use chrono::NaiveDate;
use sqlx::FromRow;
use sqlx::any::AnyRow;

use ates_events::ids::PopugId;

use crate::AccountingError;
use mail::MailQueue;
pub use mail::{Mail, MailStatus};
use payout::PayoutQueue;
pub use payout::{Payout, PayoutStatus};

/// A table of work rows with the same life: `PENDING` until done or given up as `FAILED`,
/// claimed for a lease, retried with backoff.
trait Queue {
    const TABLE: &'static str;
    const COLUMNS: &'static str;
    /// The condition of a row that belongs to business day `{}`.
    const OF_DAY: &'static str;
    type Row: for<'r> FromRow<'r, AnyRow> + Send + Unpin;
    type Item: From<Self::Row>;
    type Status;

    fn status(stored: &str) -> Self::Status;
}

/// How a queue retries.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts before a row is given up as `FAILED`.
    pub max_attempts: i64,
    /// The wait after the first failure; it doubles with each further one.
    pub backoff: Duration,
    /// How long a claim keeps other workers away.
    pub lease: Duration,
}

impl Retry {
    fn delay(&self, attempts: i64) -> chrono::Duration {
        let factor = 2u32.saturating_pow(attempts.clamp(0, 16) as u32);
        chrono::Duration::from_std(self.backoff.saturating_mul(factor))
            .unwrap_or(chrono::Duration::MAX)
            .min(chrono::Duration::hours(1))
    }
}

/// The payout and mail queues.
#[derive(Clone)]
pub struct Queues {
    db: Db,
}

/// Which rows of a queue a reader asks for, newest first.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub popug_id: Option<PopugId>,
    pub day: Option<NaiveDate>,
    pub status: Option<PayoutStatus>,
}

impl Queues {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Payouts due for the payment system, leased to the caller.
    pub async fn claim_payouts(
        &self,
        limit: i64,
        retry: &Retry,
    ) -> Result<Vec<Payout>, AccountingError> {
        self.claim::<PayoutQueue>(limit, retry).await
    }

    /// Mail due for sending, leased to the caller.
    pub async fn claim_mail(
        &self,
        limit: i64,
        retry: &Retry,
    ) -> Result<Vec<Mail>, AccountingError> {
        self.claim::<MailQueue>(limit, retry).await
    }

    async fn claim<Q: Queue>(
        &self,
        limit: i64,
        retry: &Retry,
    ) -> Result<Vec<Q::Item>, AccountingError> {
        let (table, columns) = (Q::TABLE, Q::COLUMNS);
        let now = ates_db::now();
        let lease_until = now + chrono::Duration::from_std(retry.lease).unwrap_or_default();
        // The outer condition is checked again on each row a concurrent claimer has just
        // taken, so two workers never hold one row.
        let sql = format!(
            "UPDATE {table} SET lease_until = $1 \
             WHERE id IN (SELECT id FROM {table} WHERE status = 'PENDING' AND next_attempt_at <= $2 \
                          AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_attempt_at LIMIT $4) \
               AND status = 'PENDING' AND (lease_until IS NULL OR lease_until < $5) \
             RETURNING {columns}"
        );
        let now = to_micros(now);
        let mut tx = self.db.begin_write().await?;
        let rows = sqlx::query_as::<_, Q::Row>(sqlx::AssertSqlSafe(sql))
            .bind(to_micros(lease_until))
            .bind(now)
            .bind(now)
            .bind(limit)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(Q::Item::from).collect())
    }

    /// The payment system confirmed the payout (or there is none, and the ledger's word is it).
    pub async fn payout_paid(&self, id: &str, settled_by: &str) -> Result<(), AccountingError> {
        sqlx::query(
            "UPDATE payouts SET status = 'PAID', attempts = attempts + 1, settled_at = $1, \
             settled_by = $2, lease_until = NULL, last_error = NULL WHERE id = $3 AND status = 'PENDING'",
        )
        .bind(to_micros(ates_db::now()))
        .bind(settled_by.to_owned())
        .bind(id.to_owned())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// An attempt failed: try again later, or give up after the last attempt.
    pub async fn payout_failed(
        &self,
        payout: &Payout,
        error: &str,
        retry: &Retry,
    ) -> Result<PayoutStatus, AccountingError> {
        self.attempt_failed::<PayoutQueue>(&payout.id, payout.attempts, error, retry)
            .await
    }

    /// Sends a failed payout to the payment system again, from a fresh count of attempts.
    pub async fn retry_payout(&self, id: &str) -> Result<Payout, AccountingError> {
        let sql = format!(
            "UPDATE payouts SET status = 'PENDING', attempts = 0, next_attempt_at = $1, \
             lease_until = NULL WHERE id = $2 AND status = 'FAILED' RETURNING {}",
            PayoutQueue::COLUMNS
        );
        let row: Option<<PayoutQueue as Queue>::Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(to_micros(ates_db::now()))
            .bind(id.to_owned())
            .fetch_optional(self.db.pool())
            .await?;
        match row {
            Some(row) => Ok(row.into()),
            None if self.payout(id).await?.is_some() => {
                Err(AccountingError::PayoutNotFailed(id.to_owned()))
            }
            None => Err(AccountingError::NoSuchPayout(id.to_owned())),
        }
    }

    pub async fn payout(&self, id: &str) -> Result<Option<Payout>, AccountingError> {
        self.by_id::<PayoutQueue>(id).await
    }

    pub async fn mail(&self, id: &str) -> Result<Option<Mail>, AccountingError> {
        self.by_id::<MailQueue>(id).await
    }

    async fn by_id<Q: Queue>(&self, id: &str) -> Result<Option<Q::Item>, AccountingError> {
        let sql = format!("SELECT {} FROM {} WHERE id = $1", Q::COLUMNS, Q::TABLE);
        let row: Option<Q::Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.to_owned())
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.map(Q::Item::from))
    }

    /// How many payouts stand in each status, every status named (zero where none).
    pub async fn payouts_by_status(&self) -> Result<Vec<(PayoutStatus, i64)>, AccountingError> {
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM payouts GROUP BY status")
                .fetch_all(self.db.pool())
                .await?;
        Ok([
            PayoutStatus::Pending,
            PayoutStatus::Paid,
            PayoutStatus::Failed,
        ]
        .into_iter()
        .map(|status| {
            let count = counts
                .iter()
                .find(|(stored, _)| stored == status.as_str())
                .map_or(0, |(_, count)| *count);
            (status, count)
        })
        .collect())
    }

    /// A page of payouts, newest first; the cursor is a payout's id.
    pub async fn payouts(
        &self,
        filter: &QueueFilter,
        page: &PageRequest,
    ) -> Result<Page<Payout>, AccountingError> {
        self.page::<PayoutQueue>(filter, page).await
    }

    /// The mail was handed to the SMTP server, or kept in the mailbox.
    pub async fn mail_sent(
        &self,
        id: &str,
        address: Option<&str>,
        via: &str,
    ) -> Result<(), AccountingError> {
        sqlx::query(
            "UPDATE mail SET status = 'SENT', attempts = attempts + 1, sent_at = $1, sent_via = $2, \
             address = $3, lease_until = NULL, last_error = NULL WHERE id = $4 AND status = 'PENDING'",
        )
        .bind(to_micros(ates_db::now()))
        .bind(via.to_owned())
        .bind(address.map(str::to_owned))
        .bind(id.to_owned())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    pub async fn mail_failed(
        &self,
        mail: &Mail,
        error: &str,
        retry: &Retry,
    ) -> Result<MailStatus, AccountingError> {
        self.attempt_failed::<MailQueue>(&mail.id, mail.attempts, error, retry)
            .await
    }

    /// A page of mail, newest first; the cursor is a mail's id.
    pub async fn mailbox(
        &self,
        filter: &QueueFilter,
        page: &PageRequest,
    ) -> Result<Page<Mail>, AccountingError> {
        self.page::<MailQueue>(filter, page).await
    }

    async fn attempt_failed<Q: Queue>(
        &self,
        id: &str,
        attempts_before: i64,
        error: &str,
        retry: &Retry,
    ) -> Result<Q::Status, AccountingError> {
        let table = Q::TABLE;
        let next = ates_db::now() + retry.delay(attempts_before);
        let sql = format!(
            "UPDATE {table} SET attempts = attempts + 1, last_error = $1, lease_until = NULL, \
             next_attempt_at = $2, \
             status = CASE WHEN attempts + 1 >= $3 THEN 'FAILED' ELSE 'PENDING' END \
             WHERE id = $4 AND status = 'PENDING' RETURNING status"
        );
        let status: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(error.chars().take(500).collect::<String>())
            .bind(to_micros(next))
            .bind(retry.max_attempts)
            .bind(id.to_owned())
            .fetch_optional(self.db.pool())
            .await?;
        Ok(Q::status(status.as_deref().unwrap_or("PENDING")))
    }

    async fn page<Q: Queue>(
        &self,
        filter: &QueueFilter,
        page: &PageRequest,
    ) -> Result<Page<Q::Item>, AccountingError> {
        let newest_first = ates_db::Order {
            column: "id",
            descending: true,
        };
        let cursor = page.after.as_deref().map(Value::from);
        let rows: Page<Q::Row> = ates_db::read_page(
            &self.db,
            Q::COLUMNS,
            Q::TABLE,
            queue_conditions::<Q>(filter),
            newest_first,
            page,
            cursor,
        )
        .await?;
        Ok(rows.map(Q::Item::from))
    }

    async fn count<Q: Queue>(&self, filter: &QueueFilter) -> Result<i64, AccountingError> {
        Ok(queue_conditions::<Q>(filter)
            .count(&self.db, Q::TABLE)
            .await?)
    }

    /// How many payouts `filter` finds.
    pub async fn count_payouts(&self, filter: &QueueFilter) -> Result<i64, AccountingError> {
        self.count::<PayoutQueue>(filter).await
    }

    /// How many messages `filter` finds in the mailbox.
    pub async fn count_mail(&self, filter: &QueueFilter) -> Result<i64, AccountingError> {
        self.count::<MailQueue>(filter).await
    }
}

/// The conditions of a queue's list: each filter given, and no other.
fn queue_conditions<Q: Queue>(filter: &QueueFilter) -> Conditions {
    let mut conditions = Conditions::default();
    if let Some(popug) = &filter.popug_id {
        conditions.compare("popug_id", "=", popug.as_str());
    }
    if let Some(day) = filter.day {
        let day = conditions.bind(day.to_string());
        conditions.push(Q::OF_DAY.replace("{}", &day));
    }
    if let Some(status) = filter.status {
        conditions.compare("status", "=", status.as_str());
    }
    conditions
}
