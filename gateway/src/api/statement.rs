//! A popug's statement of one business day: "why was I paid 38?"

use accounting_domain::{Payout, QueueFilter, Statement};
use async_graphql::{Context, Enum, ID, Object};
use ates_db::PageRequest;

use super::accounting::AuditLogEntry;
use super::ids::popug_key;
use super::payday::PayoutObject;
use super::popug::PopugObject;
use super::scalars::Date;
use super::{ApiResult, ContextExt, load_popug, money_of};

/// Why a day's statement shows no payout.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum NoPayout {
    /// The day has not been closed yet.
    DayOpen,
    /// The day closed at zero: nothing to pay.
    Zero,
    /// The day closed below zero: the debt carries over to the next day.
    Negative,
}

/// One popug's business day, in money.
pub struct StatementObject {
    statement: Statement,
    payout: Option<Payout>,
    closed: bool,
}

#[Object(name = "Statement")]
impl StatementObject {
    async fn popug(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        load_popug(ctx, &self.statement.popug_id).await
    }

    async fn day(&self) -> Date {
        Date(self.statement.day)
    }

    /// The balance at the day's start.
    async fn opening_balance(&self) -> i64 {
        self.statement.opening
    }

    /// Every entry of the day, in the order it moved the balance; `balanceAfter` is the
    /// running balance.
    async fn entries(&self) -> Vec<AuditLogEntry> {
        self.statement
            .entries
            .iter()
            .cloned()
            .map(AuditLogEntry)
            .collect()
    }

    /// The balance at the day's end: the opening balance plus every entry.
    async fn closing_balance(&self) -> i64 {
        self.statement.closing
    }

    /// The payout the day's close made: the closing balance, when above zero.
    async fn payout(&self) -> Option<PayoutObject> {
        self.payout.clone().map(PayoutObject)
    }

    /// Why there is no payout; null when there is one.
    async fn no_payout(&self) -> Option<NoPayout> {
        if self.payout.is_some() {
            None
        } else if !self.closed {
            Some(NoPayout::DayOpen)
        } else if self.statement.closing == 0 {
            Some(NoPayout::Zero)
        } else {
            Some(NoPayout::Negative)
        }
    }
}

#[derive(Default)]
pub struct StatementQuery;

#[Object]
impl StatementQuery {
    /// A popug's statement of one business day: opening balance, entries with their running
    /// balance, closing balance, and the payout or why there was none. The caller's own when
    /// `popugId` is omitted; anyone's for admins and accountants.
    async fn statement(
        &self,
        ctx: &Context<'_>,
        popug_id: Option<ID>,
        day: Date,
    ) -> ApiResult<StatementObject> {
        let actor = ctx.actor()?;
        let popug = money_of(
            actor,
            popug_id.as_ref().map(popug_key).transpose()?,
            "read another popug's statement",
        )?;
        let statement = ctx.payday().statement(&popug, day.0).await?;
        let filter = QueueFilter {
            popug_id: Some(popug),
            day: Some(day.0),
            status: None,
        };
        let payout = ctx
            .queues()
            .payouts(&filter, &PageRequest::forward(1, None))
            .await?
            .items
            .into_iter()
            .next();
        let closed = ctx.payday().day_close(day.0).await?.is_some();
        Ok(StatementObject {
            statement,
            payout,
            closed,
        })
    }
}
