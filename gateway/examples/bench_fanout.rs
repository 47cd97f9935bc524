//! Fan-out of live assignments: 200 popugs × 5 subscriptions (1,000 in all, on 200 sockets)
//! while tasks are created at 100 per second for 30 seconds through HTTP. Reports the delay
//! from an event's commit (its `occurredAt`, taken just before the commit) to its delivery,
//! and the memory of the process (gateway and clients together: an upper bound).
//!
//! cargo run --release -p gateway --example bench_fanout -- [postgres://…/postgres]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const POPUGS: usize = 200;
const PER_POPUG: usize = 5;
const RATE: u64 = 100;
const SECONDS: u64 = 30;

#[path = "support/mod.rs"]
mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::on_fresh_database(|backend, url, dir| async move { bench(backend, &url, &dir).await })
        .await
}

fn token(role: &str, i: usize) -> anyhow::Result<String> {
    support::token(role, &format!("{role}-{i}"), &format!("{role} {i}"))
}

async fn bench(backend: &str, url: &str, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let addr = support::serve(url, data_dir, |_| {}).await?;
    let endpoint = format!("http://{addr}/graphql");
    let client = reqwest::Client::new();

    let delays: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut sockets = Vec::new();
    for i in 0..POPUGS {
        let token = token("worker", i)?;
        client
            .post(&endpoint)
            .bearer_auth(&token)
            .json(&json!({ "query": "{ me { id } }" }))
            .send()
            .await?;
        let mut ws = support::open_socket(&format!("ws://{addr}/graphql/ws"), &token).await?;
        for id in 0..PER_POPUG {
            let subscribe = json!({ "type": "subscribe", "id": id.to_string(),
                "payload": { "query": "subscription { taskAssigned { seq occurredAt } }" } });
            ws.send(Message::Text(subscribe.to_string().into())).await?;
        }
        let delays = Arc::clone(&delays);
        sockets.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let received = Utc::now();
                let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                let occurred = value["payload"]["data"]["taskAssigned"]["occurredAt"].as_str();
                if let Some(occurred) = occurred.and_then(|o| DateTime::parse_from_rfc3339(o).ok())
                {
                    let delay = (received - occurred.with_timezone(&Utc))
                        .num_microseconds()
                        .unwrap_or(0);
                    delays.lock().expect("delays").push(delay as f64 / 1000.0);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let manager = token("manager", 0)?;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut requests = Vec::new();
    for i in 0..RATE * SECONDS {
        ticker.tick().await;
        let (client, endpoint, manager) = (client.clone(), endpoint.clone(), manager.clone());
        requests.push(tokio::spawn(async move {
            let body = json!({ "query": "mutation($t: String!) { createTask(input: {title: $t}) { id } }", "variables": { "t": format!("Task {i}") } });
            client.post(&endpoint).bearer_auth(&manager).json(&body).send().await.is_ok()
        }));
    }
    let mut failed = 0;
    for request in requests {
        if !request.await.unwrap_or(false) {
            failed += 1;
        }
    }
    let producing = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let memory = |key: &str| {
        rss.lines()
            .find(|l| l.starts_with(key))
            .map(|l| l.trim_start_matches(key).trim().to_owned())
            .unwrap_or_default()
    };
    let mut delays = delays.lock().expect("delays").clone();
    delays.sort_by(f64::total_cmp);
    anyhow::ensure!(!delays.is_empty(), "nothing was delivered");
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    println!(
        "{backend}: {} subscriptions on {POPUGS} sockets, {} creations in {:.1} s ({failed} failed): \
         {} deliveries (expected {}); commit -> delivery p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         process memory (gateway + clients) VmRSS {}, VmHWM {}",
        POPUGS * PER_POPUG,
        RATE * SECONDS,
        producing.as_secs_f64(),
        delays.len(),
        RATE * SECONDS * PER_POPUG as u64,
        at(0.5),
        at(0.99),
        at(1.0),
        memory("VmRSS:"),
        memory("VmHWM:"),
    );
    for socket in sockets {
        socket.abort();
    }
    Ok(())
}
