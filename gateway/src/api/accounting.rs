//! Accounts and the common audit log.

use std::collections::HashMap;
use std::sync::Arc;

use accounting_domain::{AccountingError, Ledger, LogEntry, LogFilter, Prices};
use async_graphql::dataloader::Loader;
use async_graphql::{Context, Enum, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use task_domain::{PopugId, TaskId};

use super::ids::{Kind, global_id, popug_key, task_key};
use super::page::{Counted, Listed};
use super::popug::PopugObject;
use super::scalars::Date;
use super::task::TaskObject;
use super::{ApiError, ApiResult, ContextExt, load_popug, money_of, money_scope, page};

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "AuditLogKind", remote = "accounting_domain::EntryKind")]
pub enum KindValue {
    TaskCreated,
    TaskAssigned,
    TaskCompleted,
    Payout,
}

/// One business event in the common log, with the money it moved.
pub struct AuditLogEntry(pub(super) LogEntry);

#[Object]
impl AuditLogEntry {
    /// A global id, unique across types (see `Node`).
    pub(super) async fn id(&self) -> ID {
        global_id(Kind::AuditLogEntry, &self.0.seq.to_string())
    }

    /// Position in the log; later entries have higher numbers.
    async fn seq(&self) -> i64 {
        self.0.seq
    }

    /// When the log received the event.
    async fn logged_at(&self) -> DateTime<Utc> {
        self.0.logged_at
    }

    async fn kind(&self) -> KindValue {
        self.0.kind.into()
    }

    /// Signed: fees and payouts are negative, rewards positive, creations zero.
    async fn amount(&self) -> i64 {
        self.0.amount
    }

    /// The popug's balance right after this entry.
    async fn balance_after(&self) -> i64 {
        self.0.balance_after
    }

    async fn task_id(&self) -> Option<ID> {
        self.0
            .task_id
            .as_ref()
            .map(|id| global_id(Kind::Task, &id.0))
    }

    async fn task(&self, ctx: &Context<'_>) -> ApiResult<Option<TaskObject>> {
        let Some(id) = &self.0.task_id else {
            return Ok(None);
        };
        Ok(ctx
            .task_loader()
            .load_one(id.clone())
            .await?
            .map(TaskObject))
    }

    async fn popug_id(&self) -> ID {
        global_id(Kind::Popug, &self.0.popug_id.0)
    }

    async fn popug(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &self.0.popug_id).await
    }
}

/// A popug's account.
pub struct AccountObject {
    popug_id: PopugId,
    balance: i64,
}

#[Object(name = "Account")]
impl AccountObject {
    async fn popug(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &self.popug_id).await
    }

    /// May be negative; a negative balance carries over to the next day.
    async fn balance(&self) -> i64 {
        self.balance
    }

    /// The popug's audit log for one business day (today when omitted), oldest first.
    #[graphql(complexity = "page::cost(first.or(last), child_complexity)")]
    async fn log(
        &self,
        ctx: &Context<'_>,
        day: Option<Date>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Listed<AuditLogEntry>> {
        let (from, to) = ctx.payday().bounds(day.map(|d| d.0));
        let filter = LogFilter {
            popug_id: Some(self.popug_id.clone()),
            from: Some(from),
            to: Some(to),
            ..LogFilter::default()
        };
        log_page(ctx.ledger(), filter, first, after, last, before, true).await
    }
}

#[derive(InputObject, Default)]
pub struct AuditLogFilter {
    pub popug_id: Option<ID>,
    pub task_id: Option<ID>,
    /// Any of these kinds; every kind when omitted or empty.
    pub kinds: Option<Vec<KindValue>>,
    /// Entries logged at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Entries logged before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Oldest first instead of newest first.
    #[graphql(default)]
    pub oldest_first: bool,
}

#[derive(Default)]
pub struct AccountingQuery;

#[Object]
impl AccountingQuery {
    /// A popug's account: the caller's own when `popugId` is omitted; anyone's for admins and
    /// accountants.
    async fn account(&self, ctx: &Context<'_>, popug_id: Option<ID>) -> ApiResult<AccountObject> {
        let actor = ctx.actor()?;
        let popug_id = money_of(
            actor,
            popug_id.as_ref().map(popug_key).transpose()?,
            "see another popug's account",
        )?;
        if popug_id != actor.id && ctx.popugs().get(&popug_id).await?.is_none() {
            return Err(ApiError::NotFound(format!(
                "popug {popug_id} does not exist"
            )));
        }
        let balance = ctx.ledger().balance(&popug_id).await?;
        Ok(AccountObject { popug_id, balance })
    }

    /// The common audit log, newest first by default: the caller's own entries, or everyone's
    /// for admins and accountants.
    #[graphql(complexity = "page::cost(first.or(last), child_complexity)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditLogFilter>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Listed<AuditLogEntry>> {
        let actor = ctx.actor()?;
        let filter = filter.unwrap_or_default();
        let popug_id = money_scope(
            actor,
            filter.popug_id.as_ref().map(popug_key).transpose()?,
            "read another popug's log",
        )?;
        let domain = LogFilter {
            popug_id,
            task_id: filter.task_id.as_ref().map(task_key).transpose()?,
            kinds: filter
                .kinds
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            from: filter.from,
            to: filter.to,
        };
        log_page(
            ctx.ledger(),
            domain,
            first,
            after,
            last,
            before,
            filter.oldest_first,
        )
        .await
    }
}

async fn log_page(
    ledger: &Ledger,
    filter: LogFilter,
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
    oldest_first: bool,
) -> ApiResult<Listed<AuditLogEntry>> {
    let request = page::request(first, after, last, before)?;
    let found = ledger.log(&filter, &request, oldest_first).await?;
    Ok(page::connection(
        found,
        Counted::Log(filter),
        |entry| entry.seq.to_string(),
        AuditLogEntry,
    ))
}

/// Batches the prices a page of tasks needs into one query.
pub struct PriceLoader(pub Ledger);

impl Loader<TaskId> for PriceLoader {
    type Value = Prices;
    type Error = Arc<AccountingError>;

    async fn load(&self, keys: &[TaskId]) -> Result<HashMap<TaskId, Prices>, Self::Error> {
        self.0.prices(keys).await.map_err(Arc::new)
    }
}
