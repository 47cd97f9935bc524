//! Live task events: `taskAssigned` and `taskCompleted`.

use std::sync::Arc;

use accounting_domain::Prices;
use async_graphql::futures_util::Stream;
use async_graphql::{Context, ID, MergedObject, Object, Subscription};
use ates_events::Contract;
use ates_events::outbox::StoredEvent;
use ates_events::task::{TaskAssigned, TaskCompleted};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use task_domain::{Permission, PopugId, TaskId};

use super::ids::{Kind, global_id, popug_key};
use super::popug::PopugObject;
use super::task::{TaskObject, task_prices};
use super::{ApiError, ApiResult, ContextExt, load_popug};
use crate::workers::feed::{self, Ended, Feed};

#[derive(Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Tasks handed to a popug, or taken from them by a shuffle (`previousAssignee` is then
    /// the popug, and `assignee` someone else): the caller's own by default; admins and
    /// managers may name anyone, or omit `assigneeId` to watch everyone. With `after`, first
    /// replays the committed events after that sequence number, then goes live, with no gap
    /// or repeat.
    async fn task_assigned(
        &self,
        ctx: &Context<'_>,
        assignee_id: Option<ID>,
        after: Option<i64>,
    ) -> Result<impl Stream<Item = ApiResult<TaskAssignedEvent>> + use<>, ApiError> {
        let watched = watched(ctx, assignee_id)?;
        let stream = events::<TaskAssigned>(ctx.feed(), after, watched)?;
        Ok(async_graphql::futures_util::StreamExt::map(
            stream,
            |item| {
                item.map(|(seq, occurred_at, event)| {
                    let header = FeedHeader::new(seq, occurred_at, &event.task_id);
                    TaskAssignedEvent(header, Assignment(event))
                })
            },
        ))
    }

    /// Tasks completed by a popug (their assignee): the caller's own by default; admins and
    /// managers may name anyone, or omit `assigneeId` to watch everyone.
    async fn task_completed(
        &self,
        ctx: &Context<'_>,
        assignee_id: Option<ID>,
        after: Option<i64>,
    ) -> Result<impl Stream<Item = ApiResult<TaskCompletedEvent>> + use<>, ApiError> {
        let watched = watched(ctx, assignee_id)?;
        let stream = events::<TaskCompleted>(ctx.feed(), after, watched)?;
        Ok(async_graphql::futures_util::StreamExt::map(
            stream,
            |item| {
                item.map(|(seq, occurred_at, event)| {
                    let header = FeedHeader::new(seq, occurred_at, &event.task_id);
                    TaskCompletedEvent(header, Completion(event))
                })
            },
        ))
    }
}

/// Whose events the caller asks for: `None` is everyone's.
fn watched(ctx: &Context<'_>, assignee_id: Option<ID>) -> ApiResult<Option<PopugId>> {
    let actor = ctx.actor()?;
    let watcher = actor.role.may(Permission::ManageTasks);
    match assignee_id.as_ref().map(popug_key).transpose()? {
        None if watcher => Ok(None),
        None => Ok(Some(actor.id.clone())),
        Some(id) if id == actor.id || watcher => Ok(Some(id)),
        Some(_) => Err(ApiError::forbidden(
            "only admin or manager may watch another popug's tasks",
        )),
    }
}

/// The committed events of one contract about `watched` (everyone's when `None`), from
/// storage after `after`, then live. A subscriber that falls further behind than the feed keeps
/// is told where to resume.
///
/// Live, the feed hands over only the events about `watched`; the ones from storage are
/// filtered here, by the same rule ([`feed::about`]).
fn events<C: Contract + DeserializeOwned + Send + 'static>(
    feed: &Arc<Feed>,
    after: Option<i64>,
    watched: Option<PopugId>,
) -> ApiResult<impl Stream<Item = ApiResult<(i64, DateTime<Utc>, C)>> + use<C>> {
    if after.is_some_and(|a| a < 0) {
        return Err(ApiError::BadUserInput("after must not be negative".into()));
    }
    // Subscribe before reading storage: whatever commits after the read arrives live.
    let (mut live, position) = feed.subscribe(watched.as_ref().map(|w| w.0.as_str()));
    let feed = Arc::clone(feed);
    let decode = move |event: &StoredEvent| -> Option<C> {
        if event.event_type != C::TYPE || event.version != C::VERSION {
            return None;
        }
        if watched
            .as_ref()
            .is_some_and(|w| !feed::about(event).any(|popug| popug == w.0))
        {
            return None;
        }
        C::deserialize(&event.payload).ok()
    };
    Ok(async_stream::stream! {
        let mut last = position;
        if let Some(after) = after {
            // The reads are boxed, so that a subscriber waiting for live events holds only a
            // receiver and a position: thousands of sockets each hold one of these streams.
            last = match Box::pin(feed.position_of(after)).await {
                Ok(position) => position,
                Err(error) => {
                    yield Err(ApiError::from(error));
                    return;
                }
            };
            loop {
                let batch = match Box::pin(feed.replay(last)).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        yield Err(ApiError::from(error));
                        return;
                    }
                };
                if batch.is_empty() {
                    break;
                }
                for event in batch {
                    last = event.position();
                    if let Some(contract) = decode(&event) {
                        yield Ok((event.seq, event.occurred_at, contract));
                    }
                }
            }
        }
        loop {
            match live.recv().await {
                Ok(event) => {
                    if event.position() <= last {
                        continue;
                    }
                    last = event.position();
                    if let Some(contract) = decode(&event) {
                        yield Ok((event.seq, event.occurred_at, contract));
                    }
                }
                Err(Ended::Lagged) => {
                    yield Err(ApiError::Conflict(format!(
                        "this subscriber fell too far behind; subscribe again with after: {}", last.seq
                    )));
                    return;
                }
                Err(Ended::Closed) => return,
            }
        }
    })
}

/// What every event of the feed carries: its place in the outbox, its time and its task.
pub struct FeedHeader {
    seq: i64,
    occurred_at: DateTime<Utc>,
    task_id: TaskId,
}

#[Object]
impl FeedHeader {
    /// The event's position in the outbox: pass it as `after` to resume from here.
    async fn seq(&self) -> i64 {
        self.seq
    }

    async fn occurred_at(&self) -> DateTime<Utc> {
        self.occurred_at
    }

    async fn task(&self, ctx: &Context<'_>) -> ApiResult<TaskObject> {
        ctx.task_loader()
            .load_one(self.task_id.clone())
            .await?
            .map(TaskObject)
            .ok_or_else(|| ApiError::internal(format!("event of unknown task {}", self.task_id)))
    }
}

impl FeedHeader {
    fn new(seq: i64, occurred_at: DateTime<Utc>, task_id: &str) -> Self {
        Self {
            seq,
            occurred_at,
            task_id: TaskId(task_id.to_owned()),
        }
    }
}

#[derive(MergedObject)]
pub struct TaskAssignedEvent(FeedHeader, Assignment);

pub struct Assignment(TaskAssigned);

#[Object]
impl Assignment {
    async fn assignee(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &PopugId(self.0.assignee_id.clone())).await
    }

    /// Who held the task before a shuffle; null at creation.
    async fn previous_assignee(&self, ctx: &Context<'_>) -> ApiResult<Option<PopugObject>> {
        match &self.0.previous_assignee_id {
            Some(id) => Ok(Some(load_popug(ctx, &PopugId(id.clone())).await?)),
            None => Ok(None),
        }
    }

    /// The fee this assignment charged the assignee: shown to the assignee and to
    /// bookkeepers, else null.
    async fn fee(&self, ctx: &Context<'_>) -> ApiResult<Option<i64>> {
        let assignee = PopugId(self.0.assignee_id.clone());
        Ok(prices_of(ctx, &assignee, &self.0.task_id)
            .await?
            .map(|p| p.assign_fee))
    }
}

#[derive(MergedObject)]
pub struct TaskCompletedEvent(FeedHeader, Completion);

pub struct Completion(TaskCompleted);

#[Object]
impl Completion {
    /// The popug who completed the task: its assignee.
    async fn assignee(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &PopugId(self.0.completer_id.clone())).await
    }

    /// The reward this completion paid: shown to the completer and to bookkeepers, else null.
    async fn reward(&self, ctx: &Context<'_>) -> ApiResult<Option<i64>> {
        let completer = PopugId(self.0.completer_id.clone());
        Ok(prices_of(ctx, &completer, &self.0.task_id)
            .await?
            .map(|p| p.reward))
    }

    /// The completed task's id.
    async fn task_id(&self) -> ID {
        global_id(Kind::Task, &self.0.task_id)
    }
}

/// The prices of `task`, when the caller may see `owner`'s money.
async fn prices_of(ctx: &Context<'_>, owner: &PopugId, task: &str) -> ApiResult<Option<Prices>> {
    if !ctx.actor()?.may_see_money_of(owner) {
        return Ok(None);
    }
    task_prices(ctx, &TaskId(task.to_owned())).await
}
