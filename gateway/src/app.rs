//! The HTTP application: routes, the per-request session, and start-up.

use std::sync::Arc;

use accounting_domain::{Calendar, Figures, Ledger, Payday, Queues};
use anyhow::Context as _;
use ates_db::{Backend, Clock, Db};
use axum::Router;
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use std::time::Duration;
use task_domain::{Popugs, TaskError, Tracker};
use tokio::sync::watch;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::accounting::Accounting;
use crate::api::shape::ShapeLimits;
use crate::api::{self, AtesSchema, QueryLimits, Services, Session};
use crate::auth::{self, Authenticator, Jwks};
use crate::auth_events::{self, AuthEvents, Revocations};
use crate::config::{self, Config};
use crate::feed::{self, Feed};
use crate::http::{self, RateLimiter};
use crate::nats::Broker;
use crate::payday::{self, Delivery};
use crate::ws;

#[derive(Clone)]
pub struct AppState {
    schema: AtesSchema,
    services: Services,
    auth: Arc<Authenticator>,
    db: Db,
    max_body_bytes: usize,
    max_query_bytes: usize,
    allow_batch: bool,
    request_timeout: Duration,
    rate_limiter: Arc<RateLimiter>,
    auth_events: AuthEvents,
    auth_events_secret: Option<Arc<[u8]>>,
    pub(crate) revocations: Revocations,
    pub(crate) limits: Limits,
    /// True once the process was told to stop: `/readyz` answers 503 and sockets close.
    shutdown: Arc<watch::Sender<bool>>,
    metrics: bool,
    relays: bool,
}

/// Bounds on what one client may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_ws_message: usize,
    pub ws_init_timeout: Duration,
    pub max_subscriptions: usize,
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
        if let Some(jwks) = auth.key_set() {
            // Keys at hand for the first requests; a failure here is retried on use.
            jwks.refresh().await;
        }
        let calendar = calendar(config)?;
        let db = connect(config).await?;
        db.migrate().await?;
        let mut ledger = Ledger::new(db.clone());
        if config.ledger_batch > 0 {
            ledger = ledger.with_batch(config.ledger_batch);
        }
        let accounting = Accounting::spawn(ledger);
        let feed = Feed::start(db.clone(), config.feed_capacity).await?;
        let revocations = Revocations::new();
        let popugs = Popugs::new(db.clone());
        if db.backend() == Backend::Postgres {
            // Commits of other replicas wake this one's accounting and subscribers at once,
            // make it forget the popugs they changed, and end the sessions of popugs they
            // deactivated.
            let (accounting, feed) = (Arc::clone(&accounting), Arc::clone(&feed));
            let (changed, reconnected) = (popugs.clone(), popugs.clone());
            let revoked = revocations.clone();
            tokio::spawn(feed::listen_for_commits(
                config.database_url(),
                feed::CommitListeners {
                    appended: Box::new(move || {
                        accounting.wake();
                        feed.wake();
                    }),
                    popug_changed: Box::new(move |id| changed.forget(id)),
                    popug_revoked: Box::new(move |id| revoked.revoke(id)),
                    connected: Box::new(move || reconnected.forget_all()),
                },
            ));
        }
        let auth_events = AuthEvents::new(popugs.clone(), revocations.clone());
        if config.metrics {
            crate::metrics::handle();
        }
        let relays = config.nats_url.is_some();
        if let Some(broker) = Broker::from_config(config) {
            tracing::info!(url = %config::redact_url(&broker.url), stream = %broker.stream, "publishing events to NATS JetStream");
            broker.start(db.clone(), auth_events.clone()).await?;
        }
        let payday = Payday::new(db.clone(), calendar).with_batch(config.close_batch);
        let queues = Queues::new(db.clone());
        let delivery = Delivery::from_config(config, queues.clone(), popugs.clone())?.spawn();
        payday::spawn_scheduler(
            payday.clone(),
            Arc::clone(&delivery),
            Duration::from_secs(config.close_check_secs.max(1)),
        );
        let services = Services {
            tracker: Tracker::new(db.clone()).with_replica(popugs.clone()),
            popugs,
            accounting,
            feed,
            figures: Figures::new(db.clone(), payday.clone()),
            payday,
            queues,
            delivery,
        };
        Ok(Self {
            state: AppState {
                schema: api::build_schema(
                    services.clone(),
                    QueryLimits {
                        depth: config.max_query_depth,
                        complexity: config.max_query_complexity,
                        shape: ShapeLimits {
                            query_bytes: config.max_query_bytes,
                            aliases: config.max_aliases,
                            root_fields: config.max_root_fields,
                            fields: config.max_fields,
                        },
                        introspection: config.introspection_enabled(),
                    },
                ),
                services,
                auth: Arc::new(auth),
                db,
                max_body_bytes: config.max_body_bytes,
                max_query_bytes: config.max_query_bytes,
                allow_batch: config.allow_batch,
                request_timeout: http::timeout(config.request_timeout_secs),
                rate_limiter: Arc::new(RateLimiter::new(config.mutations_per_second)),
                auth_events,
                auth_events_secret: config
                    .auth_events_secret
                    .as_deref()
                    .map(|secret| Arc::from(secret.as_bytes())),
                revocations,
                shutdown: Arc::new(watch::channel(false).0),
                metrics: config.metrics,
                relays,
                limits: Limits {
                    max_ws_message: 64 * 1024,
                    ws_init_timeout: Duration::from_secs(config.ws_init_timeout_secs),
                    max_subscriptions: config.ws_max_subscriptions,
                },
            },
            dev_secret,
        })
    }

    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/graphql", get(graphql_get).post(graphql))
            .route("/graphql/ws", get(ws::upgrade))
            .route("/graphiql/assets/{name}", get(crate::graphiql::asset))
            .route("/auth/events", post(auth_events::receive))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready));
        if self.state.metrics {
            router = router.route("/metrics", get(crate::metrics::scrape));
        }
        let request_id = HeaderName::from_static(REQUEST_ID);
        router
            .with_state(self.state.clone())
            // A body announced or found larger than this is refused before it is read whole.
            .layer(DefaultBodyLimit::max(self.state.max_body_bytes))
            .layer(PropagateRequestIdLayer::new(request_id.clone()))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(())
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
            )
            // Outermost: the id is there for the span and for the handlers.
            .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
    }

    /// Tells the gateway it is stopping: `/readyz` turns 503 and WebSockets close with 1001
    /// ("going away") so their clients reconnect to another replica.
    pub fn begin_shutdown(&self) {
        self.state.shutdown.send_replace(true);
    }
}

/// The header carrying a request's id: the client's, or one made up here.
pub const REQUEST_ID: &str = "x-request-id";

/// The span of one HTTP request: its id, method and path (never the query string, which may
/// hold a query's variables), and, filled in later, the operation and the popug.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        operation = tracing::field::Empty,
        popug = tracing::field::Empty,
    )
}

/// The database the configuration names, stamping time by the configured clock. Migrations
/// are the caller's to run.
pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    if config.database_url.is_none() {
        config.ensure_data_dir()?;
    }
    let clock = match &config.clock_file {
        None => Clock::System,
        Some(path) => {
            let clock = Clock::File(Arc::new(path.clone()));
            clock.check().map_err(anyhow::Error::msg)?;
            tracing::warn!(
                "ATES_CLOCK_FILE is set: business time is read from {}, not the system clock",
                path.display()
            );
            clock
        }
    };
    Ok(Db::connect_with(
        &config.database_url(),
        config.db_max_connections,
        Duration::from_millis(config.db_acquire_timeout_ms.max(1)),
    )
    .await?
    .with_clock(clock))
}

/// The business calendar of the configured time zone.
pub fn calendar(config: &Config) -> anyhow::Result<Calendar> {
    Calendar::new(&config.timezone).with_context(|| {
        format!(
            "ATES_TIMEZONE: {:?} is not an IANA time zone",
            config.timezone
        )
    })
}

/// The verifier the configuration asks for, and whether it uses a development secret.
pub fn authenticator(config: &Config) -> anyhow::Result<(Authenticator, bool)> {
    if let Some(url) = &config.jwks_url {
        if config.jwt_public_key.is_some() {
            anyhow::bail!("ATES_JWKS_URL and ATES_JWT_PUBLIC_KEY are both set: set one");
        }
        let jwks = Jwks::new(
            url.clone(),
            Duration::from_millis(config.jwks_min_refresh_ms),
            Duration::from_secs(config.jwks_max_age_secs.max(1)),
        );
        return Ok((Authenticator::jwks(jwks, config), false));
    }
    if let Some(pem) = &config.jwt_public_key {
        return Ok((Authenticator::rs256(pem, config)?, false));
    }
    let (secret, generated) = auth::load_or_create_dev_secret(config)?;
    Ok((Authenticator::hs256(&secret, config), generated))
}

async fn graphql(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    http::post(app, headers, body).await
}

impl AppState {
    pub(crate) async fn session(&self, headers: &HeaderMap) -> Session {
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
    pub(crate) async fn authenticate(
        &self,
        token: Option<&str>,
    ) -> (Session, Option<DateTime<Utc>>) {
        let Some(token) = token else {
            return (Session::Anonymous, None);
        };
        let claims = match self.auth.verify(token).await {
            Ok(claims) => claims,
            Err(reason) => {
                tracing::debug!(%reason, "token refused");
                return (Session::Rejected, None);
            }
        };
        let expires = DateTime::from_timestamp(claims.exp, 0);
        let session = match self.services.popugs.sync(&claims.popug()).await {
            Ok(popug) => Session::Popug(popug),
            Err(TaskError::Deactivated) => Session::Deactivated,
            Err(TaskError::Storage(sqlx::Error::PoolTimedOut)) => {
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

    pub(crate) fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    pub(crate) fn auth_events(&self) -> &AuthEvents {
        &self.auth_events
    }

    pub(crate) fn auth_events_secret(&self) -> Option<&[u8]> {
        self.auth_events_secret.as_deref()
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Whether this gateway relays the outbox to NATS.
    pub(crate) fn relays(&self) -> bool {
        self.relays
    }

    pub(crate) fn metrics_enabled(&self) -> bool {
        self.metrics
    }

    /// Flips to true when the gateway begins to stop.
    pub(crate) fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub(crate) fn services(&self) -> &Services {
        &self.services
    }

    pub(crate) fn schema(&self) -> &AtesSchema {
        &self.schema
    }

    pub(crate) fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    pub(crate) fn max_query_bytes(&self) -> usize {
        self.max_query_bytes
    }

    pub(crate) fn allow_batch(&self) -> bool {
        self.allow_batch
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub(crate) fn rate_limiter(&self) -> &RateLimiter {
        &self.rate_limiter
    }
}

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// A WebSocket for a client that asks to upgrade, a query in the URL, or GraphiQL for a
/// browser.
async fn graphql_get(
    state: State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => ws::upgrade(state, headers, upgrade).await,
        Err(_) if params.contains_key("query") => http::get(state.0, headers, params).await,
        Err(_) => crate::graphiql::page(),
    }
}

async fn ready(State(app): State<AppState>) -> impl IntoResponse {
    if *app.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match app.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(error) => {
            tracing::warn!(%error, "database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
