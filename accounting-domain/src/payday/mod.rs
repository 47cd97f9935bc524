//! Make Payment: closing a business day pays out every positive balance, once.
//!
//! A popug's payout for day D is its balance at D's end: today's balance less the task money
//! logged since D ended (payouts of earlier days are already in the balance, and none of a
//! later day exists, because days close oldest first). Each batch of popugs is paid in one
//! transaction that writes the payout row, the PAYOUT log entry, the balance, the mail and the
//! PayoutMade event together; the unique (popug, day) of `payouts` and a check inside that
//! transaction make a second closer, a retry or a resumed crash skip whoever is paid already.
//! The day is marked closed only after its last batch, so a close cut short is resumed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ates_db::{Backend, Db, Lock, Value, list_placeholders, placeholders, to_micros};
use ates_events::NewEvent;
use ates_events::outbox;
use ates_events::payout::PayoutMade;
use chrono::{DateTime, Days, NaiveDate, Utc};
use futures::TryStreamExt as _;
use sqlx::AnyConnection;
use uuid::Uuid;

mod closes;
mod mail;

pub use closes::DayClose;
use mail::payout_mail;

use crate::{AccountingError, Calendar, EntryKind};

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

/// A popug who looked due when the close began.
struct Candidate {
    popug: String,
    standing: Standing,
}

/// What the balance of a popug consists of, as a close sees it.
#[derive(Default, Clone, Copy)]
struct Standing {
    balance: i64,
    /// Task money logged after the day's end: not the day's to pay.
    later: i64,
    /// Task money logged during the day.
    earned: i64,
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
        // Who looks due and why, read in one pass; each batch checks it again under its locks.
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT acc.popug_id, acc.balance, \
                    CAST(COALESCE(l.later, 0) AS BIGINT), CAST(COALESCE(l.earned, 0) AS BIGINT) \
             FROM accounts acc \
             LEFT JOIN (SELECT popug_id, \
                               SUM(CASE WHEN logged_at >= $1 THEN amount ELSE 0 END) AS later, \
                               SUM(CASE WHEN logged_at < $2 THEN amount ELSE 0 END) AS earned \
                        FROM audit_log WHERE logged_at >= $3 AND kind <> 'PAYOUT' \
                        GROUP BY popug_id) l \
                    ON l.popug_id = acc.popug_id \
             WHERE acc.balance - COALESCE(l.later, 0) > 0 \
               AND NOT EXISTS (SELECT 1 FROM payouts p WHERE p.popug_id = acc.popug_id AND p.day = $4) \
             ORDER BY acc.popug_id",
        )
        .bind(to_micros(end))
        .bind(to_micros(end))
        .bind(to_micros(start))
        .bind(day.to_string())
        .fetch_all(self.db.pool())
        .await?;
        let candidates: Vec<Candidate> = rows
            .into_iter()
            .map(|(popug, balance, later, earned)| Candidate {
                popug,
                standing: Standing {
                    balance,
                    later,
                    earned,
                },
            })
            .collect();
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

    /// Pays the `candidates` who are due at the end of `day` and not paid yet.
    async fn pay(
        &self,
        conn: &mut AnyConnection,
        day: NaiveDate,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        candidates: &[Candidate],
    ) -> Result<(), AccountingError> {
        let sql = format!(
            // In id order, as the ledger locks them, so neither waits for the other in a circle.
            "SELECT popug_id, balance FROM accounts WHERE popug_id IN ({}) ORDER BY popug_id{}",
            list_placeholders(self.db.backend(), candidates.len()),
            self.db.lock_rows()
        );
        let ids = candidates.iter().map(|c| Value::Text(c.popug.clone()));
        let balances: HashMap<String, i64> =
            ates_db::bind_all_as(sqlx::query_as(sqlx::AssertSqlSafe(sql)), ids)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
        // An unchanged balance means nothing moved the account since the candidates were read
        // (a payout or any entry with an amount would have); a changed one is read again.
        let mut standings: HashMap<String, Standing> = HashMap::new();
        let mut stale = Vec::new();
        for candidate in candidates {
            match balances.get(&candidate.popug) {
                Some(balance) if *balance == candidate.standing.balance => {
                    standings.insert(candidate.popug.clone(), candidate.standing);
                }
                Some(balance) => {
                    standings.insert(
                        candidate.popug.clone(),
                        Standing {
                            balance: *balance,
                            ..Standing::default()
                        },
                    );
                    stale.push(candidate.popug.clone());
                }
                None => {}
            }
        }
        if !stale.is_empty() {
            let sql = format!(
                "SELECT popug_id, \
                        CAST(SUM(CASE WHEN logged_at >= $1 THEN amount ELSE 0 END) AS BIGINT), \
                        CAST(SUM(CASE WHEN logged_at < $2 THEN amount ELSE 0 END) AS BIGINT) \
                 FROM audit_log WHERE kind <> 'PAYOUT' AND logged_at >= $3 AND popug_id IN ({}) \
                 GROUP BY popug_id",
                placeholders(4, stale.len())
            );
            let head = [to_micros(end), to_micros(end), to_micros(start)].map(Value::Int);
            let sums: Vec<(String, i64, i64)> = ates_db::bind_all_as(
                sqlx::query_as(sqlx::AssertSqlSafe(sql)),
                head.into_iter().chain(stale.into_iter().map(Value::Text)),
            )
            .fetch_all(&mut *conn)
            .await?;
            for (popug, later, earned) in sums {
                if let Some(standing) = standings.get_mut(&popug) {
                    standing.later = later;
                    standing.earned = earned;
                }
            }
        }
        let now = self.db.now();
        let queued_at = to_micros(ates_db::now());
        let due: Vec<(&String, Standing, i64, Uuid)> = candidates
            .iter()
            .map(|candidate| &candidate.popug)
            .filter_map(|popug| {
                let standing = standings.get(popug).copied()?;
                let due = standing.balance - standing.later;
                (due > 0).then(|| (popug, standing, due, Uuid::now_v7()))
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let payouts = due.iter().flat_map(|(popug, standing, due, id)| {
            [
                Value::from(id.to_string()),
                popug.as_str().into(),
                day.to_string().into(),
                (*due).into(),
                standing.earned.into(),
                "PENDING".into(),
                queued_at.into(),
                to_micros(now).into(),
            ]
        });
        // The guard of "once": whoever a concurrent closer paid first conflicts here, and is
        // left out of everything below.
        let fresh: HashSet<String> = ates_db::insert_rows_returning(
            conn,
            "INSERT INTO payouts (id, popug_id, day, amount, earned, status, next_attempt_at, created_at) VALUES",
            "ON CONFLICT (popug_id, day) DO NOTHING RETURNING popug_id",
            8,
            payouts.collect(),
        )
        .await?
        .into_iter()
        .collect();

        let mut entries = Vec::new();
        let mut mail = Vec::new();
        let mut moves = Vec::new();
        let mut events = Vec::new();
        for (popug, standing, due, id) in due.iter().filter(|d| fresh.contains(d.0)) {
            let made = PayoutMade {
                payout_id: id.to_string(),
                popug_id: popug.to_string(),
                day,
                amount: *due,
                earned: standing.earned,
                paid_at: now,
            };
            let mut event = NewEvent::new(&made, now);
            event.id = *id;
            events.push(event);
            entries.extend([
                Value::from(id.to_string()),
                EntryKind::Payout.as_str().into(),
                (-due).into(),
                (standing.balance - due).into(),
                Value::Null,
                popug.as_str().into(),
                to_micros(now).into(),
            ]);
            let (subject, body) = payout_mail(day, standing.earned, *due);
            mail.extend([
                Value::from(Uuid::now_v7().to_string()),
                id.to_string().into(),
                popug.as_str().into(),
                subject.into(),
                body.into(),
                "PENDING".into(),
                queued_at.into(),
                to_micros(now).into(),
            ]);
            moves.extend([Value::from(popug.as_str()), (-due).into()]);
        }
        if events.is_empty() {
            return Ok(());
        }
        crate::audit_log::append(conn, entries).await?;
        ates_db::insert_rows(
            conn,
            "INSERT INTO mail (id, payout_id, popug_id, subject, body, status, next_attempt_at, created_at) VALUES",
            "",
            8,
            mail,
        )
        .await?;
        crate::posting::move_balances(conn, moves).await?;
        outbox::append(conn, &events).await?;
        Ok(())
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
