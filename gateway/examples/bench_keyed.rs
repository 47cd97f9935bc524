//! What an `Idempotency-Key` costs `createTask`, on SQLite and (given a URL) PostgreSQL.
//!
//! Starts the release gateway binary on a fresh database with 100 workers and a manager, then
//! drives `createTask` from 16 clients for 10 s each way:
//! - without a key;
//! - each with a key of its own;
//! - each sent twice under one key, the second being a retry that gets the kept answer.
//!
//! Printed: requests a second, p50 and p99, per way; and that the retried tasks were made once.
//!
//! cargo run --release -p gateway --example bench_keyed -- [postgres://…/postgres] [--gateway PATH]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use support::Gateway;

const CLIENTS: usize = 16;
const SECONDS: u64 = 10;
const WORKERS: usize = 100;

#[derive(Clone, Copy)]
enum Way {
    Plain,
    Keyed,
    Retried,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Self::Plain => "without a key",
            Self::Keyed => "with a key each",
            Self::Retried => "sent twice under one key",
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut postgres = None;
    let mut gateway = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--gateway" => gateway = args.next().map(PathBuf::from),
            url if url.starts_with("postgres") => postgres = Some(url.to_owned()),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let binary = support::gateway_binary(gateway.as_deref())?;
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench("sqlite", &sqlite, &binary).await?;
    if let Some(admin) = &postgres {
        let name = format!("ates_bench_{}", uuid::Uuid::new_v4().simple());
        let url = ates_db::create_database(admin, &name).await?;
        let result = bench("postgres", &url, &binary).await;
        ates_db::drop_database(admin, &name).await?;
        result?;
    }
    Ok(())
}

async fn bench(backend: &str, url: &str, binary: &std::path::Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gateway = Gateway::start(binary, url, dir.path())?;
    let client = reqwest::Client::new();
    for i in 0..WORKERS {
        let token = support::token("worker", &format!("worker-{i}"), &format!("Worker {i}"))?;
        client
            .post(&gateway.url)
            .bearer_auth(&token)
            .json(&json!({ "query": "{ me { id } }" }))
            .send()
            .await?;
    }
    let manager = support::token("manager", "manager-0", "Manager")?;
    for way in [Way::Plain, Way::Keyed, Way::Retried] {
        let started = Instant::now();
        let until = started + Duration::from_secs(SECONDS);
        // Spawned all at once (collected), so that the clients run side by side.
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (client, url, manager) = (client.clone(), gateway.url.clone(), manager.clone());
                tokio::spawn(async move { drive(&client, &url, &manager, way, c, until).await })
            })
            .collect();
        let mut latencies = Vec::new();
        let mut mismatches = 0;
        for handle in clients {
            let (mine, wrong) = handle.await??;
            latencies.extend(mine);
            mismatches += wrong;
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort();
        let at = |q: f64| {
            latencies
                .get(((latencies.len().max(1) - 1) as f64 * q) as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "{backend}: createTask {}: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms ({} requests){}",
            way.name(),
            latencies.len() as f64 / elapsed,
            at(0.5),
            at(0.99),
            latencies.len(),
            if matches!(way, Way::Retried) {
                format!("; retries answered otherwise than the first: {mismatches}")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// One client's requests until `until`: their latencies, and how many retries got another
/// answer than their first send.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    way: Way,
    me: usize,
    until: Instant,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut latencies = Vec::new();
    let mut mismatches = 0;
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let body = json!({
            "query": "mutation($t: String!) { createTask(input: {title: $t}) { id assignee { id } } }",
            "variables": { "t": format!("Task {me}-{n}") },
        });
        let key = format!("bench-{me}-{n}-{}", uuid::Uuid::new_v4().simple());
        let send = || {
            let mut request = client.post(url).bearer_auth(token).json(&body);
            if !matches!(way, Way::Plain) {
                request = request.header("idempotency-key", key.as_str());
            }
            request.send()
        };
        let started = Instant::now();
        let first = send().await?.text().await?;
        latencies.push(started.elapsed());
        if matches!(way, Way::Retried) {
            let started = Instant::now();
            let again = send().await?.text().await?;
            latencies.push(started.elapsed());
            if again != first {
                mismatches += 1;
            }
        }
    }
    Ok((latencies, mismatches))
}
