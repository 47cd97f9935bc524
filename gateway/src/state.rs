//! What every transport shares: the schema and its services, sessions, limits, and the
//! shutdown flag. Built once by `startup`; read by the handlers in `http`.

use std::sync::Arc;
use std::time::Duration;

use ates_db::Db;
use tokio::sync::watch;

use crate::api::{AtesSchema, Services};
use crate::auth_events::{AuthEvents, Revocations};
use crate::persisted::PersistedQueries;
use crate::rate_limit::{Pace, RateLimiter};
use crate::session::Sessions;

#[derive(Clone)]
pub struct AppState {
    pub(crate) schema: AtesSchema,
    pub(crate) services: Services,
    pub(crate) sessions: Sessions,
    pub(crate) db: Db,
    pub(crate) limits: Limits,
    pub(crate) rate_limiter: Arc<RateLimiter>,
    /// The pace of GraphQL requests without credentials, all together.
    pub(crate) strangers: Arc<Pace>,
    pub(crate) auth_events: AuthEvents,
    /// The HMAC secret of `POST /auth/events`; without it only service tokens may post.
    pub(crate) auth_events_secret: Option<Arc<[u8]>>,
    pub(crate) revocations: Revocations,
    /// True once the process was told to stop: `/readyz` answers 503 and sockets close.
    pub(crate) shutdown: Arc<watch::Sender<bool>>,
    /// Whether requests are recorded for `/metrics`.
    pub(crate) metrics: bool,
    /// The bearer token `/metrics` takes; not served without one.
    pub(crate) metrics_token: Option<Arc<str>>,
    /// Whether GraphiQL is served to browsers.
    pub(crate) graphiql: bool,
    /// Other origins whose web apps may call the API (`ATES_CORS_ORIGINS`).
    pub(crate) cors_origins: Arc<[String]>,
    /// Query texts clients sent by their hash.
    pub(crate) persisted: Arc<PersistedQueries>,
    /// Turns to run a CSV export: each holds a database connection while it streams.
    pub(crate) exports: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// Whether a browser page on `origin` may open a socket here: our own origin (the host the
    /// request was sent to), or one configured. Only browsers send `Origin`; a request without
    /// one is not a page's.
    pub(crate) fn admits_origin(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let origin = origin.to_ascii_lowercase();
        let own = origin
            .split_once("://")
            .is_some_and(|(_, authority)| host.is_some_and(|h| h.eq_ignore_ascii_case(authority)));
        own || self.cors_origins.contains(&origin)
    }
}

/// Bounds on what one client may send or hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_query_bytes: usize,
    pub allow_batch: bool,
    pub request_timeout: Duration,
    /// Time a request's body has to arrive once its headers did.
    pub body_timeout: Duration,
    pub max_ws_message: usize,
    pub ws_init_timeout: Duration,
    pub max_subscriptions: usize,
    /// How long an idempotency key and its answer are kept.
    pub idempotency_keep: Duration,
}
