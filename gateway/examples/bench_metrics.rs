//! What recording metrics costs a request, and what a scrape costs.
//!
//! Two gateways on one database, one with `ATES_METRICS` on and one with it off, take
//! `query Me { me { id } }` over HTTP (keep-alive, one client at a time) in alternating rounds
//! of 1,000, 10 rounds each; reported are the mean and percentiles of each. Then 200 scrapes of
//! `/metrics` after that traffic.
//!
//! cargo run --release -p gateway --example bench_metrics -- [postgres://…/postgres]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

const ROUNDS: usize = 10;
const PER_ROUND: usize = 1000;
const SCRAPES: usize = 200;

#[path = "support/mod.rs"]
mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::on_fresh_database(|backend, url, dir| async move { bench(backend, &url, &dir).await })
        .await
}

async fn round(
    client: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    took: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    let body = json!({ "query": "query Me { me { id } }", "operationName": "Me" });
    for _ in 0..PER_ROUND {
        let started = Instant::now();
        let response = client
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success());
        response.bytes().await?;
        took.push(started.elapsed());
    }
    Ok(())
}

fn summary(took: &mut [Duration]) -> String {
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    let mean = took.iter().sum::<Duration>() / took.len() as u32;
    format!(
        "mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs",
        mean.as_secs_f64() * 1e6,
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    )
}

/// The bearer token the scrapes send.
const SCRAPE_TOKEN: &str = "bench-scrape";

async fn bench(backend: &str, url: &str, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let with = support::serve(url, data_dir, |config| {
        config.limits.mutations_per_second = 0;
        config.server.metrics_token = Some(SCRAPE_TOKEN.into());
    })
    .await?;
    let without = support::serve(url, data_dir, |config| {
        config.limits.mutations_per_second = 0;
        config.server.metrics = false;
    })
    .await?;
    let token = support::token("worker", "bench", "bench")?;
    let client = reqwest::Client::new();
    // Warm both: connections, the popug replica, caches.
    let (mut warm, mut on, mut off) = (Vec::new(), Vec::new(), Vec::new());
    round(&client, with, &token, &mut warm).await?;
    round(&client, without, &token, &mut warm).await?;
    for _ in 0..ROUNDS {
        round(&client, with, &token, &mut on).await?;
        round(&client, without, &token, &mut off).await?;
    }
    println!("{backend}: metrics on:  {}", summary(&mut on));
    println!("{backend}: metrics off: {}", summary(&mut off));

    let mut scrapes = Vec::new();
    let mut size = 0;
    for _ in 0..SCRAPES {
        let started = Instant::now();
        let text = client
            .get(format!("http://{with}/metrics"))
            .bearer_auth(SCRAPE_TOKEN)
            .send()
            .await?
            .text()
            .await?;
        scrapes.push(started.elapsed());
        size = text.len();
    }
    println!(
        "{backend}: one scrape of /metrics ({size} bytes): {}",
        summary(&mut scrapes)
    );
    Ok(())
}
