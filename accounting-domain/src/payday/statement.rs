//! A popug's statement of one business day: the balance it opened with, every entry of the
//! day with the balance after it, and the balance it closed with, which the day's close pays
//! out when it is above zero. The close mails the same statement, as plain text.

use std::collections::HashMap;

use ates_db::{Value, to_micros};
use ates_events::ids::PopugId;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::AnyConnection;

use super::Payday;
use crate::audit_log::{COLUMNS, LogRow};
use crate::{AccountingError, Calendar, EntryKind, LogEntry};

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
        let mut conn = self.db.pool().acquire().await?;
        let opening = opening(&mut conn, popug.as_str(), start).await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log \
             WHERE popug_id = $1 AND logged_at >= $2 AND logged_at < $3 ORDER BY seq"
        );
        let rows: Vec<LogRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(popug.as_str().to_owned())
            .bind(to_micros(start))
            .bind(to_micros(end))
            .fetch_all(&mut *conn)
            .await?;
        Ok(Statement::new(
            popug.clone(),
            day,
            opening,
            rows.into_iter().map(LogEntry::from).collect(),
        ))
    }
}

/// The statements of `popugs` for `day`, in their order, on the connection of the close that pays them: the
/// day's entries of all of them in one query. A popug's opening balance is its first entry's
/// balance less that entry's amount (each entry holds the balance after it); only a popug with
/// no entry that day needs its opening read on its own.
pub(super) async fn statements(
    conn: &mut AnyConnection,
    day: NaiveDate,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    popugs: &[&str],
) -> Result<Vec<Statement>, AccountingError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log \
         WHERE logged_at >= $1 AND logged_at < $2 AND popug_id IN ({}) ORDER BY popug_id, seq",
        ates_db::placeholders(3, popugs.len())
    );
    let head = [to_micros(start), to_micros(end)].map(Value::Int);
    let rows: Vec<LogRow> = ates_db::bind_all_as(
        sqlx::query_as(sqlx::AssertSqlSafe(sql)),
        head.into_iter()
            .chain(popugs.iter().map(|popug| Value::Text((*popug).to_owned()))),
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut days: HashMap<String, Vec<LogEntry>> = HashMap::new();
    for entry in rows.into_iter().map(LogEntry::from) {
        days.entry(entry.popug_id.0.clone())
            .or_default()
            .push(entry);
    }
    let mut statements = Vec::with_capacity(popugs.len());
    for &popug in popugs {
        let entries = days.remove(popug).unwrap_or_default();
        let opening = match entries.first() {
            Some(first) => first.balance_after - first.amount,
            None => opening(conn, popug, start).await?,
        };
        statements.push(Statement::new(
            PopugId(popug.to_owned()),
            day,
            opening,
            entries,
        ));
    }
    Ok(statements)
}

/// `popug`'s balance at `start`: after its last entry before it, or 0.
async fn opening(
    conn: &mut AnyConnection,
    popug: &str,
    start: DateTime<Utc>,
) -> Result<i64, AccountingError> {
    let balance: Option<i64> = sqlx::query_scalar(
        "SELECT balance_after FROM audit_log WHERE popug_id = $1 AND logged_at < $2 \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(popug.to_owned())
    .bind(to_micros(start))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(balance.unwrap_or(0))
}

impl Statement {
    fn new(popug_id: PopugId, day: NaiveDate, opening: i64, entries: Vec<LogEntry>) -> Self {
        let closing = entries.last().map_or(opening, |entry| entry.balance_after);
        Self {
            popug_id,
            day,
            opening,
            entries,
            closing,
        }
    }

    /// The statement as a plain-text table, with times of day in `calendar`'s zone.
    pub fn to_text(&self, calendar: &Calendar) -> String {
        let rows: Vec<[String; 5]> = self
            .entries
            .iter()
            .map(|entry| {
                [
                    calendar
                        .time_of(entry.logged_at)
                        .format("%H:%M")
                        .to_string(),
                    describe(entry.kind).to_owned(),
                    entry
                        .task_id
                        .as_ref()
                        .map(|id| id.0.clone())
                        .unwrap_or_default(),
                    format!("{:+}", entry.amount),
                    entry.balance_after.to_string(),
                ]
            })
            .collect();
        let header = ["Time", "Entry", "Task", "Amount", "Balance"].map(str::to_owned);
        let mut widths = header.clone().map(|title| title.len());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let cells = |row: &[String; 5]| {
            format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}\n",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4],
            )
        };
        // The opening and closing lines put their label across the first four columns.
        let span = widths[..4].iter().sum::<usize>() + 3 * 2;
        let total =
            |label: &str, amount: i64| format!("{label:<span$}  {amount:>w$}\n", w = widths[4]);
        let mut text = format!(
            "Statement of {} for {} (times in {})\n\n",
            self.day,
            self.popug_id,
            calendar.zone_name()
        );
        text.push_str(&cells(&header));
        text.push_str(&total("Opening balance", self.opening));
        for row in &rows {
            text.push_str(&cells(row));
        }
        text.push_str(&total("Closing balance", self.closing));
        text
    }
}

/// What an entry of `kind` is, in a statement's words.
fn describe(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::TaskCreated => "task created",
        EntryKind::TaskAssigned => "assignment fee",
        EntryKind::TaskCompleted => "reward",
        EntryKind::Payout => "payout",
    }
}

#[cfg(test)]
mod tests {
    use ates_events::ids::TaskId;

    use super::*;

    fn entry(kind: EntryKind, amount: i64, balance_after: i64, task: &str, at: &str) -> LogEntry {
        LogEntry {
            seq: 0,
            event_id: String::new(),
            kind,
            amount,
            balance_after,
            task_id: (!task.is_empty()).then(|| TaskId(task.to_owned())),
            popug_id: PopugId("alice".to_owned()),
            logged_at: at.parse().expect("an instant"),
        }
    }

    #[test]
    fn a_statement_reads_as_a_table_in_the_business_zone() {
        let day = "2026-03-02".parse().expect("a date");
        let statement = Statement::new(
            PopugId("alice".to_owned()),
            day,
            19,
            vec![
                entry(EntryKind::Payout, -19, 0, "", "2026-03-01T23:00:05Z"),
                entry(
                    EntryKind::TaskAssigned,
                    -12,
                    -12,
                    "POP-7",
                    "2026-03-02T08:30:00Z",
                ),
                entry(
                    EntryKind::TaskCompleted,
                    31,
                    19,
                    "POP-7",
                    "2026-03-02T15:45:00Z",
                ),
            ],
        );
        assert_eq!(statement.closing, 19);
        let berlin = Calendar::new("Europe/Berlin").expect("a zone");
        assert_eq!(
            statement.to_text(&berlin),
            "Statement of 2026-03-02 for alice (times in Europe/Berlin)\n\
             \n\
             Time   Entry           Task   Amount  Balance\n\
             Opening balance                            19\n\
             00:00  payout                    -19        0\n\
             09:30  assignment fee  POP-7     -12      -12\n\
             16:45  reward          POP-7     +31       19\n\
             Closing balance                            19\n"
        );
    }
}
