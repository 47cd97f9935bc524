//! The company's figures: what each day moved, what it paid, and the most expensive tasks.

use std::collections::HashMap;

use ates_db::{Db, from_micros, to_micros};
use chrono::{DateTime, NaiveDate, Utc};

use crate::{AccountingError, Calendar, Payday};

/// One business day in numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayFigures {
    pub day: NaiveDate,
    /// Assignment fees taken from popugs (a positive number).
    pub fees_debited: i64,
    /// Rewards paid to popugs for completed tasks.
    pub rewards_credited: i64,
    pub payout_count: i64,
    pub paid_total: i64,
    /// Popugs below zero at the day's end (now, for today).
    pub negative_count: i64,
    pub closed: bool,
}

impl DayFigures {
    /// Fees debited less rewards credited: what all popugs lost to the company that day.
    pub fn management_earnings(&self) -> i64 {
        self.fees_debited - self.rewards_credited
    }
}

/// A completed task and the reward it paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub task_id: String,
    pub popug_id: String,
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

    /// The figures of each day in `[from, to]`, oldest first.
    pub async fn days(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayFigures>, AccountingError> {
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
        let mut figures = Vec::new();
        for day in from.iter_days().take_while(|day| *day <= to) {
            let (fees_debited, rewards_credited) = self.money_moved(day).await?;
            let (payout_count, paid_total) =
                payouts.get(&day.to_string()).copied().unwrap_or_default();
            let (negative_count, closed) = match closes.get(&day) {
                Some(close) => (close.negative_count, true),
                None => (self.negative_count_open(day).await?, false),
            };
            figures.push(DayFigures {
                day,
                fees_debited,
                rewards_credited,
                payout_count,
                paid_total,
                negative_count,
                closed,
            });
        }
        Ok(figures)
    }

    /// Fees debited and rewards credited during a day, both as positive numbers.
    pub async fn money_moved(&self, day: NaiveDate) -> Result<(i64, i64), AccountingError> {
        let (start, end) = self.calendar().bounds(day);
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, CAST(SUM(amount) AS BIGINT) FROM audit_log \
             WHERE kind IN ('TASK_ASSIGNED', 'TASK_COMPLETED') AND logged_at >= $1 AND logged_at < $2 \
             GROUP BY kind",
        )
        .bind(to_micros(start))
        .bind(to_micros(end))
        .fetch_all(self.db.pool())
        .await?;
        let sum = |kind: &str| {
            rows.iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, sum)| *sum)
        };
        Ok((-sum("TASK_ASSIGNED"), sum("TASK_COMPLETED")))
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

    /// The task with the highest reward among those completed in `[from, to]`; of equals, the
    /// one completed first.
    pub async fn most_expensive(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Option<Completion>, AccountingError> {
        let (start, _) = self.calendar().bounds(from);
        let (_, end) = self.calendar().bounds(to);
        let row: Option<(Option<String>, String, i64, i64)> = sqlx::query_as(
            "SELECT task_id, popug_id, amount, logged_at FROM audit_log \
             WHERE kind = 'TASK_COMPLETED' AND logged_at >= $1 AND logged_at < $2 \
             ORDER BY amount DESC, logged_at, seq LIMIT 1",
        )
        .bind(to_micros(start))
        .bind(to_micros(end))
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(|(task_id, popug_id, reward, at)| Completion {
            task_id: task_id.unwrap_or_default(),
            popug_id,
            reward,
            completed_at: from_micros(at),
        }))
    }
}
