//! Configuration from flags and `ATES_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

mod file;

pub use file::read_file;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// `postgres://…` or `sqlite://…`; a SQLite file in the data folder when unset.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Address to serve on.
    #[arg(long, env = "ATES_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Data folder: the default SQLite file and the development secret.
    #[arg(long, env = "ATES_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// HS256 secret shared with the auth service; a development secret is generated when unset.
    #[arg(long, env = "ATES_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file of the auth service's RS256 public key; switches verification to RS256.
    #[arg(long, env = "ATES_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// The auth service's JWKS URL: RS256 keys chosen by the token's `kid`, refreshed when an
    /// unknown `kid` shows up (at most once per `ATES_JWKS_MIN_REFRESH_MS`) and when they are
    /// older than `ATES_JWKS_MAX_AGE_SECS`.
    #[arg(long, env = "ATES_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// Least time between two fetches of the JWKS, in milliseconds.
    #[arg(long, env = "ATES_JWKS_MIN_REFRESH_MS", default_value_t = 10_000)]
    pub jwks_min_refresh_ms: u64,

    /// Age in seconds after which the JWKS is fetched again (a removed key then stops working).
    #[arg(long, env = "ATES_JWKS_MAX_AGE_SECS", default_value_t = 300)]
    pub jwks_max_age_secs: u64,

    /// Shared secret of `POST /auth/events`: the auth service signs each body with HMAC-SHA256
    /// and sends `X-Ates-Signature: sha256=<hex>`. A token with the `service` role is accepted
    /// too.
    #[arg(long, env = "ATES_AUTH_EVENTS_SECRET", hide_env_values = true)]
    pub auth_events_secret: Option<String>,

    /// NATS server (`nats://host:4222`): our events are published to JetStream and the auth
    /// service's are consumed from it. Without it the gateway works alone.
    #[arg(long, env = "ATES_NATS_URL")]
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

    /// Required `iss` of tokens, when set.
    #[arg(long, env = "ATES_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of tokens, when set.
    #[arg(long, env = "ATES_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// IANA zone of the business day.
    #[arg(long, env = "ATES_TIMEZONE", default_value = "UTC")]
    pub timezone: String,

    /// Seconds a WebSocket may take to send `connection_init`.
    #[arg(long, env = "ATES_WS_INIT_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_init_timeout_secs: u64,

    /// Subscriptions one WebSocket may hold.
    #[arg(long, env = "ATES_WS_MAX_SUBSCRIPTIONS", default_value_t = 20)]
    pub ws_max_subscriptions: usize,

    /// Events a subscriber may fall behind before it is told to resume.
    #[arg(long, env = "ATES_FEED_CAPACITY", default_value_t = 4096)]
    pub feed_capacity: usize,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "ATES_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Deepest selection a query may have.
    #[arg(long, env = "ATES_MAX_QUERY_DEPTH", default_value_t = 15)]
    pub max_query_depth: usize,

    /// Largest query complexity: fields, weighted by `first` of the pages they sit in.
    #[arg(long, env = "ATES_MAX_QUERY_COMPLEXITY", default_value_t = 5000)]
    pub max_query_complexity: usize,

    /// Database connections in the pool.
    #[arg(long, env = "ATES_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Milliseconds a request waits for a free database connection before it gets 503.
    #[arg(long, env = "ATES_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub db_acquire_timeout_ms: u64,

    /// `development` or `production`: production turns introspection and field suggestions
    /// off unless `ATES_INTROSPECTION` says otherwise.
    #[arg(long, env = "ATES_ENV", value_enum, default_value_t = Environment::Development)]
    pub env: Environment,

    /// Whether clients may introspect the schema (and get "did you mean" suggestions).
    #[arg(long, env = "ATES_INTROSPECTION", action = clap::ArgAction::Set)]
    pub introspection: Option<bool>,

    /// Longest query text accepted, in bytes (variables are not counted).
    #[arg(long, env = "ATES_MAX_QUERY_BYTES", default_value_t = 16 * 1024)]
    pub max_query_bytes: usize,

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

    /// Seconds one request may run before it is stopped with 503.
    #[arg(long, env = "ATES_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Mutations one popug may send per second (as many in a burst); 0: unlimited.
    #[arg(long, env = "ATES_MUTATIONS_PER_SECOND", default_value_t = 20)]
    pub mutations_per_second: u32,

    /// Seconds between the day-close scheduler's looks at the calendar.
    #[arg(long, env = "ATES_CLOSE_CHECK_SECS", default_value_t = 30)]
    pub close_check_secs: u64,

    /// Popugs paid per transaction when a day closes.
    #[arg(long, env = "ATES_CLOSE_BATCH", default_value_t = 1000)]
    pub close_batch: i64,

    /// Outbox events accounting applies per transaction; 0 chooses by backend (5000 on
    /// PostgreSQL, 1000 on SQLite, whose one writer waits for each batch).
    #[arg(long, env = "ATES_LEDGER_BATCH", default_value_t = 0)]
    pub ledger_batch: i64,

    /// Where payouts are sent (HTTP POST, the payout id as `Idempotency-Key`); with none, the
    /// company's own ledger records them as paid.
    #[arg(long, env = "ATES_PAYMENT_URL")]
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

    /// SMTP server (`host` or `host:port`, plain SMTP on a trusted network); with none, mail is
    /// kept in the mailbox that admins read through GraphQL.
    #[arg(long, env = "ATES_SMTP")]
    pub smtp: Option<String>,

    /// Sender of the mail to popugs.
    #[arg(
        long,
        env = "ATES_MAIL_FROM",
        default_value = "aTES accounting <accounting@uberpopug.example>"
    )]
    pub mail_from: String,

    /// Serve `GET /metrics` (Prometheus text) and record what it shows.
    #[arg(long, env = "ATES_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,

    /// `text` (for a terminal) or `json` (one JSON object per line, for a log collector).
    #[arg(long, env = "ATES_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    Development,
    Production,
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
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("ates.db").display()),
        }
    }

    /// The effective settings, one `key = value` line each, with secrets redacted.
    pub fn describe(&self) -> String {
        let secret = |set: bool| {
            if set {
                "<redacted>"
            } else {
                "<unset: a development secret>"
            }
        };
        let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "<unset>".into());
        let lines = [
            ("database_url", redact_url(&self.database_url())),
            ("listen", self.listen.to_string()),
            ("data_dir", self.data_dir.display().to_string()),
            ("jwt_secret", secret(self.jwt_secret.is_some()).to_owned()),
            (
                "jwt_public_key",
                self.jwt_public_key
                    .as_ref()
                    .map_or_else(|| "<unset>".into(), |p| p.display().to_string()),
            ),
            ("jwks_url", optional(&self.jwks_url)),
            ("jwks_min_refresh_ms", self.jwks_min_refresh_ms.to_string()),
            ("jwks_max_age_secs", self.jwks_max_age_secs.to_string()),
            (
                "auth_events_secret",
                if self.auth_events_secret.is_some() {
                    "<redacted>"
                } else {
                    "<unset: only service tokens may post auth events>"
                }
                .to_owned(),
            ),
            (
                "nats_url",
                self.nats_url
                    .as_deref()
                    .map_or_else(|| "<unset: no broker>".into(), redact_url),
            ),
            ("nats_stream", self.nats_stream.clone()),
            ("nats_subject_prefix", self.nats_subject_prefix.clone()),
            ("nats_auth_subject", self.nats_auth_subject.clone()),
            ("nats_auth_stream", self.nats_auth_stream.clone()),
            ("nats_durable", self.nats_durable.clone()),
            ("jwt_issuer", optional(&self.jwt_issuer)),
            ("jwt_audience", optional(&self.jwt_audience)),
            ("timezone", self.timezone.clone()),
            ("max_body_bytes", self.max_body_bytes.to_string()),
            ("max_query_depth", self.max_query_depth.to_string()),
            (
                "max_query_complexity",
                self.max_query_complexity.to_string(),
            ),
            (
                "ws_init_timeout_secs",
                self.ws_init_timeout_secs.to_string(),
            ),
            (
                "ws_max_subscriptions",
                self.ws_max_subscriptions.to_string(),
            ),
            ("feed_capacity", self.feed_capacity.to_string()),
            ("db_max_connections", self.db_max_connections.to_string()),
            (
                "db_acquire_timeout_ms",
                self.db_acquire_timeout_ms.to_string(),
            ),
            ("env", format!("{:?}", self.env).to_lowercase()),
            ("introspection", self.introspection_enabled().to_string()),
            ("max_query_bytes", self.max_query_bytes.to_string()),
            ("max_aliases", self.max_aliases.to_string()),
            ("max_root_fields", self.max_root_fields.to_string()),
            ("max_fields", self.max_fields.to_string()),
            ("allow_batch", self.allow_batch.to_string()),
            (
                "request_timeout_secs",
                self.request_timeout_secs.to_string(),
            ),
            (
                "mutations_per_second",
                self.mutations_per_second.to_string(),
            ),
            ("close_check_secs", self.close_check_secs.to_string()),
            ("close_batch", self.close_batch.to_string()),
            ("ledger_batch", self.ledger_batch.to_string()),
            (
                "payment_url",
                self.payment_url.as_deref().map_or_else(
                    || "<unset: payouts are settled by the ledger>".into(),
                    redact_url,
                ),
            ),
            (
                "payment_timeout_secs",
                self.payment_timeout_secs.to_string(),
            ),
            (
                "delivery_max_attempts",
                self.delivery_max_attempts.to_string(),
            ),
            ("delivery_backoff_ms", self.delivery_backoff_ms.to_string()),
            (
                "smtp",
                self.smtp
                    .clone()
                    .unwrap_or_else(|| "<unset: mail is kept in the mailbox>".into()),
            ),
            ("mail_from", self.mail_from.clone()),
            ("metrics", self.metrics.to_string()),
            (
                "log_format",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            ("shutdown_delay_ms", self.shutdown_delay_ms.to_string()),
            ("shutdown_grace_secs", self.shutdown_grace_secs.to_string()),
            (
                "clock_file",
                self.clock_file.as_ref().map_or_else(
                    || "<unset: the system clock>".into(),
                    |p| p.display().to_string(),
                ),
            ),
        ];
        lines
            .iter()
            .map(|(key, value)| format!("{key} = {value:?}\n"))
            .collect()
    }

    /// Introspection and suggestions: as configured, else on except in production.
    pub fn introspection_enabled(&self) -> bool {
        self.introspection
            .unwrap_or(self.env == Environment::Development)
    }

    pub fn ensure_data_dir(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create the data folder {}", self.data_dir.display()))
    }
}

/// A database URL without its password.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_owned(),
    }
}
