//! Configuration from flags, `ATES_*` variables and a TOML file.
//!
//! The settings come in sections (`config.limits.max_query_depth`), each a `clap::Args`
//! flattened into [`Config`]. A setting has one name everywhere: its field, its flag
//! (`--max-query-depth`), its key in the file and in `gateway config` (`max_query_depth`), and
//! its variable (`ATES_MAX_QUERY_DEPTH`), so the sections change no name a user sees.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

mod describe;
mod file;

pub use describe::redact_url;
pub use file::read_file;

/// Every setting of the gateway.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct Config {
    #[command(flatten)]
    #[serde(flatten)]
    pub server: Server,
    #[command(flatten)]
    #[serde(flatten)]
    pub database: Database,
    #[command(flatten)]
    #[serde(flatten)]
    pub auth: Auth,
    #[command(flatten)]
    #[serde(flatten)]
    pub broker: Broker,
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    #[serde(flatten)]
    pub payday: Payday,
}

/// Where and how the gateway serves, logs and stops.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
#[command(next_help_heading = "Serving")]
pub struct Server {
    /// Address to serve on.
    #[arg(long, env = "ATES_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Data folder: the default SQLite file and the development secret.
    #[arg(long, env = "ATES_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// `development` or `production`: production turns introspection and field suggestions
    /// off unless `ATES_INTROSPECTION` says otherwise.
    #[arg(long, env = "ATES_ENV", value_enum, default_value_t = Environment::Development)]
    pub env: Environment,

    /// Whether clients may introspect the schema (and get "did you mean" suggestions).
    #[arg(long, env = "ATES_INTROSPECTION", action = clap::ArgAction::Set)]
    pub introspection: Option<bool>,

    /// Serve GraphiQL to a browser at `GET /graphql`: on unless in production.
    #[arg(long, env = "ATES_GRAPHIQL", action = clap::ArgAction::Set)]
    pub graphiql: Option<bool>,

    /// `text` (for a terminal) or `json` (one JSON object per line, for a log collector).
    #[arg(long, env = "ATES_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Origins of web apps on other sites that may call the API from a browser, exact and
    /// comma-separated (`https://board.uberpopug.example`). None by default: the web app the
    /// gateway serves is on its own origin. A WebSocket from any other origin is refused.
    #[arg(long, env = "ATES_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// Record metrics, and serve them at `GET /metrics` (Prometheus text) to whoever holds
    /// `metrics_token`.
    #[arg(long, env = "ATES_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,

    /// The bearer token Prometheus sends to `GET /metrics`. Without one, `/metrics` is not
    /// served: what the gateway does is for its operators, not for whoever finds the port.
    #[arg(long, env = "ATES_METRICS_TOKEN", hide_env_values = true)]
    #[serde(serialize_with = "describe::secret")]
    pub metrics_token: Option<String>,

    /// After SIGTERM: how long `/readyz` answers 503 while requests are still taken, so that
    /// the load balancer stops sending new ones, in milliseconds.
    #[arg(long, env = "ATES_SHUTDOWN_DELAY_MS", default_value_t = 1000)]
    pub shutdown_delay_ms: u64,

    /// After SIGTERM and the delay: how long requests in flight may take to finish before
    /// the process stops anyway.
    #[arg(long, env = "ATES_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// A file holding the instant (RFC 3339) the gateway takes as now, for tests and rehearsals
    /// of a day close. Never in production.
    #[arg(long, env = "ATES_CLOCK_FILE")]
    pub clock_file: Option<PathBuf>,
}

/// The store and its connection pool.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
#[command(next_help_heading = "Database")]
pub struct Database {
    /// `postgres://…` or `sqlite://…`; a SQLite file in the data folder when unset.
    #[arg(long, env = "DATABASE_URL")]
    #[serde(serialize_with = "describe::url")]
    pub database_url: Option<String>,

    /// Database connections in the pool.
    #[arg(long, env = "ATES_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Milliseconds a request waits for a free database connection before it gets 503.
    #[arg(long, env = "ATES_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub db_acquire_timeout_ms: u64,
}

/// How tokens are verified, and who may post auth events.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
#[command(next_help_heading = "Authentication")]
pub struct Auth {
    /// HS256 secret shared with the auth service; a development secret is generated when unset.
    #[arg(long, env = "ATES_JWT_SECRET", hide_env_values = true)]
    #[serde(serialize_with = "describe::secret")]
    pub jwt_secret: Option<String>,

    /// PEM file of the auth service's RS256 public key; switches verification to RS256.
    #[arg(long, env = "ATES_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// The auth service's JWKS URL: RS256 keys chosen by the token's `kid`, fetched again in
    /// the background every `ATES_JWKS_MAX_AGE_SECS`, and when an unknown `kid` shows up (at
    /// most once per `ATES_JWKS_MIN_REFRESH_MS`).
    #[arg(long, env = "ATES_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// Least time between two fetches of the JWKS, in milliseconds.
    #[arg(long, env = "ATES_JWKS_MIN_REFRESH_MS", default_value_t = 10_000)]
    pub jwks_min_refresh_ms: u64,

    /// Age in seconds after which the JWKS is fetched again, in the background (a removed key
    /// then stops working); while fetches fail, they are retried every
    /// `ATES_JWKS_MIN_REFRESH_MS`.
    #[arg(long, env = "ATES_JWKS_MAX_AGE_SECS", default_value_t = 300)]
    pub jwks_max_age_secs: u64,

    /// Required `iss` of tokens, when set.
    #[arg(long, env = "ATES_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of tokens, when set.
    #[arg(long, env = "ATES_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Shared secret of `POST /auth/events`: the auth service signs each body with HMAC-SHA256
    /// and sends `X-Ates-Signature: sha256=<hex>`. A token with the `service` role is accepted
    /// too.
    #[arg(long, env = "ATES_AUTH_EVENTS_SECRET", hide_env_values = true)]
    #[serde(serialize_with = "describe::secret")]
    pub auth_events_secret: Option<String>,
}

/// NATS JetStream: our events out, the auth service's in.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
#[command(next_help_heading = "Broker")]
pub struct Broker {
    /// NATS server (`nats://host:4222`): our events are published to JetStream and the auth
    /// service's are consumed from it. Without it the gateway works alone.
    #[arg(long, env = "ATES_NATS_URL")]
    #[serde(serialize_with = "describe::url")]
    pub nats_url: Option<String>,

    /// JetStream stream our events are published to (created when missing).
    #[arg(long, env = "ATES_NATS_STREAM", default_value = "ATES")]
    pub nats_stream: String,

    /// First token of our subjects: `<prefix>.<event type>.v<version>`.
    #[arg(long, env = "ATES_NATS_SUBJECT_PREFIX", default_value = "ates")]
    pub nats_subject_prefix: String,

    /// Subject the auth service publishes Popug Data Updated on.
    #[arg(long, env = "ATES_NATS_AUTH_SUBJECT", default_value = "auth.popug.>")]
    pub nats_auth_subject: String,

    /// Stream holding the auth subject; created when no stream captures it.
    #[arg(long, env = "ATES_NATS_AUTH_STREAM", default_value = "AUTH_POPUGS")]
    pub nats_auth_stream: String,

    /// Durable consumer name the replicas share on the auth stream.
    #[arg(long, env = "ATES_NATS_DURABLE", default_value = "ates-gateway")]
    pub nats_durable: String,
}

/// Bounds on what one client may send or hold.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
#[command(next_help_heading = "Limits")]
pub struct Limits {
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "ATES_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Longest query text accepted, in bytes (variables are not counted).
    #[arg(long, env = "ATES_MAX_QUERY_BYTES", default_value_t = 16 * 1024)]
    pub max_query_bytes: usize,

    /// Deepest selection a query may have.
    #[arg(long, env = "ATES_MAX_QUERY_DEPTH", default_value_t = 15)]
    pub max_query_depth: usize,

    /// Largest query complexity: fields, weighted by `first` of the pages they sit in.
    #[arg(long, env = "ATES_MAX_QUERY_COMPLEXITY", default_value_t = 5000)]
    pub max_query_complexity: usize,

    /// Aliases a query may use (fragments expanded).
    #[arg(long, env = "ATES_MAX_ALIASES", default_value_t = 30)]
    pub max_aliases: u64,

    /// Fields at the root of an operation.
    #[arg(long, env = "ATES_MAX_ROOT_FIELDS", default_value_t = 20)]
    pub max_root_fields: u64,

    /// Fields a query may select, fragments expanded and `__typename` counted.
    #[arg(long, env = "ATES_MAX_FIELDS", default_value_t = 500)]
    pub max_fields: u64,

    /// Accept a JSON array of requests in one POST.
    #[arg(long, env = "ATES_ALLOW_BATCH", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_batch: bool,

    /// Query texts kept for automatic persisted queries (the least recently used go first);
    /// 0 switches them off.
    #[arg(long, env = "ATES_PERSISTED_QUERIES", default_value_t = 1000)]
    pub persisted_queries: usize,

    /// CSV exports that may run at once (each holds a database connection while it streams);
    /// another gets 503 until one ends.
    #[arg(long, env = "ATES_MAX_EXPORTS", default_value_t = 2)]
    pub max_exports: usize,

    /// Seconds an `Idempotency-Key` and the answer it got are kept, for retries; then it is
    /// forgotten and may be used again.
    #[arg(long, env = "ATES_IDEMPOTENCY_KEEP_SECS", default_value_t = 24 * 60 * 60)]
    pub idempotency_keep_secs: u64,

    /// Seconds one request may run before it is stopped with 503.
    #[arg(long, env = "ATES_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Seconds a client has to send a request's headers, counted from the connection's start
    /// or the end of its previous answer; then the connection is closed. An idle connection is
    /// closed after as long.
    #[arg(long, env = "ATES_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Seconds a client has to send a request's whole body once its headers arrived; then it
    /// gets 408.
    #[arg(long, env = "ATES_BODY_TIMEOUT_SECS", default_value_t = 20)]
    pub body_timeout_secs: u64,

    /// Connections one client address may hold open at once; more are closed as they arrive.
    #[arg(long, env = "ATES_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    pub max_connections_per_address: usize,

    /// Mutations one popug may send per second (as many in a burst); 0: unlimited.
    #[arg(long, env = "ATES_MUTATIONS_PER_SECOND", default_value_t = 20)]
    pub mutations_per_second: u32,

    /// Complexity one popug's documents may cost per second together (with a burst of two
    /// documents at the limit); one that would overspend waits up to 2 s, then is refused with
    /// `RATE_LIMITED`. A document refused before it runs spends 100. 0: unpaced.
    #[arg(long, env = "ATES_COMPLEXITY_PER_SECOND", default_value_t = 5_000)]
    pub complexity_per_second: u64,

    /// GraphQL requests without a valid token a replica takes per second, all such clients
    /// together (as many in a burst); more wait up to 1 s, then are refused with 429
    /// `RATE_LIMITED`. Popugs with a token are never held by strangers. 0: unpaced.
    #[arg(long, env = "ATES_ANONYMOUS_PER_SECOND", default_value_t = 50)]
    pub anonymous_per_second: u64,

    /// Turns of each popug: requests (and queries and mutations over WebSocket) take a share of
    /// them by their complexity against `ATES_MAX_QUERY_COMPLEXITY` (at least one, all of them
    /// at the limit), so this many light requests run at once and the heaviest one at a time;
    /// the others wait for their turns, within their time limit.
    #[arg(long, env = "ATES_REQUESTS_PER_POPUG", default_value_t = 4)]
    pub requests_per_popug: usize,

    /// Seconds a WebSocket may take to send `connection_init`.
    #[arg(long, env = "ATES_WS_INIT_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_init_timeout_secs: u64,

    /// Subscriptions one WebSocket may hold.
    #[arg(long, env = "ATES_WS_MAX_SUBSCRIPTIONS", default_value_t = 20)]
    pub ws_max_subscriptions: usize,

    /// Events a subscriber may fall behind before it is told to resume.
    #[arg(long, env = "ATES_FEED_CAPACITY", default_value_t = 4096)]
    pub feed_capacity: usize,
}

/// The business day, the ledger, the day close and the delivery of payouts and mail.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
#[command(next_help_heading = "Accounting and payday")]
pub struct Payday {
    /// IANA zone of the business day.
    #[arg(long, env = "ATES_TIMEZONE", default_value = "UTC")]
    pub timezone: String,

    /// Outbox events accounting applies per transaction; 0 chooses by backend (5000 on
    /// PostgreSQL, 1000 on SQLite, whose one writer waits for each batch).
    #[arg(long, env = "ATES_LEDGER_BATCH", default_value_t = 0)]
    pub ledger_batch: i64,

    /// Seconds between the day-close scheduler's looks at the calendar.
    #[arg(long, env = "ATES_CLOSE_CHECK_SECS", default_value_t = 30)]
    pub close_check_secs: u64,

    /// Popugs paid per transaction when a day closes.
    #[arg(long, env = "ATES_CLOSE_BATCH", default_value_t = 1000)]
    pub close_batch: i64,

    /// Where payouts are sent (HTTP POST, the payout id as `Idempotency-Key`), `https://…`; with
    /// none, the company's own ledger records them as paid. Plain `http://` is refused in
    /// production unless `ATES_ALLOW_PLAINTEXT` allows it.
    #[arg(long, env = "ATES_PAYMENT_URL")]
    #[serde(serialize_with = "describe::url")]
    pub payment_url: Option<String>,

    /// Seconds the payment system has to answer one request.
    #[arg(long, env = "ATES_PAYMENT_TIMEOUT_SECS", default_value_t = 10)]
    pub payment_timeout_secs: u64,

    /// Attempts at a payout or a mail before it is marked FAILED.
    #[arg(long, env = "ATES_DELIVERY_MAX_ATTEMPTS", default_value_t = 8)]
    pub delivery_max_attempts: i64,

    /// Wait after a first failed delivery, in milliseconds; it doubles with each further one
    /// (at most an hour).
    #[arg(long, env = "ATES_DELIVERY_BACKOFF_MS", default_value_t = 2000)]
    pub delivery_backoff_ms: u64,

    /// SMTP server, `host` or `host:port`; with none, mail is kept in the mailbox that admins
    /// read through GraphQL.
    #[arg(long, env = "ATES_SMTP")]
    pub smtp: Option<String>,

    /// How mail reaches the SMTP server: `starttls` (port 587 unless given; the server must
    /// offer STARTTLS), `tls` (TLS from the first byte, port 465), or `none` (plain SMTP, port
    /// 25: a relay on a trusted network, refused in production unless `ATES_ALLOW_PLAINTEXT`).
    #[arg(long, env = "ATES_SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub smtp_tls: SmtpTls,

    /// PEM file of certificates to trust, besides the system's, when talking TLS to the
    /// payment system and the SMTP server: the company's own CA.
    #[arg(long, env = "ATES_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,

    /// With `ATES_ENV=production`, allow a plain `http://` payment system and plain SMTP, which
    /// are refused otherwise.
    #[arg(long, env = "ATES_ALLOW_PLAINTEXT", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_plaintext: bool,

    /// Sender of the mail to popugs.
    #[arg(
        long,
        env = "ATES_MAIL_FROM",
        default_value = "aTES accounting <accounting@uberpopug.example>"
    )]
    pub mail_from: String,
}

/// How mail reaches the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP, upgraded with STARTTLS before anything is sent; a server that does not
    /// offer it is refused.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// Plain SMTP.
    None,
}

impl SmtpTls {
    /// The port of the kind of server, when `ATES_SMTP` names none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Starttls => 587,
            Self::Tls => 465,
            Self::None => 25,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

/// An origin as a browser sends it: `http` or `https`, a host, maybe a port, and nothing after.
fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or("an origin starts with https:// or http://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '*', ' ', '@']) {
        return Err(format!(
            "`{text}` is not an origin: a scheme and a host (and a port), with no path or wildcard"
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// Parses flags and `ATES_*` variables alone, for `Config::defaults`.
#[derive(clap::Parser)]
struct Standalone {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// The configuration with every default, as an empty command line gives it (variables of
    /// the environment still apply).
    pub fn defaults() -> anyhow::Result<Self> {
        use clap::Parser as _;
        Ok(Standalone::try_parse_from(["gateway"])?.config)
    }

    pub fn database_url(&self) -> String {
        match &self.database.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}",
                self.server.data_dir.join("ates.db").display()
            ),
        }
    }

    /// Introspection and suggestions: as configured, else on except in production.
    pub fn introspection_enabled(&self) -> bool {
        self.server
            .introspection
            .unwrap_or(self.server.env == Environment::Development)
    }

    /// GraphiQL for browsers: as configured, else on except in production.
    pub fn graphiql_enabled(&self) -> bool {
        self.server
            .graphiql
            .unwrap_or(self.server.env == Environment::Development)
    }

    /// Why this configuration may not run in production, one line a reason; empty when it may
    /// (or when it is not meant for production).
    pub fn production_refusals(&self) -> Vec<String> {
        if self.server.env != Environment::Production {
            return Vec::new();
        }
        let mut refusals = Vec::new();
        let keyed = self.auth.jwt_secret.is_some()
            || self.auth.jwt_public_key.is_some()
            || self.auth.jwks_url.is_some();
        if !keyed {
            refusals.push(
                "no way to verify tokens: set ATES_JWT_SECRET, ATES_JWT_PUBLIC_KEY or \
                 ATES_JWKS_URL (production never generates a development secret)"
                    .to_owned(),
            );
        }
        if self.auth.jwt_secret.as_deref().is_some_and(str::is_empty) {
            refusals.push("ATES_JWT_SECRET is empty".to_owned());
        }
        if self.server.clock_file.is_some() {
            refusals.push(
                "ATES_CLOCK_FILE is set: whoever can write that file would decide when days \
                 close and pay out; production reads the system clock"
                    .to_owned(),
            );
        }
        refusals
    }

    /// The data folder, created readable by its owner only when it is new.
    pub fn ensure_data_dir(&self) -> anyhow::Result<()> {
        let folder = &self.server.data_dir;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(folder)
            .with_context(|| format!("cannot create the data folder {}", folder.display()))
    }
}
