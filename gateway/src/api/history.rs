//! `Task.history`: who held a task and what each move cost, read from the ledger. The tasks of
//! a page load their histories together, in one query.

use std::collections::HashMap;
use std::sync::Arc;

use accounting_domain::{AccountingError, EntryKind, Ledger, LogEntry};
use async_graphql::dataloader::Loader;
use async_graphql::{Context, Enum, Object};
use chrono::{DateTime, Utc};
use task_domain::{PopugId, Task, TaskId};

use super::popug::PopugObject;
use super::{ApiResult, ContextExt, load_popug};

/// Moves of a task shown when the client does not say how many.
pub const DEFAULT_MOVES: usize = 10;
/// Moves of a task shown at most.
pub const MAX_MOVES: usize = 50;

/// The moves asked for, within bounds.
pub fn moves(last: Option<i32>) -> usize {
    last.map_or(DEFAULT_MOVES, |n| usize::try_from(n).unwrap_or(0))
        .clamp(1, MAX_MOVES)
}

/// A task's last moves: the task, and how many.
pub type HistoryKey = (TaskId, usize);

/// Batches the histories a page of tasks needs into one query (one per count asked for).
pub struct HistoryLoader(pub Ledger);

impl Loader<HistoryKey> for HistoryLoader {
    type Value = Vec<LogEntry>;
    type Error = Arc<AccountingError>;

    async fn load(
        &self,
        keys: &[HistoryKey],
    ) -> Result<HashMap<HistoryKey, Vec<LogEntry>>, Self::Error> {
        let mut by_count: HashMap<usize, Vec<TaskId>> = HashMap::new();
        for (task, moves) in keys {
            by_count.entry(*moves).or_default().push(task.clone());
        }
        let mut loaded = HashMap::new();
        for (moves, tasks) in by_count {
            let histories = self.0.histories(&tasks, moves).await.map_err(Arc::new)?;
            loaded.extend(
                histories
                    .into_iter()
                    .map(|(task, entries)| ((task, moves), entries)),
            );
        }
        Ok(loaded)
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum TaskMove {
    /// Handed to a popug, who paid the fee.
    Assigned,
    /// Completed by its assignee, who got the reward.
    Completed,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentCause {
    /// The draw made when the task was created.
    Creation,
    /// A draw of a shuffle.
    Shuffle,
}

/// One move of a task.
pub struct TaskHistoryEntry {
    entry: LogEntry,
    previous_assignee: Option<PopugId>,
    cause: Option<AssignmentCause>,
    /// Whether the viewer may see this popug's money.
    shows_money: bool,
}

#[Object]
impl TaskHistoryEntry {
    #[graphql(name = "move")]
    async fn kind(&self) -> TaskMove {
        match self.entry.kind {
            EntryKind::TaskCompleted => TaskMove::Completed,
            _ => TaskMove::Assigned,
        }
    }

    /// The assignee: who was handed the task, or who completed it.
    async fn assignee(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &self.entry.popug_id).await
    }

    /// Who held the task before this assignment; null at creation and for a completion.
    async fn previous_assignee(&self, ctx: &Context<'_>) -> ApiResult<Option<PopugObject>> {
        match &self.previous_assignee {
            Some(id) => Ok(Some(load_popug(ctx, id).await?)),
            None => Ok(None),
        }
    }

    /// Why the task was assigned; null for a completion.
    async fn cause(&self) -> Option<AssignmentCause> {
        self.cause
    }

    /// The fee this assignment charged: shown to this move's popug, the task's assignee and
    /// bookkeepers, else null.
    async fn fee(&self) -> Option<i64> {
        (self.shows_money && self.entry.kind == EntryKind::TaskAssigned)
            .then_some(-self.entry.amount)
    }

    /// The reward of the completion: shown as `fee` is.
    async fn reward(&self) -> Option<i64> {
        (self.shows_money && self.entry.kind == EntryKind::TaskCompleted)
            .then_some(self.entry.amount)
    }

    /// When the ledger logged the move.
    async fn logged_at(&self) -> DateTime<Utc> {
        self.entry.logged_at
    }
}

/// The last `count` moves of `task`, oldest first, as `ctx`'s popug may see them: the task's
/// holder sees the prices the task shows them anyway, a popug the money of its own moves.
pub async fn of(ctx: &Context<'_>, task: &Task, count: usize) -> ApiResult<Vec<TaskHistoryEntry>> {
    let viewer = ctx.actor()?;
    let holds = viewer.may_see_money_of(&task.assignee_id);
    let mut entries = ctx
        .history_loader()
        .load_one((task.id.clone(), count))
        .await?
        .unwrap_or_default();
    // The move before the ones shown, when there is one: it says who held the task then.
    let mut holder: Option<PopugId> = None;
    if entries.len() > count {
        let before = entries.remove(0);
        if before.kind == EntryKind::TaskAssigned {
            holder = Some(before.popug_id);
        }
    }
    let mut moves = Vec::with_capacity(entries.len());
    for entry in entries {
        let (previous_assignee, cause) = match entry.kind {
            EntryKind::TaskAssigned => {
                let cause = if holder.is_none() {
                    AssignmentCause::Creation
                } else {
                    AssignmentCause::Shuffle
                };
                let previous = holder.replace(entry.popug_id.clone());
                (previous, Some(cause))
            }
            _ => (None, None),
        };
        moves.push(TaskHistoryEntry {
            shows_money: holds || viewer.may_see_money_of(&entry.popug_id),
            entry,
            previous_assignee,
            cause,
        });
    }
    Ok(moves)
}
