//! A popug's statement of one business day: the balance it opened with, every entry of the
//! day with the balance after it, and the balance it closed with, which the day's close pays
//! out when it is above zero.

use ates_db::to_micros;
use ates_events::ids::PopugId;
use chrono::NaiveDate;

use super::Payday;
use crate::audit_log::{COLUMNS, LogRow};
use crate::{AccountingError, LogEntry};

/// One popug's business day, in money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub popug_id: PopugId,
    pub day: NaiveDate,
    /// The balance at the day's start: after the last entry before it.
    pub opening: i64,
    /// The day's entries in the order they moved the balance; each holds the balance after it.
    pub entries: Vec<LogEntry>,
    /// The balance at the day's end: the opening plus every entry of the day.
    pub closing: i64,
}

impl Payday {
    /// `popug`'s statement of `day`.
    pub async fn statement(
        &self,
        popug: &PopugId,
        day: NaiveDate,
    ) -> Result<Statement, AccountingError> {
        let (start, end) = self.calendar.bounds(day);
        let opening: Option<i64> = sqlx::query_scalar(
            "SELECT balance_after FROM audit_log WHERE popug_id = $1 AND logged_at < $2 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(popug.as_str().to_owned())
        .bind(to_micros(start))
        .fetch_optional(self.db.pool())
        .await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log \
             WHERE popug_id = $1 AND logged_at >= $2 AND logged_at < $3 ORDER BY seq"
        );
        let rows: Vec<LogRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(popug.as_str().to_owned())
            .bind(to_micros(start))
            .bind(to_micros(end))
            .fetch_all(self.db.pool())
            .await?;
        let entries: Vec<LogEntry> = rows.into_iter().map(LogEntry::from).collect();
        let opening = opening.unwrap_or(0);
        let closing = entries.last().map_or(opening, |entry| entry.balance_after);
        Ok(Statement {
            popug_id: popug.clone(),
            day,
            opening,
            entries,
            closing,
        })
    }
}
