//! Configuration from flags and `ATES_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

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

    /// Required `iss` of tokens, when set.
    #[arg(long, env = "ATES_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of tokens, when set.
    #[arg(long, env = "ATES_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// IANA zone of the business day.
    #[arg(long, env = "ATES_TIMEZONE", default_value = "UTC")]
    pub timezone: String,

    /// Database connections in the pool.
    #[arg(long, env = "ATES_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

impl Config {
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("ates.db").display()),
        }
    }

    pub fn ensure_data_dir(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create the data folder {}", self.data_dir.display()))
    }
}
