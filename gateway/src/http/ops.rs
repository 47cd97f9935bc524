//! For operators and orchestrators: `/healthz` (the process answers), `/readyz` (it will serve:
//! not stopping, and the database answers) and `/metrics`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::metrics;
use crate::refusal::{self, Refusal};
use crate::state::AppState;

/// `GET /healthz`.
pub async fn healthy() -> &'static str {
    "ok"
}

/// `GET /readyz`.
pub async fn ready(State(app): State<AppState>) -> Response {
    let unready = |message: &str| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            refusal::SERVICE_UNAVAILABLE,
            message,
        )
        .into_response()
    };
    if *app.shutdown.borrow() {
        return unready("shutting down");
    }
    match app.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(error) => {
            tracing::warn!(%error, "database does not answer");
            unready("database unavailable")
        }
    }
}

/// `GET /metrics`: what was recorded as it happened, and the database's figures as the gauges
/// worker read them last ([`crate::workers::gauges`]), for the bearer of the metrics token.
pub async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let token = app.metrics_token.as_deref().unwrap_or_default();
    let holds = presented.is_some_and(|presented| same(presented.as_bytes(), token.as_bytes()));
    if token.is_empty() || !holds {
        return Refusal::new(
            StatusCode::UNAUTHORIZED,
            refusal::UNAUTHENTICATED,
            "/metrics takes the metrics token as a bearer token",
        )
        .into_response();
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
        .into_response()
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
