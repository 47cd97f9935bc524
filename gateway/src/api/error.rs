//! The one error type at the GraphQL boundary.
//!
//! Client errors say what was wrong and carry `extensions.code`; server errors are logged with
//! their cause and reach the client only as "Internal Server Error".

use std::sync::Arc;

use accounting_domain::AccountingError;
use async_graphql::ErrorExtensions as _;
use ates_db::SqlError;
use task_domain::TaskError;

use crate::refusal;

///
/// It deliberately does not implement `Display`: async-graphql turns anything displayable into
/// an error without extensions, and every error of ours must carry its code.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// No token, or one that is forged, expired or malformed.
    Unauthenticated,
    /// A valid token whose popug may not do this.
    Forbidden(String),
    /// Arguments that break a rule; nothing was changed.
    BadUserInput(String),
    NotFound(String),
    /// The request contradicts the current state (completing a finished task).
    Conflict(String),
    /// No database connection came free in time: try again shortly.
    Unavailable,
    /// Accounting has not yet applied what the answer needs (it is behind, or stuck); the
    /// change itself is committed.
    AccountingPending,
    /// A failure of ours; the cause goes to the log only.
    Internal(Arc<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => refusal::UNAUTHENTICATED,
            Self::Forbidden(_) => refusal::FORBIDDEN,
            Self::BadUserInput(_) => refusal::BAD_USER_INPUT,
            Self::NotFound(_) => refusal::NOT_FOUND,
            Self::Conflict(_) => refusal::CONFLICT,
            Self::Unavailable => refusal::SERVICE_UNAVAILABLE,
            Self::AccountingPending => refusal::ACCOUNTING_PENDING,
            Self::Internal(_) => refusal::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            Self::Unauthenticated => "authentication required: send a valid bearer token".into(),
            Self::Forbidden(m) | Self::BadUserInput(m) | Self::NotFound(m) | Self::Conflict(m) => {
                m.clone()
            }
            Self::Unavailable => "the service is busy: try again in a moment".into(),
            Self::AccountingPending => {
                "accounting has not caught up with this yet: ask again in a moment".into()
            }
            Self::Internal(_) => "Internal Server Error".into(),
        }
    }

    /// A failure of ours, described for the log.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(Arc::from(cause.into()))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }
}

impl From<TaskError> for ApiError {
    fn from(error: TaskError) -> Self {
        match error {
            TaskError::Invalid(message) => Self::BadUserInput(message),
            TaskError::NotFound(_) => Self::NotFound(error.to_string()),
            TaskError::Forbidden(message) => Self::Forbidden(message.into()),
            TaskError::Deactivated => Self::Forbidden(error.to_string()),
            TaskError::AlreadyInState { .. } => Self::Conflict(error.to_string()),
            TaskError::NobodyToAssign => Self::Conflict(error.to_string()),
            TaskError::Storage(_) if error.is_busy() => Self::Unavailable,
            TaskError::Storage(_) => Self::internal(error),
        }
    }
}

impl From<AccountingError> for ApiError {
    fn from(error: AccountingError) -> Self {
        match error {
            AccountingError::DayNotOver(_)
            | AccountingError::BadRange(_)
            | AccountingError::BadCursor => Self::BadUserInput(error.to_string()),
            AccountingError::NoSuchPayout(_) => Self::NotFound(error.to_string()),
            AccountingError::PayoutNotFailed(_) => Self::Conflict(error.to_string()),
            _ if error.is_busy() => Self::Unavailable,
            AccountingError::Unreadable { .. }
            | AccountingError::Unpriced(_)
            | AccountingError::Storage(_) => Self::internal(error),
        }
    }
}

/// A failure of the store itself, outside both domains (the outbox, read for a subscriber).
impl From<SqlError> for ApiError {
    fn from(error: SqlError) -> Self {
        if ates_db::is_busy(&error) {
            Self::Unavailable
        } else {
            Self::internal(error)
        }
    }
}

/// A domain's error, which can tell a busy store from a broken one.
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    fn is_busy(&self) -> bool;
}

impl DomainError for TaskError {
    fn is_busy(&self) -> bool {
        TaskError::is_busy(self)
    }
}

impl DomainError for AccountingError {
    fn is_busy(&self) -> bool {
        AccountingError::is_busy(self)
    }
}

/// A DataLoader shares one failure among every field that asked for the batch, as an `Arc`.
/// A busy store inside a loader is still "try again", not an internal error.
impl<E: DomainError> From<Arc<E>> for ApiError {
    fn from(error: Arc<E>) -> Self {
        if error.is_busy() {
            Self::Unavailable
        } else {
            Self::Internal(error)
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        if let ApiError::Internal(cause) = &error {
            tracing::error!(error = %cause, source = ?cause.source(), "request failed");
        }
        let code = error.code();
        async_graphql::Error::new(error.message()).extend_with(|_, e| e.set("code", code))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
