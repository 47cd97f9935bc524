//! The company's figures: daily summaries for the bookkeepers, and the admin's analytics.

use accounting_domain::{Completion, DayFigures, DayRange, PeriodTop};
use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use task_domain::Permission;

use super::ids::{Kind, global_id};
use super::popug::PopugObject;
use super::scalars::Date;
use super::task::TaskObject;
use super::{ApiError, ApiResult, ContextExt, load_popug};

/// One business day in numbers.
pub struct DaySummary(DayFigures);

#[Object]
impl DaySummary {
    async fn day(&self) -> Date {
        Date(self.0.day)
    }

    /// Assignment fees taken from popugs.
    async fn fees_debited(&self) -> i64 {
        self.0.moved.fees_debited
    }

    /// Rewards credited for completed tasks.
    async fn rewards_credited(&self) -> i64 {
        self.0.moved.rewards_credited
    }

    /// Fees debited less rewards credited.
    async fn management_earnings(&self) -> i64 {
        self.0.moved.management_earnings()
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
            .load_one(self.0.task_id.clone())
            .await?
            .map(TaskObject))
    }

    async fn task_id(&self) -> ID {
        global_id(Kind::Task, &self.0.task_id.0)
    }

    async fn reward(&self) -> i64 {
        self.0.reward
    }

    async fn completed_at(&self) -> DateTime<Utc> {
        self.0.completed_at
    }

    async fn completed_by(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &self.0.popug_id).await
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "accounting_domain::Period")]
pub enum Period {
    Day,
    /// Monday to Sunday.
    Week,
    Month,
}

/// The most expensive task of one period.
pub struct PeriodTopObject(PeriodTop);

#[Object(name = "PeriodTop")]
impl PeriodTopObject {
    /// First day of the period (within the asked range).
    async fn from(&self) -> Date {
        Date(self.0.period.from())
    }

    /// Last day of the period (within the asked range).
    async fn to(&self) -> Date {
        Date(self.0.period.to())
    }

    /// Null when no task was completed in the period.
    async fn task(&self) -> Option<ExpensiveTask> {
        self.0.task.clone().map(ExpensiveTask)
    }
}

/// The admin's figures.
pub struct Analytics;

#[Object]
impl Analytics {
    /// Fees debited less rewards credited on a day (today when omitted).
    async fn management_earnings(&self, ctx: &Context<'_>, day: Option<Date>) -> ApiResult<i64> {
        let day = day.map_or_else(|| ctx.payday().today(), |d| d.0);
        Ok(ctx.figures().money_moved(day).await?.management_earnings())
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
        let range = DayRange::new(from.0, to.0)?;
        Ok(ctx
            .figures()
            .most_expensive(range)
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
    ) -> ApiResult<Vec<PeriodTopObject>> {
        let range = DayRange::new(from.0, to.0)?;
        let tops = ctx
            .figures()
            .most_expensive_per(period.into(), range)
            .await?;
        Ok(tops.into_iter().map(PeriodTopObject).collect())
    }
}

#[derive(Default)]
pub struct FiguresQuery;

/// The ledger's invariants, checked on the live database.
#[derive(SimpleObject)]
pub struct LedgerCheck {
    /// True when every invariant holds.
    holds: bool,
    /// Everything that breaks an invariant, all checks together.
    violations: i64,
    checks: Vec<InvariantCheck>,
}

/// One invariant of the ledger, checked.
#[derive(SimpleObject)]
pub struct InvariantCheck {
    name: String,
    /// The figures behind the verdict.
    figure: String,
    /// Rows that break it; 0 when it holds.
    violations: i64,
}

#[Object]
impl FiguresQuery {
    /// Checks every invariant of the ledger now, on the live database, as `gateway verify`
    /// does, and sets the metric `ates_ledger_invariant_violations`. Admin only.
    async fn ledger_check(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default = 300,
            desc = "Seconds an event may wait for the ledger before the wait is a breach."
        )]
        max_backlog_secs: i32,
    ) -> ApiResult<LedgerCheck> {
        ctx.actor_may(Permission::Administer, "check the ledger")?;
        let max_backlog = u64::try_from(max_backlog_secs)
            .map_err(|_| ApiError::BadUserInput("maxBacklogSecs must not be negative".into()))?;
        let report = ctx
            .ledger()
            .check(std::time::Duration::from_secs(max_backlog))
            .await?;
        let violations = report.violations();
        crate::metrics::record_ledger_check(violations);
        Ok(LedgerCheck {
            holds: violations == 0,
            violations,
            checks: report
                .checks
                .into_iter()
                .map(|check| InvariantCheck {
                    name: check.name.to_owned(),
                    figure: check.figure,
                    violations: check.violations,
                })
                .collect(),
        })
    }

    /// The company's figures per business day in `[from, to]` (at most 366 days), oldest
    /// first. Admin and accountant.
    async fn daily_summaries(
        &self,
        ctx: &Context<'_>,
        from: Date,
        to: Date,
    ) -> ApiResult<Vec<DaySummary>> {
        ctx.actor_may(Permission::KeepBooks, "read the daily figures")?;
        let figures = ctx.figures().days(DayRange::new(from.0, to.0)?).await?;
        Ok(figures.into_iter().map(DaySummary).collect())
    }

    /// Analytics, for admins.
    async fn analytics(&self, ctx: &Context<'_>) -> ApiResult<Analytics> {
        ctx.actor_may(Permission::Administer, "read analytics")?;
        Ok(Analytics)
    }
}
