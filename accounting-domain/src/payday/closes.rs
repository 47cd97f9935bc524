//! The record of each closed day: what its close paid, read back by the API and the figures.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::FromRow;

use super::Payday;
use crate::AccountingError;

/// A closed business day and what its close paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayClose {
    pub day: NaiveDate,
    pub closed_at: DateTime<Utc>,
    pub payout_count: i64,
    pub paid_total: i64,
    /// Popugs whose balance was below zero at the day's end.
    pub negative_count: i64,
}

#[derive(FromRow)]
struct DayCloseRow {
    day: String,
    closed_at: i64,
    payout_count: i64,
    paid_total: i64,
    negative_count: i64,
}

impl From<DayCloseRow> for DayClose {
    fn from(row: DayCloseRow) -> Self {
        Self {
            day: row.day.parse().unwrap_or_default(),
            closed_at: ates_db::from_micros(row.closed_at),
            payout_count: row.payout_count,
            paid_total: row.paid_total,
            negative_count: row.negative_count,
        }
    }
}

impl Payday {
    /// The close of a day, if it is closed.
    pub async fn day_close(&self, day: NaiveDate) -> Result<Option<DayClose>, AccountingError> {
        let row: Option<DayCloseRow> = sqlx::query_as(
            "SELECT day, closed_at, payout_count, paid_total, negative_count \
             FROM day_closes WHERE day = $1",
        )
        .bind(day.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(DayClose::from))
    }

    /// Closes of the days in `[from, to]`, oldest first.
    pub async fn day_closes(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayClose>, AccountingError> {
        let rows: Vec<DayCloseRow> = sqlx::query_as(
            "SELECT day, closed_at, payout_count, paid_total, negative_count \
             FROM day_closes WHERE day >= $1 AND day <= $2 ORDER BY day",
        )
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(DayClose::from).collect())
    }
}
