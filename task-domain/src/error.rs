//! The one error type of the task tracker.

use crate::task::TaskStatus;

/// What can go wrong in the task tracker. Every variant but `Storage` is the caller's to fix.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The input breaks a rule of the business (a title with brackets, an empty title, …).
    #[error("{0}")]
    Invalid(String),
    #[error("task {0} does not exist")]
    NotFound(String),
    /// The actor's role or relation to the task does not allow the action.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The popug was deactivated by the auth service and can no longer act.
    #[error("this popug has been deactivated")]
    Deactivated,
    #[error("task {id} is already {status}")]
    AlreadyInState { id: String, status: TaskStatus },
    /// Nobody may receive a task: every active popug is an admin or a manager.
    #[error("no active popug can be assigned a task (every active popug is an admin or a manager)")]
    NobodyToAssign,
    /// The database failed; the cause is for the logs, never for the client.
    #[error("storage failure")]
    Storage(#[from] sqlx::Error),
}

impl TaskError {
    /// The store was too busy to answer in time; the same call may succeed shortly.
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Storage(error) if ates_db::is_busy(error))
    }
}
