//! `POST /auth/events`: one Popug Data Updated per request, signed with the shared secret or
//! sent with a service token.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth_events::{HandleError, SERVICE_ROLE, SIGNATURE_HEADER, signature_is_valid};
use crate::refusal::{self, Refusal};
use crate::session::bearer_token;
use crate::state::AppState;

pub async fn receive(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let (status, message) = crate::body::unread(&rejection, app.limits.max_body_bytes);
            return Refusal::new(status, refusal::BAD_REQUEST, message).into_response();
        }
    };
    if !is_auth_service(&app, &headers, &body).await {
        return Refusal::new(
            StatusCode::UNAUTHORIZED,
            refusal::UNAUTHENTICATED,
            format!("sign the body ({SIGNATURE_HEADER}: sha256=<hex>) or send a service token"),
        )
        .into_response();
    }
    match app.auth_events.handle(&body).await {
        Ok((event, outcome)) => (
            StatusCode::OK,
            axum::Json(json!({ "id": event.id, "outcome": outcome.as_str() })),
        )
            .into_response(),
        Err(HandleError::Bad(reason)) => {
            tracing::warn!(%reason, "auth event refused");
            Refusal::new(
                StatusCode::BAD_REQUEST,
                refusal::BAD_EVENT,
                reason.to_string(),
            )
            .into_response()
        }
        Err(HandleError::Storage(cause)) if cause.is_busy() => Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            refusal::SERVICE_UNAVAILABLE,
            "busy: send the event again",
        )
        .into_response(),
        Err(HandleError::Storage(cause)) => {
            tracing::error!(error = ?cause, "auth event not applied");
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                refusal::INTERNAL_SERVER_ERROR,
                "the event was not applied: send it again",
            )
            .into_response()
        }
    }
}

/// A valid signature of `body` under the configured secret, or a valid token with the service
/// role (which is not a popug: the replica is not touched).
async fn is_auth_service(app: &AppState, headers: &HeaderMap, body: &[u8]) -> bool {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok());
    if let (Some(secret), Some(signature)) = (app.auth_events_secret.as_deref(), signature) {
        return signature_is_valid(secret, body, signature);
    }
    let Some(token) = bearer_token(headers) else {
        return false;
    };
    app.sessions
        .verify(token)
        .await
        .is_some_and(|claims| claims.role.as_deref() == Some(SERVICE_ROLE))
}
