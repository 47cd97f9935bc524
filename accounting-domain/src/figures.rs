//! The company's figures: what each day moved, what it paid, and the most expensive tasks.

use std::collections::HashMap;

use ates_db::{Db, Value, bind_all_as, from_micros, row_placeholders, to_micros};
use ates_events::ids::{PopugId, TaskId};
use chrono::{DateTime, NaiveDate, Utc};

use crate::{AccountingError, Calendar, DayRange, Payday, Period};

/// The task money of a stretch of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// Assignment fees taken from popugs (a positive number).
    pub fees_debited: i64,
    /// Rewards paid to popugs for completed tasks.
    pub rewards_credited: i64,
}

impl Moved {
    /// Fees debited less rewards credited: what all popugs lost to the company.
    pub fn management_earnings(&self) -> i64 {
        self.fees_debited - self.rewards_credited
    }
}

/// One business day in numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayFigures {
    pub day: NaiveDate,
    pub moved: Moved,
    pub payout_count: i64,
    pub paid_total: i64,
    /// Popugs below zero at the day's end (now, for today).
    pub negative_count: i64,
    pub closed: bool,
}

/// A completed task and the reward it paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub task_id: TaskId,
    pub popug_id: PopugId,
    pub reward: i64,
    pub completed_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Figures {
    db: Db,
    payday: Payday,
}

impl Figures {
    pub fn new(db: Db, payday: Payday) -> Self {
        Self { db, payday }
    }

    fn calendar(&self) -> &Calendar {
        self.payday.calendar()
    }

    /// The figures of each day of `range`, oldest first.
    pub async fn days(&self, range: DayRange) -> Result<Vec<DayFigures>, AccountingError> {
        let (from, to) = (range.from(), range.to());
        let closes: HashMap<NaiveDate, _> = self
            .payday
            .day_closes(from, to)
            .await?
            .into_iter()
            .map(|close| (close.day, close))
            .collect();
        let payouts: HashMap<String, (i64, i64)> = sqlx::query_as::<_, (String, i64, i64)>(
            "SELECT day, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM payouts \
             WHERE day >= $1 AND day <= $2 GROUP BY day",
        )
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_all(self.db.pool())
        .await?
        .into_iter()
        .map(|(day, count, total)| (day, (count, total)))
        .collect();
        let days: Vec<NaiveDate> = range.days().collect();
        let moved = self.moved_per_day(&days).await?;
        let mut figures = Vec::with_capacity(days.len());
        // An open day's negative count is one more query; only today and days the scheduler
        // has yet to close are open.
        for (day, moved) in days.into_iter().zip(moved) {
            let (payout_count, paid_total) =
                payouts.get(&day.to_string()).copied().unwrap_or_default();
            let (negative_count, closed) = match closes.get(&day) {
                Some(close) => (close.negative_count, true),
                None => (self.negative_count_open(day).await?, false),
            };
            figures.push(DayFigures {
                day,
                moved,
                payout_count,
                paid_total,
                negative_count,
                closed,
            });
        }
        Ok(figures)
    }

    /// Fees debited and rewards credited during a day.
    pub async fn money_moved(&self, day: NaiveDate) -> Result<Moved, AccountingError> {
        let mut moved = self.moved_per_day(&[day]).await?;
        Ok(moved.pop().unwrap_or_default())
    }

    /// The task money of each of `days`, in their order: one query, whatever their number.
    async fn moved_per_day(&self, days: &[NaiveDate]) -> Result<Vec<Moved>, AccountingError> {
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let ranges: Vec<DayRange> = days.iter().map(|&day| DayRange::day(day)).collect();
        let (values, rows) = self.windows(&ranges);
        let sql = format!(
            "WITH days (n, starts, ends) AS (VALUES {rows}) \
             SELECT d.n, a.kind, CAST(SUM(a.amount) AS BIGINT) \
             FROM days d JOIN audit_log a ON a.kind IN ('TASK_ASSIGNED', 'TASK_COMPLETED') \
                 AND a.logged_at >= d.starts AND a.logged_at < d.ends \
             GROUP BY d.n, a.kind"
        );
        let rows: Vec<(i64, String, i64)> =
            bind_all_as(sqlx::query_as(sqlx::AssertSqlSafe(sql)), values)
                .fetch_all(self.db.pool())
                .await?;
        let mut moved = vec![Moved::default(); days.len()];
        for (n, kind, sum) in rows {
            let Some(day) = usize::try_from(n).ok().and_then(|n| moved.get_mut(n)) else {
                continue;
            };
            match kind.as_str() {
                "TASK_ASSIGNED" => day.fees_debited = -sum,
                _ => day.rewards_credited = sum,
            }
        }
        Ok(moved)
    }

    /// Popugs below zero at the end of a day: the close's record for a closed day, else the
    /// balances less the task money logged since.
    pub async fn negative_count(&self, day: NaiveDate) -> Result<i64, AccountingError> {
        match self.payday.day_close(day).await? {
            Some(close) => Ok(close.negative_count),
            None => self.negative_count_open(day).await,
        }
    }

    /// Exact while no later day is closed: every payout in the balances is of an earlier day.
    async fn negative_count_open(&self, day: NaiveDate) -> Result<i64, AccountingError> {
        let (_, end) = self.calendar().bounds(day);
        Ok(sqlx::query_scalar(crate::payday::NEGATIVE_AT_END)
            .bind(to_micros(end))
            .fetch_one(self.db.pool())
            .await?)
    }

    /// The task with the highest reward among those completed in `range`; of equals, the one
    /// completed first.
    pub async fn most_expensive(
        &self,
        range: DayRange,
    ) -> Result<Option<Completion>, AccountingError> {
        let mut tops = self.top_per_period(&[range]).await?;
        Ok(tops.pop().and_then(|top| top.task))
    }

    /// The most expensive task of each period of `range`, newest period first: one query,
    /// whatever the number of periods.
    pub async fn most_expensive_per(
        &self,
        period: Period,
        range: DayRange,
    ) -> Result<Vec<PeriodTop>, AccountingError> {
        let mut tops = self.top_per_period(&period.cut(range)).await?;
        tops.reverse();
        Ok(tops)
    }

    /// The instants of each of `ranges` as rows `(n, starts, ends)` of a `VALUES` list, `n`
    /// counting from 0: the values to bind, and the rows' placeholders.
    fn windows(&self, ranges: &[DayRange]) -> (Vec<Value>, String) {
        let mut values = Vec::with_capacity(ranges.len() * 3);
        for (n, range) in ranges.iter().enumerate() {
            let (start, _) = self.calendar().bounds(range.from());
            let (_, end) = self.calendar().bounds(range.to());
            values.extend([
                Value::Int(n as i64),
                Value::Int(to_micros(start)),
                Value::Int(to_micros(end)),
            ]);
        }
        let rows = row_placeholders(self.db.backend(), ranges.len(), 3);
        (values, rows)
    }

    /// The top completion of each of `periods`, in their order. Each completion is ranked
    /// within its period by reward, then time, then log order; the first of each is kept.
    async fn top_per_period(
        &self,
        periods: &[DayRange],
    ) -> Result<Vec<PeriodTop>, AccountingError> {
        let (values, windows) = self.windows(periods);
        let sql = format!(
            "WITH periods (n, starts, ends) AS (VALUES {windows}) \
             SELECT n, task_id, popug_id, amount, logged_at FROM ( \
                 SELECT p.n, a.task_id, a.popug_id, a.amount, a.logged_at, ROW_NUMBER() OVER \
                     (PARTITION BY p.n ORDER BY a.amount DESC, a.logged_at, a.seq) AS place \
                 FROM periods p JOIN audit_log a ON a.kind = 'TASK_COMPLETED' \
                     AND a.logged_at >= p.starts AND a.logged_at < p.ends \
             ) ranked WHERE place = 1"
        );
        let rows: Vec<(i64, Option<String>, String, i64, i64)> =
            bind_all_as(sqlx::query_as(sqlx::AssertSqlSafe(sql)), values)
                .fetch_all(self.db.pool())
                .await?;
        let mut tops: Vec<PeriodTop> = periods
            .iter()
            .map(|&period| PeriodTop { period, task: None })
            .collect();
        for (n, task_id, popug_id, reward, at) in rows {
            if let Some(top) = usize::try_from(n).ok().and_then(|n| tops.get_mut(n)) {
                top.task = Some(Completion {
                    task_id: TaskId(task_id.unwrap_or_default()),
                    popug_id: PopugId(popug_id),
                    reward,
                    completed_at: from_micros(at),
                });
            }
        }
        Ok(tops)
    }
}

/// The most expensive task of one period; `None` when no task was completed in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodTop {
    pub period: DayRange,
    pub task: Option<Completion>,
}
