//! The common audit log: what happened, the money it moved, and the balance after it.

use ates_db::{Value, from_micros};
use ates_events::ids::{PopugId, TaskId};
use chrono::{DateTime, Utc};
use sqlx::FromRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    TaskCreated,
    TaskAssigned,
    TaskCompleted,
    Payout,
}

impl EntryKind {
    pub const ALL: [Self; 4] = [
        Self::TaskCreated,
        Self::TaskAssigned,
        Self::TaskCompleted,
        Self::Payout,
    ];

    /// The kind named `name` (`TASK_ASSIGNED`), as [`EntryKind::as_str`] writes it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskCreated => "TASK_CREATED",
            Self::TaskAssigned => "TASK_ASSIGNED",
            Self::TaskCompleted => "TASK_COMPLETED",
            Self::Payout => "PAYOUT",
        }
    }

    fn from_stored(stored: &str) -> Self {
        match stored {
            "TASK_CREATED" => Self::TaskCreated,
            "TASK_ASSIGNED" => Self::TaskAssigned,
            "TASK_COMPLETED" => Self::TaskCompleted,
            _ => Self::Payout,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: i64,
    /// The event the entry records; one entry per event.
    pub event_id: String,
    pub kind: EntryKind,
    /// Signed: a fee or a payout is negative, a reward positive, a creation zero.
    pub amount: i64,
    pub balance_after: i64,
    pub task_id: Option<TaskId>,
    pub popug_id: PopugId,
    /// When the log received the event.
    pub logged_at: DateTime<Utc>,
}

pub(crate) const COLUMNS: &str =
    "seq, event_id, kind, amount, balance_after, task_id, popug_id, logged_at";

#[derive(FromRow)]
pub(crate) struct LogRow {
    seq: i64,
    event_id: String,
    kind: String,
    amount: i64,
    balance_after: i64,
    task_id: Option<String>,
    popug_id: String,
    logged_at: i64,
}

impl LogRow {
    pub(crate) fn seq(&self) -> i64 {
        self.seq
    }
}

impl From<LogRow> for LogEntry {
    fn from(row: LogRow) -> Self {
        Self {
            seq: row.seq,
            event_id: row.event_id,
            kind: EntryKind::from_stored(&row.kind),
            amount: row.amount,
            balance_after: row.balance_after,
            task_id: row.task_id.map(TaskId),
            popug_id: PopugId(row.popug_id),
            logged_at: from_micros(row.logged_at),
        }
    }
}

/// Which entries a reader asks for; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub popug_id: Option<PopugId>,
    pub task_id: Option<TaskId>,
    /// Empty: every kind.
    pub kinds: Vec<EntryKind>,
    /// `logged_at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `logged_at < to`.
    pub to: Option<DateTime<Utc>>,
}

/// Appends entries, seven values each in the order of the log's columns: event id, kind,
/// amount, balance after, task id, popug id, logged at. The one way anything is written to it.
pub(crate) async fn append(
    conn: &mut sqlx::AnyConnection,
    entries: Vec<Value>,
) -> Result<u64, sqlx::Error> {
    ates_db::insert_rows(
        conn,
        "INSERT INTO audit_log (event_id, kind, amount, balance_after, task_id, popug_id, logged_at) VALUES",
        "",
        7,
        entries,
    )
    .await
}
