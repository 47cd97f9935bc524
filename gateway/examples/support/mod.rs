//! What the gateway's benchmarks share: a fresh database on the backend the command line names
//! (`postgres://…/postgres` as the first argument: a new database on that server; none: a
//! SQLite file in a temporary folder), removed again when the run ends; a gateway serving it
//! on a port of its own; and tokens it accepts.

// Each bench includes this module and uses part of it.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use chrono::Utc;
use gateway::{App, Config};
use serde_json::json;

/// The HS256 secret of the benchmarks' gateways.
pub const SECRET: &str = "bench-secret";

/// A token for popug `sub`, named `name`, with `role`, valid for an hour.
pub fn token(role: &str, sub: &str, name: &str) -> anyhow::Result<String> {
    let now = Utc::now().timestamp();
    let claims = json!({ "sub": sub, "name": name, "role": role, "iat": now, "exp": now + 3600 });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )?)
}

/// A client's WebSocket.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `graphql-transport-ws` socket to `url` (`ws://…/graphql/ws`), initialised with `token`
/// and acknowledged.
pub async fn open_socket(url: &str, token: &str) -> anyhow::Result<Socket> {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    ws.send(Message::Text(init.to_string().into())).await?;
    let ack = ws.next().await.ok_or_else(|| anyhow::anyhow!("no ack"))??;
    anyhow::ensure!(ack.to_text()?.contains("connection_ack"), "refused: {ack}");
    Ok(ws)
}

/// Starts a gateway on `url` (configured as `adjust` says) on 127.0.0.1:0; its address.
pub async fn serve(
    url: &str,
    data_dir: &Path,
    adjust: impl FnOnce(&mut Config),
) -> anyhow::Result<SocketAddr> {
    let mut config = Config::defaults()?;
    config.database.database_url = Some(url.to_owned());
    config.server.data_dir = data_dir.to_path_buf();
    config.auth.jwt_secret = Some(SECRET.into());
    adjust(&mut config);
    let app = App::build(&config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = app.router();
    // Every load generator here is one address.
    let connections = gateway::ConnectionLimits {
        per_address: usize::MAX,
        ..app.connections
    };
    tokio::spawn(gateway::serve(
        listener,
        router,
        connections,
        std::future::pending(),
    ));
    Ok(addr)
}

/// Runs `bench(backend, url, data_dir)` on a fresh database, then drops it (PostgreSQL).
pub async fn on_fresh_database<F, Fut>(bench: F) -> anyhow::Result<()>
where
    F: FnOnce(&'static str, String, PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let dir = tempfile::tempdir()?;
    let admin_url = std::env::args().nth(1);
    let name = format!("ates_bench_{}", uuid::Uuid::new_v4().simple());
    let (backend, url) = match &admin_url {
        Some(admin_url) => (
            "postgres",
            ates_db::create_database(admin_url, &name).await?,
        ),
        None => (
            "sqlite",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        ),
    };
    let result = bench(backend, url, dir.path().to_path_buf()).await;
    if let Some(admin_url) = &admin_url {
        ates_db::drop_database(admin_url, &name).await?;
    }
    result
}

/// The gateway binary to run: the one given (another build, to compare), or this checkout's
/// release build.
pub fn gateway_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(path) => Ok(path.to_path_buf()),
        None => build_gateway(),
    }
}

/// Builds this checkout's release gateway (the example alone does not build the binary).
pub fn build_gateway() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "gateway",
            "--bin",
            "gateway",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "building the gateway failed");
    let exe = std::env::current_exe()?;
    // target/release/examples/<bench> → target/release/gateway
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("no target folder above {}", exe.display()))?;
    Ok(release.join("gateway"))
}

/// The gateway process.
pub struct Gateway {
    pub child: Child,
    /// Its GraphQL endpoint.
    pub url: String,
}

impl Gateway {
    pub fn start(binary: &Path, database_url: &str, data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(binary, database_url, data_dir, &[])
    }

    /// Starts the gateway with more settings in its environment.
    pub fn start_with(
        binary: &Path,
        database_url: &str,
        data_dir: &Path,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .env("DATABASE_URL", database_url)
            .env("ATES_LISTEN", "127.0.0.1:0")
            .env("ATES_DATA_DIR", data_dir)
            .env("ATES_JWT_SECRET", SECRET)
            .env("ATES_MUTATIONS_PER_SECOND", "0")
            .env("ATES_METRICS", "false")
            // Its log filter is `BENCH_LOG` (errors only without it), so that the gateway's
            // logs can be read after a run without the bench's own filter.
            .env(
                "RUST_LOG",
                std::env::var("BENCH_LOG").unwrap_or_else(|_| "error".into()),
            )
            .envs(settings.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .ok_or_else(|| anyhow::anyhow!("the gateway stopped before it served"))??;
            if let Some(address) = line.strip_prefix("aTES gateway on ") {
                break format!("{address}/graphql");
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self { child, url })
    }

    /// Resident memory, in MB.
    pub fn rss_mb(&self) -> f64 {
        rss_mb_of(self.child.id())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident memory of process `pid`, in MB (0 when it cannot be read).
pub fn rss_mb_of(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
