//! The one error type of accounting.

#[derive(Debug, thiserror::Error)]
pub enum AccountingError {
    /// An event this consumer cannot read: a version it does not know, or a broken payload.
    /// The consumer stops at it rather than skip money.
    #[error("cannot handle event {id} ({event_type} v{version}): {reason}")]
    Unreadable {
        id: String,
        event_type: String,
        version: i64,
        reason: String,
    },
    /// An assignment or completion of a task whose prices were never drawn: its TaskCreated
    /// has not been handled. Retried, never skipped.
    #[error("task {0} has no prices yet")]
    Unpriced(String),
    /// A range of days the figures do not cover (backwards, or too long).
    #[error("{0}")]
    BadRange(String),
    /// A page's `after` that no list of ours handed out.
    #[error("after is not a cursor of this list")]
    BadCursor,
    /// Only a day that has ended can be closed.
    #[error("{0} has not ended yet")]
    DayNotOver(chrono::NaiveDate),
    #[error("payout {0} does not exist")]
    NoSuchPayout(String),
    /// Only a failed payout is sent again.
    #[error("payout {0} has not failed")]
    PayoutNotFailed(String),
    #[error("storage failure")]
    Storage(#[from] sqlx::Error),
}

impl AccountingError {
    /// The store was too busy to answer in time; the same call may succeed shortly.
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Storage(error) if ates_db::is_busy(error))
    }
}
