//! What a day close leaves to do afterwards: tell the payment system about each payout, and
//! send each popug its mail. Both are queues in the database, so a close never waits for them
//! and a crash forgets nothing.
//!
//! A worker claims due rows for a lease (another replica skips them until it runs out), does
//! the work, and records the outcome: done, or a failed attempt retried later with backoff,
//! and given up (`FAILED`) after the configured attempts. Queue times are the system's, not
//! the business clock's.

use std::time::Duration;

use ates_db::{Db, Value, from_micros, to_micros};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::FromRow;

use crate::AccountingError;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutStatus {
    /// The money left the balance; the payment system has not confirmed it yet.
    Pending,
    Paid,
    /// The payment system refused or did not answer, every attempt; an admin may retry.
    Failed,
}

impl PayoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Paid => "PAID",
            Self::Failed => "FAILED",
        }
    }

    fn from_stored(stored: &str) -> Self {
        match stored {
            "PAID" => Self::Paid,
            "FAILED" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// Also the PayoutMade event's id and the payment system's idempotency key.
    pub id: String,
    pub popug_id: String,
    pub day: NaiveDate,
    pub amount: i64,
    /// What the popug's tasks earned that day.
    pub earned: i64,
    pub status: PayoutStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
    /// `payment-system`, or `ledger` when no payment system is configured.
    pub settled_by: Option<String>,
}

const PAYOUT_COLUMNS: &str = "id, popug_id, day, amount, earned, status, attempts, last_error, created_at, settled_at, settled_by";

#[derive(FromRow)]
struct PayoutRow {
    id: String,
    popug_id: String,
    day: String,
    amount: i64,
    earned: i64,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: i64,
    settled_at: Option<i64>,
    settled_by: Option<String>,
}

impl From<PayoutRow> for Payout {
    fn from(row: PayoutRow) -> Self {
        Self {
            id: row.id,
            popug_id: row.popug_id,
            day: row.day.parse().unwrap_or_default(),
            amount: row.amount,
            earned: row.earned,
            status: PayoutStatus::from_stored(&row.status),
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: from_micros(row.created_at),
            settled_at: row.settled_at.map(from_micros),
            settled_by: row.settled_by,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailStatus {
    Pending,
    Sent,
    Failed,
}

impl MailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Sent => "SENT",
            Self::Failed => "FAILED",
        }
    }

    fn from_stored(stored: &str) -> Self {
        match stored {
            "SENT" => Self::Sent,
            "FAILED" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub id: String,
    pub payout_id: Option<String>,
    pub popug_id: String,
    pub subject: String,
    pub body: String,
    pub status: MailStatus,
    /// Where it went; unknown until it is sent.
    pub address: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// `smtp`, or `mailbox` when no SMTP server is configured.
    pub sent_via: Option<String>,
}

const MAIL_COLUMNS: &str = "id, payout_id, popug_id, subject, body, status, address, attempts, \
                            last_error, created_at, sent_at, sent_via";

#[derive(FromRow)]
struct MailRow {
    id: String,
    payout_id: Option<String>,
    popug_id: String,
    subject: String,
    body: String,
    status: String,
    address: Option<String>,
    attempts: i64,
    last_error: Option<String>,
    created_at: i64,
    sent_at: Option<i64>,
    sent_via: Option<String>,
}

impl From<MailRow> for Mail {
    fn from(row: MailRow) -> Self {
        Self {
            id: row.id,
            payout_id: row.payout_id,
            popug_id: row.popug_id,
            subject: row.subject,
            body: row.body,
            status: MailStatus::from_stored(&row.status),
            address: row.address,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: from_micros(row.created_at),
            sent_at: row.sent_at.map(from_micros),
            sent_via: row.sent_via,
        }
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
    pub popug_id: Option<String>,
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
        let rows: Vec<PayoutRow> = self.claim("payouts", PAYOUT_COLUMNS, limit, retry).await?;
        Ok(rows.into_iter().map(Payout::from).collect())
    }

    /// Mail due for sending, leased to the caller.
    pub async fn claim_mail(
        &self,
        limit: i64,
        retry: &Retry,
    ) -> Result<Vec<Mail>, AccountingError> {
        let rows: Vec<MailRow> = self.claim("mail", MAIL_COLUMNS, limit, retry).await?;
        Ok(rows.into_iter().map(Mail::from).collect())
    }

    async fn claim<T>(
        &self,
        table: &str,
        columns: &str,
        limit: i64,
        retry: &Retry,
    ) -> Result<Vec<T>, AccountingError>
    where
        T: for<'r> FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
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
        let rows = sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql))
            .bind(to_micros(lease_until))
            .bind(now)
            .bind(now)
            .bind(limit)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows)
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
        let status = self
            .attempt_failed("payouts", &payout.id, payout.attempts, error, retry)
            .await?;
        Ok(PayoutStatus::from_stored(&status))
    }

    /// Sends a failed payout to the payment system again, from a fresh count of attempts.
    pub async fn retry_payout(&self, id: &str) -> Result<Payout, AccountingError> {
        let sql = format!(
            "UPDATE payouts SET status = 'PENDING', attempts = 0, next_attempt_at = $1, \
             lease_until = NULL WHERE id = $2 AND status = 'FAILED' RETURNING {PAYOUT_COLUMNS}"
        );
        let row: Option<PayoutRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
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
        let sql = format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = $1");
        let row: Option<PayoutRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.to_owned())
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.map(Payout::from))
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

    /// A page of payouts, newest first; the flag says whether more follow.
    pub async fn payouts(
        &self,
        filter: &QueueFilter,
        first: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Payout>, bool), AccountingError> {
        let rows: Vec<PayoutRow> = self
            .page("payouts", PAYOUT_COLUMNS, filter, first, after)
            .await?;
        let mut payouts: Vec<Payout> = rows.into_iter().map(Payout::from).collect();
        let more = payouts.len() > first;
        payouts.truncate(first);
        Ok((payouts, more))
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
        let status = self
            .attempt_failed("mail", &mail.id, mail.attempts, error, retry)
            .await?;
        Ok(MailStatus::from_stored(&status))
    }

    /// A page of mail, newest first.
    pub async fn mailbox(
        &self,
        filter: &QueueFilter,
        first: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Mail>, bool), AccountingError> {
        let rows: Vec<MailRow> = self
            .page("mail", MAIL_COLUMNS, filter, first, after)
            .await?;
        let mut mail: Vec<Mail> = rows.into_iter().map(Mail::from).collect();
        let more = mail.len() > first;
        mail.truncate(first);
        Ok((mail, more))
    }

    async fn attempt_failed(
        &self,
        table: &str,
        id: &str,
        attempts_before: i64,
        error: &str,
        retry: &Retry,
    ) -> Result<String, AccountingError> {
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
        Ok(status.unwrap_or_else(|| "PENDING".into()))
    }

    async fn page<T>(
        &self,
        table: &str,
        columns: &str,
        filter: &QueueFilter,
        first: usize,
        after: Option<&str>,
    ) -> Result<Vec<T>, AccountingError>
    where
        T: for<'r> FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        // `template` holds `{}` where the value's placeholder goes.
        let mut push = |template: &str, value: Value| {
            values.push(value);
            conditions.push(template.replace("{}", &format!("${}", values.len())));
        };
        if let Some(popug) = &filter.popug_id {
            push("popug_id = {}", popug.clone().into());
        }
        if let Some(day) = filter.day {
            // Mail has no day of its own: it belongs to its payout's.
            let template = if table == "payouts" {
                "day = {}"
            } else {
                "payout_id IN (SELECT id FROM payouts WHERE day = {})"
            };
            push(template, day.to_string().into());
        }
        if let Some(status) = filter.status {
            push("status = {}", status.as_str().into());
        }
        if let Some(after) = after {
            push("id < {}", after.to_owned().into());
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        values.push(Value::Int(first as i64 + 1));
        let sql = format!(
            "SELECT {columns} FROM {table} {filter_sql} ORDER BY id DESC LIMIT ${}",
            values.len()
        );
        let query = ates_db::bind_all_as(sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql)), values);
        Ok(query.fetch_all(self.db.pool()).await?)
    }
}
