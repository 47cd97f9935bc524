//! The payouts a day close made, queued for the payment system.

use ates_db::from_micros;
use ates_events::ids::PopugId;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::FromRow;

use super::Queue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutStatus {
    /// The money left the balance; the payment system has not confirmed it yet.
    Pending,
    Paid,
    /// The payment system refused or did not answer, every attempt; an admin may retry.
    Failed,
}

impl PayoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Paid => "PAID",
            Self::Failed => "FAILED",
        }
    }

    pub(super) fn from_stored(stored: &str) -> Self {
        match stored {
            "PAID" => Self::Paid,
            "FAILED" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// Also the PayoutMade event's id and the payment system's idempotency key.
    pub id: String,
    pub popug_id: PopugId,
    pub day: NaiveDate,
    pub amount: i64,
    /// What the popug's tasks earned that day.
    pub earned: i64,
    pub status: PayoutStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
    /// `payment-system`, or `ledger` when no payment system is configured.
    pub settled_by: Option<String>,
}

const PAYOUT_COLUMNS: &str = "id, popug_id, day, amount, earned, status, attempts, last_error, created_at, settled_at, settled_by";

#[derive(FromRow)]
pub(super) struct PayoutRow {
    id: String,
    popug_id: String,
    day: String,
    amount: i64,
    earned: i64,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: i64,
    settled_at: Option<i64>,
    settled_by: Option<String>,
}

impl From<PayoutRow> for Payout {
    fn from(row: PayoutRow) -> Self {
        Self {
            id: row.id,
            popug_id: PopugId(row.popug_id),
            day: row.day.parse().unwrap_or_default(),
            amount: row.amount,
            earned: row.earned,
            status: PayoutStatus::from_stored(&row.status),
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: from_micros(row.created_at),
            settled_at: row.settled_at.map(from_micros),
            settled_by: row.settled_by,
        }
    }
}

/// The `payouts` table as a queue.
pub(super) struct PayoutQueue;

impl Queue for PayoutQueue {
    const TABLE: &'static str = "payouts";
    const COLUMNS: &'static str = PAYOUT_COLUMNS;
    const OF_DAY: &'static str = "day = {}";
    type Row = PayoutRow;
    type Item = Payout;
    type Status = PayoutStatus;

    fn status(stored: &str) -> PayoutStatus {
        PayoutStatus::from_stored(stored)
    }
}
