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
    #[error("storage failure")]
    Storage(#[from] sqlx::Error),
}
