//! The HTTP application: routes, the per-request session, and start-up.

use std::sync::Arc;

use accounting_domain::Ledger;
use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use ates_db::Db;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use task_domain::{Popugs, TaskError, Tracker};

use crate::accounting::Accounting;
use crate::api::{self, AtesSchema, Loaders, Services, Session};
use crate::auth::{self, Authenticator};
use crate::calendar::Calendar;
use crate::config::Config;

#[derive(Clone)]
pub struct AppState {
    schema: AtesSchema,
    services: Services,
    auth: Arc<Authenticator>,
    db: Db,
}

/// Everything a running gateway holds.
pub struct App {
    pub state: AppState,
    /// True when tokens are checked against a secret generated in the data folder.
    pub dev_secret: bool,
}

impl App {
    /// Connects to the database, applies its migrations and wires the domains.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let (auth, dev_secret) = authenticator(config)?;
        if config.database_url.is_none() {
            config.ensure_data_dir()?;
        }
        let db = Db::connect(&config.database_url(), config.db_max_connections).await?;
        db.migrate().await?;
        let services = Services {
            tracker: Tracker::new(db.clone()),
            popugs: Popugs::new(db.clone()),
            accounting: Accounting::spawn(Ledger::new(db.clone())),
            calendar: Calendar::new(&config.timezone)?,
        };
        Ok(Self {
            state: AppState {
                schema: api::build_schema(services.clone()),
                services,
                auth: Arc::new(auth),
                db,
            },
            dev_secret,
        })
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/graphql", get(graphiql).post(graphql))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .with_state(self.state.clone())
    }
}

/// The verifier the configuration asks for, and whether it uses a development secret.
pub fn authenticator(config: &Config) -> anyhow::Result<(Authenticator, bool)> {
    if let Some(pem) = &config.jwt_public_key {
        return Ok((Authenticator::rs256(pem, config)?, false));
    }
    let (secret, generated) = auth::load_or_create_dev_secret(config)?;
    Ok((Authenticator::hs256(&secret, config), generated))
}

async fn graphql(
    State(app): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let session = app.session(&headers).await;
    let loaders = Loaders::new(&app.services);
    let request = request.into_inner().data(session).data(loaders);
    app.schema.execute(request).await.into()
}

impl AppState {
    /// Verifies the bearer token and brings the popug replica up to date with its claims.
    async fn session(&self, headers: &HeaderMap) -> Session {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Session::Anonymous;
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(token) = token else {
            return Session::Rejected;
        };
        let claims = match self.auth.verify(token) {
            Ok(claims) => claims,
            Err(reason) => {
                tracing::debug!(%reason, "token refused");
                return Session::Rejected;
            }
        };
        match self.services.popugs.sync(&claims.popug()).await {
            Ok(popug) => Session::Popug(popug),
            Err(TaskError::Deactivated) => Session::Deactivated,
            Err(error) => {
                tracing::error!(%error, source = ?std::error::Error::source(&error), "popug replica unavailable");
                Session::Unavailable
            }
        }
    }
}

async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

async fn ready(State(app): State<AppState>) -> impl IntoResponse {
    match app.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(error) => {
            tracing::warn!(%error, "database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
