//! Tasks: queries, and the New Task, Complete Task and Shuffle Tasks processes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use accounting_domain::Prices;
use async_graphql::dataloader::Loader;
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use task_domain::{NewTask, Task, TaskError, TaskFilter, TaskId, Tracker};

use super::ids::{Kind, global_id, popug_key, task_key};
use super::page::{Counted, Listed};
use super::popug::PopugObject;
use super::{ApiError, ApiResult, ContextExt, load_popug, page};

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "TaskStatus", remote = "task_domain::TaskStatus")]
pub enum TaskStatusValue {
    Open,
    Done,
}

pub struct TaskObject(pub Task);

impl TaskObject {
    /// The task's prices, when the caller may see them: its holder's money, so the holder's
    /// and the bookkeepers'. Nobody else may add up what another popug paid and earned.
    async fn prices(&self, ctx: &Context<'_>) -> ApiResult<Option<Prices>> {
        if !ctx.actor()?.may_see_money_of(&self.0.assignee_id) {
            return Ok(None);
        }
        task_prices(ctx, &self.0.id).await
    }
}

/// How long a reader waits for accounting to price a task it found unpriced.
const PRICE_WAIT: Duration = Duration::from_secs(1);

/// A task's prices. A task seen before accounting handled its creation (a subscriber can be
/// that quick, or a reader during a large shuffle) waits briefly for accounting to catch up;
/// then the field is an `ACCOUNTING_PENDING` error rather than a null that looks like an
/// answer.
pub(crate) async fn task_prices(ctx: &Context<'_>, id: &TaskId) -> ApiResult<Option<Prices>> {
    let loaded = ctx.price_loader().load_one(id.clone()).await?;
    if loaded.is_some() {
        return Ok(loaded);
    }
    ctx.services().accounting.catch_up_to_now(PRICE_WAIT).await;
    match ctx
        .ledger()
        .prices(std::slice::from_ref(id))
        .await?
        .remove(id)
    {
        Some(prices) => Ok(Some(prices)),
        None => Err(ApiError::AccountingPending),
    }
}

#[Object(name = "Task")]
impl TaskObject {
    /// A global id, unique across types (see `Node`).
    pub(super) async fn id(&self) -> ID {
        global_id(Kind::Task, &self.0.id.0)
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    /// The tracker key, e.g. `UBERPOP-42`.
    async fn jira_id(&self) -> Option<&str> {
        self.0.jira_id.as_deref()
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    async fn status(&self) -> TaskStatusValue {
        self.0.status.into()
    }

    async fn assignee(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &self.0.assignee_id).await
    }

    async fn created_by(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &self.0.created_by).await
    }

    /// Debited from the assignee at every assignment: 10..=20. Shown to the task's assignee and
    /// to bookkeepers (admins, accountants); null for anyone else. Accounting prices a task
    /// before the creating mutation answers; when it cannot (it is stuck), this is null with an
    /// `ACCOUNTING_PENDING` error.
    async fn assign_fee(&self, ctx: &Context<'_>) -> ApiResult<Option<i64>> {
        Ok(self.prices(ctx).await?.map(|p| p.assign_fee))
    }

    /// Credited to the completer: 20..=40. Shown as `assignFee` is.
    async fn reward(&self, ctx: &Context<'_>) -> ApiResult<Option<i64>> {
        Ok(self.prices(ctx).await?.map(|p| p.reward))
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.0.completed_at
    }

    /// The task's last moves (its assignments, then its completion), oldest first: read from
    /// the ledger, so a move shows once accounting has it. Fees and rewards show to the
    /// task's assignee, to the popug of the move and to bookkeepers; others see null.
    #[graphql(complexity = "1 + super::history::moves(last) * child_complexity")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many of the last moves: 10 when omitted, at most 50.")] last: Option<
            i32,
        >,
    ) -> ApiResult<Vec<super::history::TaskHistoryEntry>> {
        let max = super::history::MAX_MOVES;
        if last.is_some_and(|n| n < 1 || n as usize > max) {
            return Err(ApiError::BadUserInput(format!(
                "history(last:) is 1 to {max}"
            )));
        }
        super::history::of(ctx, &self.0, super::history::moves(last)).await
    }
}

/// Batches the tasks a response needs (the audit log's) into one query.
pub struct TaskLoader(pub Tracker);

impl Loader<TaskId> for TaskLoader {
    type Value = Task;
    type Error = Arc<TaskError>;

    async fn load(&self, keys: &[TaskId]) -> Result<HashMap<TaskId, Task>, Self::Error> {
        let found = self.0.by_ids(keys).await.map_err(Arc::new)?;
        Ok(found.into_iter().map(|t| (t.id.clone(), t)).collect())
    }
}

#[derive(InputObject)]
pub struct CreateTaskInput {
    /// What to do. Must not contain `[` or `]`: the tracker key goes in `jiraId`.
    pub title: String,
    /// The tracker key, e.g. `UBERPOP-42`.
    pub jira_id: Option<String>,
    #[graphql(default)]
    pub description: String,
}

#[derive(SimpleObject)]
pub struct ShuffleResult {
    /// Open tasks drawn anew; each draw is an assignment, even onto the same popug.
    pub reassigned: i32,
    /// Draws that landed on another popug than before.
    pub moved: i32,
}

#[derive(Default)]
pub struct TaskQuery;

// `tasks` takes every filter and both directions of paging as arguments of its own, as the
// schema has them.
#[allow(clippy::too_many_arguments)]
#[Object]
impl TaskQuery {
    // Read through the request's loader, so that a document asking for many tasks by id
    // reads them in one query.
    async fn task(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<TaskObject>> {
        ctx.actor()?;
        Ok(ctx
            .task_loader()
            .load_one(task_key(&id)?)
            .await?
            .map(TaskObject))
    }

    /// Tasks, newest first.
    #[graphql(complexity = "page::cost(first.or(last), child_complexity)")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        status: Option<TaskStatusValue>,
        assignee_id: Option<ID>,
        #[graphql(
            desc = "Only tasks whose title or tracker key contains this text, in any case \
                          (at most 100 characters)."
        )]
        search: Option<String>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Listed<TaskObject>> {
        ctx.actor()?;
        let filter = TaskFilter {
            status: status.map(Into::into),
            assignee_id: assignee_id.as_ref().map(popug_key).transpose()?,
            search,
        };
        list(ctx, filter, first, after, last, before).await
    }

    /// The caller's own tasks, newest first.
    #[graphql(complexity = "page::cost(first.or(last), child_complexity)")]
    async fn my_tasks(
        &self,
        ctx: &Context<'_>,
        status: Option<TaskStatusValue>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Listed<TaskObject>> {
        let actor = ctx.actor()?;
        let filter = TaskFilter {
            status: status.map(Into::into),
            assignee_id: Some(actor.id.clone()),
            search: None,
        };
        list(ctx, filter, first, after, last, before).await
    }
}

async fn list(
    ctx: &Context<'_>,
    filter: TaskFilter,
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> ApiResult<Listed<TaskObject>> {
    let request = page::request(first, after, last, before)?;
    let found = ctx.tracker().list(&filter, &request).await?;
    Ok(page::connection(
        found,
        Counted::Tasks(filter),
        |t| t.id.0.clone(),
        TaskObject,
    ))
}

#[derive(Default)]
pub struct TaskMutation;

#[Object]
impl TaskMutation {
    /// Creates a task and assigns it at once to a random popug who is neither admin nor manager.
    async fn create_task(
        &self,
        ctx: &Context<'_>,
        input: CreateTaskInput,
    ) -> ApiResult<TaskObject> {
        let actor = ctx.actor()?.actor();
        let new = NewTask {
            title: input.title,
            jira_id: input.jira_id,
            description: input.description,
        };
        let created = match ctx.data_opt::<super::Keyed>() {
            // Sent with an idempotency key: the task's id is the key's, so a retry of a run
            // that died answers with the task that run made instead of making another.
            Some(keyed) => {
                let id = task_domain::keyed_task_id(&actor.id, &keyed.key, keyed.claimed_at);
                ctx.tracker().create_keyed(&actor, new, id).await?
            }
            None => ctx.tracker().create(&actor, new).await?,
        };
        ctx.services().committed(&created.events).await;
        Ok(TaskObject(created.value))
    }

    /// Completes a task of the caller's.
    async fn complete_task(&self, ctx: &Context<'_>, id: ID) -> ApiResult<TaskObject> {
        let actor = ctx.actor()?.actor();
        let completed = ctx.tracker().complete(&actor, &task_key(&id)?).await?;
        ctx.services().committed(&completed.events).await;
        Ok(TaskObject(completed.value))
    }

    /// Draws every open task anew. For admins and managers. Answers once the draws are
    /// committed; accounting charges the fees right after, in the order of the draws.
    async fn shuffle_tasks(&self, ctx: &Context<'_>) -> ApiResult<ShuffleResult> {
        // The tracker says who may shuffle.
        let actor = ctx.actor()?.actor();
        let shuffled = ctx.tracker().shuffle(&actor).await?;
        ctx.services().wake();
        let outcome = shuffled.value;
        Ok(ShuffleResult {
            reassigned: i32::try_from(outcome.reassigned).unwrap_or(i32::MAX),
            moved: i32::try_from(outcome.moved).unwrap_or(i32::MAX),
        })
    }
}
