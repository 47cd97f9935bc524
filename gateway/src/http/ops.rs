//! For operators and orchestrators: `/healthz` (the process answers), `/readyz` (it will serve:
//! not stopping, and the database answers) and `/metrics`.

use std::time::Duration;

use accounting_domain::CONSUMER as ACCOUNTING;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::metrics::{self, DatabaseFigures};
use crate::refusal::{self, Refusal};
use crate::state::AppState;
use crate::workers::nats::RELAY;

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

/// `GET /metrics`: what was recorded as it happened, and the figures of the database read now.
pub async fn metrics(State(app): State<AppState>) -> Response {
    match database_figures(&app).await {
        Ok(figures) => metrics::record_database(Some(&figures)),
        Err(error) => {
            tracing::warn!(%error, "metrics: the database does not answer");
            metrics::record_database(None);
        }
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

/// The pool's use, each outbox consumer's backlog, and the payouts by status.
async fn database_figures(
    app: &AppState,
) -> Result<DatabaseFigures<'static>, Box<dyn std::error::Error + Send + Sync>> {
    let pool = app.db.pool();
    let mut consumers = vec![ACCOUNTING];
    if app.relays {
        consumers.push(RELAY);
    }
    let now = app.db.now();
    let mut backlogs = Vec::with_capacity(consumers.len());
    for consumer in consumers {
        let backlog = ates_events::outbox::backlog(&app.db, consumer).await?;
        let age = backlog.oldest.map_or(Duration::ZERO, |at| {
            (now - at).to_std().unwrap_or(Duration::ZERO)
        });
        backlogs.push((consumer, backlog.waiting, age));
    }
    let payouts = app
        .services
        .queues
        .payouts_by_status()
        .await?
        .into_iter()
        .map(|(status, count)| (status.as_str(), count))
        .collect();
    Ok(DatabaseFigures {
        pool: (pool.size(), pool.num_idle()),
        backlogs,
        payouts,
    })
}
