//! Events accounting produces when it closes a day.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::Contract;

/// A popug's positive balance at the end of a business day was paid out: its balance dropped
/// by `amount`, and the payment system and the popug's mailbox are told. One per popug and day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutMade {
    /// Also the id of the event, and the payment system's idempotency key.
    pub payout_id: String,
    pub popug_id: String,
    /// The business day closed, `YYYY-MM-DD` in the business time zone.
    pub day: NaiveDate,
    /// Paid, in minor units; always positive.
    pub amount: i64,
    /// What the popug's tasks earned (rewards less fees) that day; may differ from `amount`
    /// when earlier days carried a balance.
    pub earned: i64,
    pub paid_at: DateTime<Utc>,
}

impl Contract for PayoutMade {
    const TYPE: &'static str = "payout.made";
    const VERSION: i64 = 1;

    fn aggregate_id(&self) -> &str {
        &self.popug_id
    }
}
