//! Make Payment: closing a business day pays out every positive balance, once.
//!
//! A popug's payout for day D is its balance at D's end: today's balance less the task money
//! logged since D ended (payouts of earlier days are already in the balance, and none of a
//! later day exists, because days close oldest first). Each batch of popugs is paid in one
//! transaction that writes the payout row, the PAYOUT log entry, the balance, the mail and the
//! PayoutMade event together; the unique (popug, day) of `payouts` and a check inside that
//! transaction make a second closer, a retry or a resumed crash skip whoever is paid already.
//! The day is marked closed only after its last batch, so a close cut short is resumed.

use std::sync::Arc;

use ates_db::{Backend, Db, Lock, to_micros};
use chrono::{DateTime, Days, NaiveDate, Utc};
use futures::TryStreamExt as _;

mod batch;
mod closes;
mod mail;
mod statement;

pub use batch::payout_id;
pub use closes::DayClose;
pub use statement::Statement;

use crate::{AccountingError, Calendar};

/// How long after midnight the scheduled close waits, so that the day's last events are in.
pub const CLOSE_GRACE: chrono::Duration = chrono::Duration::seconds(2);

/// Popugs paid per transaction, unless configured otherwise.
pub const DEFAULT_BATCH: i64 = 1000;

/// Popugs below zero at an instant `$1` (a day's end): each balance less the task money logged
/// since. Exact while no day after it has been closed, as every payout in a balance is then of
/// an earlier day.
pub(crate) const NEGATIVE_AT_END: &str = "SELECT COUNT(*) FROM accounts acc \
     LEFT JOIN (SELECT popug_id, SUM(amount) AS later FROM audit_log \
                WHERE logged_at >= $1 AND kind <> 'PAYOUT' GROUP BY popug_id) l \
            ON l.popug_id = acc.popug_id \
     WHERE acc.balance - COALESCE(l.later, 0) < 0";

/// Closes business days.
#[derive(Clone)]
pub struct Payday {
    db: Db,
    calendar: Calendar,
    batch: i64,
    /// One close at a time in this process; PostgreSQL's advisory lock covers other processes.
    closing: Arc<tokio::sync::Mutex<()>>,
}

impl Payday {
    pub fn new(db: Db, calendar: Calendar) -> Self {
        Self {
            db,
            calendar,
            batch: DEFAULT_BATCH,
            closing: Arc::default(),
        }
    }

    /// Pays `batch` popugs per transaction: smaller holds fewer locks at a time, larger
    /// closes faster.
    pub fn with_batch(mut self, batch: i64) -> Self {
        self.batch = batch.max(1);
        self
    }

    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Now, by the database handle's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.db.now()
    }

    /// The business day it is now.
    pub fn today(&self) -> NaiveDate {
        self.calendar.day_of(self.db.now())
    }

    /// The latest business day that has ended: yesterday.
    pub fn last_ended_day(&self) -> Option<NaiveDate> {
        self.today().pred_opt()
    }

    /// The instants `[start, end)` of a business day; today's when `None`.
    pub fn bounds(&self, day: Option<NaiveDate>) -> (DateTime<Utc>, DateTime<Utc>) {
        self.calendar.bounds(day.unwrap_or_else(|| self.today()))
    }

    /// Make Payment on schedule: closes every day that has ended and is still open, oldest
    /// first, once [`CLOSE_GRACE`] has passed since midnight (so the day's last events are in).
    /// Returns the closes it made; none when there was nothing to close.
    pub async fn close_ended_days(&self) -> Result<Vec<DayClose>, AccountingError> {
        let Some(yesterday) = self.last_ended_day() else {
            return Ok(Vec::new());
        };
        let (midnight, _) = self.calendar.bounds(self.today());
        if self.now() < midnight + CLOSE_GRACE {
            return Ok(Vec::new());
        }
        if self.open_days(yesterday).await?.is_empty() {
            return Ok(Vec::new());
        }
        self.close_through(yesterday).await
    }

    /// Closes every open day up to and including `last`, oldest first, and returns the closes
    /// it made; days closed before are left alone. `last` must have ended.
    pub async fn close_through(&self, last: NaiveDate) -> Result<Vec<DayClose>, AccountingError> {
        if last >= self.today() {
            return Err(AccountingError::DayNotOver(last));
        }
        let _local = self.closing.lock().await;
        // Held for the whole close: another replica waits, then finds the days closed. It goes
        // with its connection if the process dies.
        let held = self.db.lock_session(Lock::DayClose).await?;
        let closed = self.close_open_days(last).await;
        held.release().await;
        closed
    }

    async fn close_open_days(&self, last: NaiveDate) -> Result<Vec<DayClose>, AccountingError> {
        let mut closes = Vec::new();
        for day in self.open_days(last).await? {
            closes.push(self.close_day(day).await?);
        }
        Ok(closes)
    }

    /// Days up to `last` not closed yet, oldest first: from the day after the latest close, or,
    /// before any close, from the day of the first log entry. Empty while the log is.
    pub async fn open_days(&self, last: NaiveDate) -> Result<Vec<NaiveDate>, AccountingError> {
        let latest: Option<String> = sqlx::query_scalar("SELECT MAX(day) FROM day_closes")
            .fetch_one(self.db.pool())
            .await?;
        let first = match latest.and_then(|day| day.parse::<NaiveDate>().ok()) {
            Some(closed) => closed.checked_add_days(Days::new(1)),
            None => {
                let first_entry: Option<i64> =
                    sqlx::query_scalar("SELECT MIN(logged_at) FROM audit_log")
                        .fetch_one(self.db.pool())
                        .await?;
                first_entry.map(|at| self.calendar.day_of(ates_db::from_micros(at)))
            }
        };
        Ok(first
            .map(|first| first.iter_days().take_while(|day| *day <= last).collect())
            .unwrap_or_default())
    }

    /// Pays out every positive balance at the end of `day`, then marks the day closed.
    async fn close_day(&self, day: NaiveDate) -> Result<DayClose, AccountingError> {
        let (start, end) = self.calendar.bounds(day);
        let candidates = self.candidates(day, (start, end)).await?;
        // PostgreSQL pays two batches at once (they lock different accounts); SQLite has one
        // writer anyway.
        let parallel = match self.db.backend() {
            Backend::Postgres => 2,
            Backend::Sqlite => 1,
        };
        let size = usize::try_from(self.batch).unwrap_or(1).max(1);
        futures::stream::iter(candidates.chunks(size).map(Ok))
            .try_for_each_concurrent(parallel, |batch| async move {
                let mut tx = self.db.begin_write().await?;
                self.pay(&mut tx, day, (start, end), batch).await?;
                tx.commit().await?;
                Ok::<_, AccountingError>(())
            })
            .await?;
        self.mark_closed(day, end).await
    }

    /// Records the day as closed, with its figures; a day closed meanwhile keeps its record.
    async fn mark_closed(
        &self,
        day: NaiveDate,
        end: DateTime<Utc>,
    ) -> Result<DayClose, AccountingError> {
        let mut tx = self.db.begin_write().await?;
        let negative_count: i64 = sqlx::query_scalar(NEGATIVE_AT_END)
            .bind(to_micros(end))
            .fetch_one(&mut *tx)
            .await?;
        let (payout_count, paid_total): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payouts WHERE day = $1",
        )
        .bind(day.to_string())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO day_closes (day, closed_at, payout_count, paid_total, negative_count) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (day) DO NOTHING",
        )
        .bind(day.to_string())
        .bind(to_micros(self.db.now()))
        .bind(payout_count)
        .bind(paid_total)
        .bind(negative_count)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.day_close(day)
            .await?
            .ok_or_else(|| AccountingError::Storage(sqlx::Error::RowNotFound))
    }
}
