//! Start-up: connect to the database, migrate it, start the workers and wire the services
//! into the state the transports share. Only `main` (and tests, through [`App`]) come here.

use std::sync::Arc;
use std::time::Duration;

use accounting_domain::{Calendar, Figures, Ledger, Payday, Queues};
use anyhow::Context as _;
use ates_db::{Backend, Clock, Db};
use axum::Router;
use task_domain::{Popugs, Tracker};
use tokio::sync::watch;

use crate::api::shape::ShapeLimits;
use crate::api::{self, QueryLimits, Services};
use crate::auth::{self, Authenticator, Jwks};
use crate::auth_events::{AuthEvents, Revocations};
use crate::config::{self, Config};
use crate::persisted::PersistedQueries;
use crate::rate_limit::{Pace, RateLimiter, Turns};
use crate::serve::ConnectionLimits;
use crate::session::Sessions;
use crate::state::{AppState, Limits};
use crate::workers::accounting::Accounting;
use crate::workers::delivery::Delivery;
use crate::workers::feed::{self, Feed};
use crate::workers::nats::Broker;
use crate::workers::sweep;
use crate::workers::{day_close, gauges};

/// How often expired idempotency keys are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Everything a running gateway holds.
pub struct App {
    pub state: AppState,
    /// True when tokens are checked against a secret generated in the data folder.
    pub dev_secret: bool,
    /// Bounds on each connection, for [`crate::serve`].
    pub connections: ConnectionLimits,
}

impl App {
    /// Connects to the database, applies its migrations and wires the domains.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let refusals = config.production_refusals();
        if !refusals.is_empty() {
            anyhow::bail!(
                "ATES_ENV=production, and this configuration is not fit for it:\n  - {}",
                refusals.join("\n  - ")
            );
        }
        let (auth, dev_secret) = authenticator(config)?;
        if let Some(jwks) = auth.key_set() {
            // Keys at hand for the first requests; from then on they are fetched in the
            // background, and a failure here is retried there.
            jwks.refresh().await;
            tokio::spawn(Jwks::keep_fresh(Arc::downgrade(jwks)));
        }
        let calendar = calendar(config)?;
        let db = connect(config).await?;
        db.migrate().await?;
        let mut ledger = Ledger::new(db.clone());
        if config.payday.ledger_batch > 0 {
            ledger = ledger.with_batch(config.payday.ledger_batch);
        }
        let accounting = Accounting::spawn(ledger);
        let feed = Feed::start(db.clone(), config.limits.feed_capacity).await?;
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
        if config.server.metrics {
            crate::metrics::handle();
        }
        let relays = config.broker.nats_url.is_some();
        if let Some(broker) = Broker::from_config(config) {
            tracing::info!(url = %config::redact_url(&broker.url), stream = %broker.stream, "publishing events to NATS JetStream");
            broker.start(db.clone(), auth_events.clone()).await?;
        }
        let payday = Payday::new(db.clone(), calendar).with_batch(config.payday.close_batch);
        let queues = Queues::new(db.clone());
        let delivery = Delivery::from_config(config, queues.clone(), popugs.clone())?.spawn();
        sweep::spawn(db.clone(), SWEEP_EVERY);
        if config.server.metrics {
            gauges::spawn(db.clone(), queues.clone(), relays, gauges::EVERY);
        }
        day_close::spawn(
            payday.clone(),
            Arc::clone(&delivery),
            Duration::from_secs(config.payday.close_check_secs.max(1)),
        );
        let services = Services {
            tracker: Tracker::new(db.clone(), popugs.clone()),
            popugs,
            accounting,
            feed,
            figures: Figures::new(db.clone(), payday.clone()),
            payday,
            queues,
            delivery,
            auth_events: auth_events.clone(),
            db: db.clone(),
        };
        Ok(Self {
            state: AppState {
                schema: api::build_schema(
                    services.clone(),
                    QueryLimits {
                        depth: config.limits.max_query_depth,
                        complexity: config.limits.max_query_complexity,
                        shape: ShapeLimits {
                            query_bytes: config.limits.max_query_bytes,
                            aliases: config.limits.max_aliases,
                            root_fields: config.limits.max_root_fields,
                            fields: config.limits.max_fields,
                        },
                        introspection: config.introspection_enabled(),
                    },
                    Arc::new(Turns::new(
                        config.limits.requests_per_popug,
                        config.limits.max_query_complexity,
                        config.limits.complexity_per_second,
                    )),
                ),
                sessions: Sessions::new(auth, services.popugs.clone()),
                services,
                db,
                rate_limiter: Arc::new(RateLimiter::new(config.limits.mutations_per_second)),
                strangers: Arc::new(Pace::new(
                    config.limits.anonymous_per_second,
                    config.limits.anonymous_per_second,
                )),
                auth_events,
                auth_events_secret: config
                    .auth
                    .auth_events_secret
                    .as_deref()
                    .map(|secret| Arc::from(secret.as_bytes())),
                revocations,
                shutdown: Arc::new(watch::channel(false).0),
                metrics: config.server.metrics,
                metrics_token: config
                    .server
                    .metrics_token
                    .as_deref()
                    .filter(|token| !token.is_empty())
                    .map(Arc::from),
                graphiql: config.graphiql_enabled(),
                cors_origins: config.server.cors_origins.clone().into(),
                persisted: Arc::new(PersistedQueries::new(
                    config.limits.persisted_queries,
                    config.limits.max_query_bytes,
                )),
                exports: Arc::new(tokio::sync::Semaphore::new(config.limits.max_exports)),
                limits: Limits {
                    max_body_bytes: config.limits.max_body_bytes,
                    max_query_bytes: config.limits.max_query_bytes,
                    allow_batch: config.limits.allow_batch,
                    request_timeout: Duration::from_secs(config.limits.request_timeout_secs.max(1)),
                    body_timeout: Duration::from_secs(config.limits.body_timeout_secs.max(1)),
                    max_ws_message: 64 * 1024,
                    ws_init_timeout: Duration::from_secs(config.limits.ws_init_timeout_secs),
                    max_subscriptions: config.limits.ws_max_subscriptions,
                    idempotency_keep: Duration::from_secs(config.limits.idempotency_keep_secs),
                },
            },
            dev_secret,
            connections: ConnectionLimits {
                header_timeout: Duration::from_secs(config.limits.header_timeout_secs.max(1)),
                per_address: config.limits.max_connections_per_address.max(1),
            },
        })
    }

    /// The routes and layers serving this gateway.
    pub fn router(&self) -> Router {
        crate::router::router(self.state.clone())
    }

    /// Tells the gateway it is stopping: `/readyz` turns 503 and WebSockets close with 1001
    /// ("going away") so their clients reconnect to another replica.
    pub fn begin_shutdown(&self) {
        self.state.shutdown.send_replace(true);
    }
}

/// The database the configuration names, stamping time by the configured clock. Migrations
/// are the caller's to run.
pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    if config.database.database_url.is_none() {
        config.ensure_data_dir()?;
    }
    let clock = match &config.server.clock_file {
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
        config.database.db_max_connections,
        Duration::from_millis(config.database.db_acquire_timeout_ms.max(1)),
    )
    .await?
    .with_clock(clock))
}

/// The business calendar of the configured time zone.
pub fn calendar(config: &Config) -> anyhow::Result<Calendar> {
    Calendar::new(&config.payday.timezone).with_context(|| {
        format!(
            "ATES_TIMEZONE: {:?} is not an IANA time zone",
            config.payday.timezone
        )
    })
}

/// The verifier the configuration asks for, and whether it uses a development secret.
pub fn authenticator(config: &Config) -> anyhow::Result<(Authenticator, bool)> {
    if let Some(url) = &config.auth.jwks_url {
        if config.auth.jwt_public_key.is_some() {
            anyhow::bail!("ATES_JWKS_URL and ATES_JWT_PUBLIC_KEY are both set: set one");
        }
        let jwks = Jwks::new(
            url.clone(),
            Duration::from_millis(config.auth.jwks_min_refresh_ms),
            Duration::from_secs(config.auth.jwks_max_age_secs.max(1)),
        );
        return Ok((Authenticator::jwks(jwks, config), false));
    }
    if let Some(pem) = &config.auth.jwt_public_key {
        return Ok((Authenticator::rs256(pem, config)?, false));
    }
    let (secret, generated) = auth::load_or_create_dev_secret(config)?;
    Ok((Authenticator::hs256(&secret, config), generated))
}
