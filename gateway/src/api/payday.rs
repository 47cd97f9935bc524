//! Make Payment and the company's figures: day closes, payouts, the mailbox, daily summaries
//! and the admin's analytics.

use accounting_domain::{
    Completion, DayClose, DayFigures, Mail, MailStatus, Payout, PayoutStatus, QueueFilter,
};
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, InputObject, Object};
use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use task_domain::{PopugId, Role, TaskId};

use super::popug::PopugObject;
use super::scalars::Date;
use super::task::TaskObject;
use super::{ApiError, ApiResult, ContextExt, load_popug, page};

const BOOKKEEPERS: [Role; 2] = [Role::Admin, Role::Accountant];
/// The longest range a figures query covers, in days.
const MAX_RANGE_DAYS: u64 = 366;

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
#[graphql(name = "PayoutStatus")]
pub enum PayoutStatusValue {
    /// The balance was paid out; the payment system has not confirmed it yet.
    Pending,
    Paid,
    /// The payment system failed every attempt; an admin may retry it.
    Failed,
}

impl From<PayoutStatus> for PayoutStatusValue {
    fn from(status: PayoutStatus) -> Self {
        match status {
            PayoutStatus::Pending => Self::Pending,
            PayoutStatus::Paid => Self::Paid,
            PayoutStatus::Failed => Self::Failed,
        }
    }
}

impl PayoutStatusValue {
    fn stored(self) -> &'static str {
        match self {
            Self::Pending => PayoutStatus::Pending.as_str(),
            Self::Paid => PayoutStatus::Paid.as_str(),
            Self::Failed => PayoutStatus::Failed.as_str(),
        }
    }
}

pub struct PayoutObject(Payout);

#[Object(name = "Payout")]
impl PayoutObject {
    /// Also the payment system's idempotency key.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn popug(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &PopugId(self.0.popug_id.clone())).await
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
#[graphql(name = "MailStatus")]
pub enum MailStatusValue {
    Pending,
    Sent,
    Failed,
}

impl From<MailStatus> for MailStatusValue {
    fn from(status: MailStatus) -> Self {
        match status {
            MailStatus::Pending => Self::Pending,
            MailStatus::Sent => Self::Sent,
            MailStatus::Failed => Self::Failed,
        }
    }
}

/// A message to a popug: sent over SMTP, or kept here when no SMTP server is configured.
pub struct MailObject(Mail);

#[Object(name = "Mail")]
impl MailObject {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn popug(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &PopugId(self.0.popug_id.clone())).await
    }

    async fn payout_id(&self) -> Option<ID> {
        self.0.payout_id.clone().map(ID)
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

/// One business day in numbers.
pub struct DaySummary(DayFigures);

#[Object]
impl DaySummary {
    async fn day(&self) -> Date {
        Date(self.0.day)
    }

    /// Assignment fees taken from popugs.
    async fn fees_debited(&self) -> i64 {
        self.0.fees_debited
    }

    /// Rewards credited for completed tasks.
    async fn rewards_credited(&self) -> i64 {
        self.0.rewards_credited
    }

    /// Fees debited less rewards credited.
    async fn management_earnings(&self) -> i64 {
        self.0.management_earnings()
    }

    async fn payout_count(&self) -> i64 {
        self.0.payout_count
    }

    async fn paid_total(&self) -> i64 {
        self.0.paid_total
    }

    /// Popugs below zero at the day's end (now, for a day not over).
    async fn negative_balance_count(&self) -> i64 {
        self.0.negative_count
    }

    /// Whether the day has been closed and paid out.
    async fn closed(&self) -> bool {
        self.0.closed
    }
}

/// A completed task and the reward it paid.
pub struct ExpensiveTask(Completion);

#[Object]
impl ExpensiveTask {
    async fn task(&self, ctx: &Context<'_>) -> ApiResult<Option<TaskObject>> {
        Ok(ctx
            .task_loader()
            .load_one(TaskId(self.0.task_id.clone()))
            .await?
            .map(TaskObject))
    }

    async fn task_id(&self) -> ID {
        ID(self.0.task_id.clone())
    }

    async fn reward(&self) -> i64 {
        self.0.reward
    }

    async fn completed_at(&self) -> DateTime<Utc> {
        self.0.completed_at
    }

    async fn completed_by(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &PopugId(self.0.popug_id.clone())).await
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    /// Monday to Sunday.
    Week,
    Month,
}

/// The most expensive task of one period.
pub struct PeriodTop {
    from: NaiveDate,
    to: NaiveDate,
    top: Option<Completion>,
}

#[Object]
impl PeriodTop {
    /// First day of the period (within the asked range).
    async fn from(&self) -> Date {
        Date(self.from)
    }

    /// Last day of the period (within the asked range).
    async fn to(&self) -> Date {
        Date(self.to)
    }

    /// Null when no task was completed in the period.
    async fn task(&self) -> Option<ExpensiveTask> {
        self.top.clone().map(ExpensiveTask)
    }
}

/// The admin's figures.
pub struct Analytics;

#[Object]
impl Analytics {
    /// Fees debited less rewards credited on a day (today when omitted).
    async fn management_earnings(&self, ctx: &Context<'_>, day: Option<Date>) -> ApiResult<i64> {
        let day = day.map_or_else(|| ctx.payday().today(), |d| d.0);
        let (fees, rewards) = ctx.figures().money_moved(day).await?;
        Ok(fees - rewards)
    }

    /// Popugs below zero at the end of a day; now, for today (the default).
    async fn negative_balance_count(&self, ctx: &Context<'_>, day: Option<Date>) -> ApiResult<i64> {
        let day = day.map_or_else(|| ctx.payday().today(), |d| d.0);
        Ok(ctx.figures().negative_count(day).await?)
    }

    /// The highest reward among tasks completed in `[from, to]`; of equals, the earliest
    /// completion. Null when none was completed.
    async fn most_expensive_task(
        &self,
        ctx: &Context<'_>,
        from: Date,
        to: Date,
    ) -> ApiResult<Option<ExpensiveTask>> {
        check_range(from.0, to.0)?;
        Ok(ctx
            .figures()
            .most_expensive(from.0, to.0)
            .await?
            .map(ExpensiveTask))
    }

    /// The most expensive task of each day, week or month in `[from, to]`, newest period
    /// first; periods are cut at the range's ends.
    async fn most_expensive_tasks(
        &self,
        ctx: &Context<'_>,
        period: Period,
        from: Date,
        to: Date,
    ) -> ApiResult<Vec<PeriodTop>> {
        check_range(from.0, to.0)?;
        let mut tops = Vec::new();
        for (start, end) in periods(period, from.0, to.0) {
            let top = ctx.figures().most_expensive(start, end).await?;
            tops.push(PeriodTop {
                from: start,
                to: end,
                top,
            });
        }
        tops.reverse();
        Ok(tops)
    }
}

/// `[from, to]` cut into periods, oldest first.
fn periods(period: Period, from: NaiveDate, to: NaiveDate) -> Vec<(NaiveDate, NaiveDate)> {
    let mut periods = Vec::new();
    let mut start = from;
    while start <= to {
        let natural_end = match period {
            Period::Day => start,
            Period::Week => start
                .checked_add_days(Days::new(
                    6 - u64::from(start.weekday().num_days_from_monday()),
                ))
                .unwrap_or(to),
            Period::Month => start
                .with_day(1)
                .and_then(|first| first.checked_add_months(Months::new(1)))
                .and_then(|next| next.pred_opt())
                .unwrap_or(to),
        };
        let end = natural_end.min(to);
        periods.push((start, end));
        match end.succ_opt() {
            Some(next) => start = next,
            None => break,
        }
    }
    periods
}

fn check_range(from: NaiveDate, to: NaiveDate) -> ApiResult<()> {
    if from > to {
        return Err(ApiError::BadUserInput("from must not be after to".into()));
    }
    let days = to.signed_duration_since(from).num_days() + 1;
    if days as u64 > MAX_RANGE_DAYS {
        return Err(ApiError::BadUserInput(format!(
            "a range covers at most {MAX_RANGE_DAYS} days"
        )));
    }
    Ok(())
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
    /// The company's figures per business day in `[from, to]` (at most 366 days), oldest
    /// first. Admin and accountant.
    async fn daily_summaries(
        &self,
        ctx: &Context<'_>,
        from: Date,
        to: Date,
    ) -> ApiResult<Vec<DaySummary>> {
        ctx.actor_in(&BOOKKEEPERS, "read the daily figures")?;
        check_range(from.0, to.0)?;
        let figures = ctx.figures().days(from.0, to.0).await?;
        Ok(figures.into_iter().map(DaySummary).collect())
    }

    /// Analytics, for admins.
    async fn analytics(&self, ctx: &Context<'_>) -> ApiResult<Analytics> {
        ctx.actor_in(&[Role::Admin], "read analytics")?;
        Ok(Analytics)
    }

    /// Payouts, newest first: the caller's own, or anyone's for admins and accountants.
    #[graphql(complexity = "page::cost(first, child_complexity)")]
    async fn payouts(
        &self,
        ctx: &Context<'_>,
        filter: Option<PayoutFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, PayoutObject>> {
        let actor = ctx.actor()?;
        let filter = filter.unwrap_or_default();
        let popug_id = match filter.popug_id.map(|id| id.0) {
            requested if BOOKKEEPERS.contains(&actor.role) => requested,
            None => Some(actor.id.0.clone()),
            Some(id) if id == actor.id.0 => Some(id),
            Some(_) => {
                return Err(ApiError::forbidden(
                    "only admin or accountant may see another popug's payouts",
                ));
            }
        };
        let request = page::request(first, after)?;
        let (payouts, more) = ctx
            .queues()
            .payouts(
                &QueueFilter {
                    popug_id,
                    day: filter.day.map(|d| d.0),
                    status: filter.status.map(PayoutStatusValue::stored),
                },
                request.first,
                request.after.as_deref(),
            )
            .await?;
        let mut connection = Connection::new(request.after.is_some(), more);
        connection.edges = payouts
            .into_iter()
            .map(|p| Edge::new(p.id.clone(), PayoutObject(p)))
            .collect();
        Ok(connection)
    }

    /// Mail to popugs, newest first. Admin only.
    #[graphql(complexity = "page::cost(first, child_complexity)")]
    async fn mailbox(
        &self,
        ctx: &Context<'_>,
        popug_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, MailObject>> {
        ctx.actor_in(&[Role::Admin], "read the mailbox")?;
        let request = page::request(first, after)?;
        let (mail, more) = ctx
            .queues()
            .mailbox(
                &QueueFilter {
                    popug_id: popug_id.map(|id| id.0),
                    ..QueueFilter::default()
                },
                request.first,
                request.after.as_deref(),
            )
            .await?;
        let mut connection = Connection::new(request.after.is_some(), more);
        connection.edges = mail
            .into_iter()
            .map(|m| Edge::new(m.id.clone(), MailObject(m)))
            .collect();
        Ok(connection)
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
        ctx.actor_in(&BOOKKEEPERS, "close a day")?;
        let payday = ctx.payday();
        let day = match day {
            Some(day) => day.0,
            None => payday
                .today()
                .pred_opt()
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
        ctx.actor_in(&[Role::Admin], "retry a payout")?;
        let payout = ctx.queues().retry_payout(&id.0).await?;
        ctx.services().delivery.wake();
        Ok(PayoutObject(payout))
    }
}
