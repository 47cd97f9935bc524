//! Make Payment: day closes, payouts, and the mailbox.

use accounting_domain::{DayClose, Mail, Payout, QueueFilter};
use async_graphql::{Context, Enum, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use task_domain::Permission;

use super::ids::{Kind, global_id, key_of, popug_key};
use super::page::{Counted, Listed};
use super::popug::PopugObject;
use super::scalars::Date;
use super::{ApiError, ApiResult, ContextExt, load_popug, money_scope, page};

/// A closed business day.
pub struct DayCloseObject(DayClose);

#[Object(name = "DayClose")]
impl DayCloseObject {
    async fn day(&self) -> Date {
        Date(self.0.day)
    }

    async fn closed_at(&self) -> DateTime<Utc> {
        self.0.closed_at
    }

    /// Popugs paid out.
    async fn payout_count(&self) -> i64 {
        self.0.payout_count
    }

    async fn paid_total(&self) -> i64 {
        self.0.paid_total
    }

    /// Popugs whose balance was below zero at the day's end; it carries into the next day.
    async fn negative_balance_count(&self) -> i64 {
        self.0.negative_count
    }
}

/// What `closeDay` did.
pub struct DayCloseResult {
    day: Option<DayClose>,
    closed_now: Vec<DayClose>,
}

#[Object]
impl DayCloseResult {
    /// The requested day's close; null when nothing ever happened up to that day.
    async fn day(&self) -> Option<DayCloseObject> {
        self.day.clone().map(DayCloseObject)
    }

    /// The days this call closed, oldest first: the requested one and any earlier day left
    /// open. Empty when all were closed already.
    async fn closed_now(&self) -> Vec<DayCloseObject> {
        self.closed_now
            .iter()
            .cloned()
            .map(DayCloseObject)
            .collect()
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "PayoutStatus", remote = "accounting_domain::PayoutStatus")]
pub enum PayoutStatusValue {
    /// The balance was paid out; the payment system has not confirmed it yet.
    Pending,
    Paid,
    /// The payment system failed every attempt; an admin may retry it.
    Failed,
}

pub struct PayoutObject(pub(super) Payout);

#[Object(name = "Payout")]
impl PayoutObject {
    /// A global id, unique across types (see `Node`). The payout's own key, which it holds,
    /// is the payment system's idempotency key.
    pub(super) async fn id(&self) -> ID {
        global_id(Kind::Payout, &self.0.id)
    }

    async fn popug(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &self.0.popug_id).await
    }

    /// The business day it closed.
    async fn day(&self) -> Date {
        Date(self.0.day)
    }

    async fn amount(&self) -> i64 {
        self.0.amount
    }

    /// What the popug's tasks earned that day (rewards less fees).
    async fn earned(&self) -> i64 {
        self.0.earned
    }

    async fn status(&self) -> PayoutStatusValue {
        self.0.status.into()
    }

    /// Requests made to the payment system so far.
    async fn attempts(&self) -> i64 {
        self.0.attempts
    }

    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn settled_at(&self) -> Option<DateTime<Utc>> {
        self.0.settled_at
    }

    /// `payment-system`, or `ledger` when no payment system is configured.
    async fn settled_by(&self) -> Option<&str> {
        self.0.settled_by.as_deref()
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "MailStatus", remote = "accounting_domain::MailStatus")]
pub enum MailStatusValue {
    Pending,
    Sent,
    Failed,
}

/// A message to a popug: sent over SMTP, or kept here when no SMTP server is configured.
pub struct MailObject(pub(super) Mail);

#[Object(name = "Mail")]
impl MailObject {
    /// A global id, unique across types (see `Node`).
    pub(super) async fn id(&self) -> ID {
        global_id(Kind::Mail, &self.0.id)
    }

    async fn popug(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &self.0.popug_id).await
    }

    async fn payout_id(&self) -> Option<ID> {
        self.0
            .payout_id
            .as_deref()
            .map(|id| global_id(Kind::Payout, id))
    }

    async fn subject(&self) -> &str {
        &self.0.subject
    }

    async fn body(&self) -> &str {
        &self.0.body
    }

    async fn status(&self) -> MailStatusValue {
        self.0.status.into()
    }

    /// The address it went to.
    async fn address(&self) -> Option<&str> {
        self.0.address.as_deref()
    }

    async fn attempts(&self) -> i64 {
        self.0.attempts
    }

    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn sent_at(&self) -> Option<DateTime<Utc>> {
        self.0.sent_at
    }

    /// `smtp`, or `mailbox` when it was kept here.
    async fn sent_via(&self) -> Option<&str> {
        self.0.sent_via.as_deref()
    }
}

#[derive(InputObject, Default)]
pub struct PayoutFilter {
    pub popug_id: Option<ID>,
    pub day: Option<Date>,
    pub status: Option<PayoutStatusValue>,
}

#[derive(Default)]
pub struct PaydayQuery;

#[Object]
impl PaydayQuery {
    /// The business day it is now, in the company's time zone: the calendar day closes and
    /// statements follow, which a front-end should use instead of the browser's.
    async fn today(&self, ctx: &Context<'_>) -> ApiResult<Date> {
        ctx.actor()?;
        Ok(Date(ctx.payday().today()))
    }

    /// Payouts, newest first: the caller's own, or anyone's for admins and accountants.
    #[graphql(complexity = "page::cost(first.or(last), child_complexity)")]
    async fn payouts(
        &self,
        ctx: &Context<'_>,
        filter: Option<PayoutFilter>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Listed<PayoutObject>> {
        let actor = ctx.actor()?;
        let filter = filter.unwrap_or_default();
        let popug_id = money_scope(
            actor,
            filter.popug_id.as_ref().map(popug_key).transpose()?,
            "see another popug's payouts",
        )?;
        let request = page::request(first, after, last, before)?;
        let filter = QueueFilter {
            popug_id,
            day: filter.day.map(|d| d.0),
            status: filter.status.map(Into::into),
        };
        let found = ctx.queues().payouts(&filter, &request).await?;
        Ok(page::connection(
            found,
            Counted::Payouts(filter),
            |p| p.id.clone(),
            PayoutObject,
        ))
    }

    /// Mail to popugs, newest first. Admin only.
    #[graphql(complexity = "page::cost(first.or(last), child_complexity)")]
    async fn mailbox(
        &self,
        ctx: &Context<'_>,
        popug_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Listed<MailObject>> {
        ctx.actor_may(Permission::Administer, "read the mailbox")?;
        let request = page::request(first, after, last, before)?;
        let filter = QueueFilter {
            popug_id: popug_id.as_ref().map(popug_key).transpose()?,
            ..QueueFilter::default()
        };
        let found = ctx.queues().mailbox(&filter, &request).await?;
        Ok(page::connection(
            found,
            Counted::Mail(filter),
            |m| m.id.clone(),
            MailObject,
        ))
    }
}

#[derive(Default)]
pub struct PaydayMutation;

#[Object]
impl PaydayMutation {
    /// Make Payment for a day that has ended (yesterday when omitted), and for any earlier day
    /// left open, oldest first: every positive balance at the day's end is paid out once.
    /// Closing a closed day changes nothing. Admin and accountant.
    async fn close_day(&self, ctx: &Context<'_>, day: Option<Date>) -> ApiResult<DayCloseResult> {
        ctx.actor_may(Permission::KeepBooks, "close a day")?;
        let payday = ctx.payday();
        let day = match day {
            Some(day) => day.0,
            None => payday
                .last_ended_day()
                .ok_or_else(|| ApiError::BadUserInput("there is no day before today".into()))?,
        };
        let closed_now = payday.close_through(day).await?;
        if !closed_now.is_empty() {
            ctx.services().delivery.wake();
            ctx.services().wake();
        }
        let record = payday.day_close(day).await?;
        Ok(DayCloseResult {
            day: record,
            closed_now,
        })
    }

    /// Sends a FAILED payout to the payment system again. Admin only.
    async fn retry_payout(&self, ctx: &Context<'_>, id: ID) -> ApiResult<PayoutObject> {
        ctx.actor_may(Permission::Administer, "retry a payout")?;
        let payout = ctx
            .queues()
            .retry_payout(&key_of(Kind::Payout, &id)?)
            .await?;
        ctx.services().delivery.wake();
        Ok(PayoutObject(payout))
    }
}
