//! Who sent a request: the bearer token, its verification, and the popug replica brought up to
//! date with its claims. HTTP requests and WebSockets both come through [`Sessions`].

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};
use task_domain::{Popug, Popugs, TaskError};

use crate::auth::{Authenticator, Claims};

/// Who sent the request, decided once per request before execution.
#[derive(Debug, Clone)]
pub enum Session {
    /// No token.
    Anonymous,
    /// A token that failed verification.
    Rejected,
    /// A valid token of a popug the auth service has deactivated.
    Deactivated,
    /// The replica could not be read or written; logged where it happened.
    Unavailable,
    /// No database connection came free in time to read the replica.
    Busy,
    Popug(Popug),
}

/// The token of an `Authorization` value: `Bearer <token>`.
pub fn bearer(value: &str) -> Option<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    bearer(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// Turns tokens into sessions.
#[derive(Clone)]
pub struct Sessions {
    auth: Arc<Authenticator>,
    popugs: Popugs,
}

impl Sessions {
    pub fn new(auth: Authenticator, popugs: Popugs) -> Self {
        Self {
            auth: Arc::new(auth),
            popugs,
        }
    }

    /// The session of a request's headers: anonymous without `Authorization`, rejected when
    /// it holds no bearer token.
    pub async fn of(&self, headers: &HeaderMap) -> Session {
        if headers.get(header::AUTHORIZATION).is_none() {
            return Session::Anonymous;
        }
        match bearer_token(headers) {
            Some(token) => self.authenticate(Some(token)).await.0,
            None => Session::Rejected,
        }
    }

    /// Verifies a bearer token and brings the popug replica up to date with its claims; the
    /// session, and when the token expires.
    pub async fn authenticate(&self, token: Option<&str>) -> (Session, Option<DateTime<Utc>>) {
        let Some(token) = token else {
            return (Session::Anonymous, None);
        };
        let claims = match self.verify(token).await {
            Some(claims) => claims,
            None => return (Session::Rejected, None),
        };
        let expires = DateTime::from_timestamp(claims.exp, 0);
        let session = match self.popugs.sync(&claims.popug()).await {
            Ok(popug) => Session::Popug(popug),
            Err(TaskError::Deactivated) => Session::Deactivated,
            Err(error) if error.is_busy() => {
                tracing::warn!("no database connection came free for the popug replica");
                Session::Busy
            }
            Err(error) => {
                tracing::error!(%error, source = ?std::error::Error::source(&error), "popug replica unavailable");
                Session::Unavailable
            }
        };
        (session, expires)
    }

    /// The claims of a valid token, without touching the replica (for callers that are not
    /// popugs, such as the auth service).
    pub async fn verify(&self, token: &str) -> Option<Claims> {
        match self.auth.verify(token).await {
            Ok(claims) => Some(claims),
            Err(reason) => {
                tracing::debug!(%reason, "token refused");
                None
            }
        }
    }
}
