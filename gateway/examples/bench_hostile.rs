//! Hostile load: first the time the gateway takes to refuse each of the worst queries we know
//! (alone), then 32 clients sending them back to back for 20 s while one more client asks
//! `{ me { id } }` every 20 ms; reports that client's latency.
//!
//! cargo run --release -p gateway --example bench_hostile -- [postgres://…/postgres]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

const ATTACKERS: usize = 32;
const SECONDS: u64 = 20;

#[path = "support/mod.rs"]
mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::on_fresh_database(|backend, url, dir| async move { bench(backend, &url, &dir).await })
        .await
}

fn token(role: &str, name: &str) -> anyhow::Result<String> {
    support::token(role, name, name)
}

/// The worst queries we know, each just over a limit (or cheap-looking and expensive).
fn worst() -> Vec<(&'static str, String)> {
    let mut doubling = String::from("{ ...F0 }\n");
    for i in 0..30 {
        doubling.push_str(&format!(
            "fragment F{i} on Query {{ ...F{n} ...F{n} }}\n",
            n = i + 1
        ));
    }
    doubling.push_str("fragment F30 on Query { __typename }\n");
    let of_types = (0..11).fold(String::from("name"), |inner, _| {
        format!("ofType {{ {inner} }}")
    });
    let page = "auditLog(first: 100) { edges { node { task { id title description assignFee reward \
                assignee { id name email role active } createdBy { id name email role active } } } } }";
    let unknown: String = (0..499).map(|i| format!("nope{i} ")).collect();
    let long_string = format!(
        "{{ me {{ id }} task(id: \"{}\") {{ id }} }}",
        "x".repeat(900_000)
    );
    let just_under = format!(
        "{{ me {{ id }} task(id: \"{}\") {{ id }} }}",
        "x".repeat(16 * 1024 - 40)
    );
    vec![
        ("2^30 fields through doubling fragments", doubling),
        (
            "501 fields",
            format!("{{ me {{ {} }} }}", "__typename ".repeat(500)),
        ),
        (
            "31 aliases",
            format!(
                "{{ me {{ {} }} }}",
                (0..31).map(|i| format!("a{i}: id ")).collect::<String>()
            ),
        ),
        (
            "21 root fields",
            format!("{{ {} }}", "me { id } ".repeat(21)),
        ),
        (
            "depth 16",
            format!("{{ __schema {{ types {{ fields {{ type {{ {of_types} }} }} }} }} }}"),
        ),
        (
            "complexity: three pages of pages",
            format!("{{ a: {page} b: {page} c: {page} }}"),
        ),
        ("499 unknown fields", format!("{{ {unknown} }}")),
        ("a 900 KB query", long_string),
        ("a query just under 16 KiB", just_under),
    ]
}

async fn bench(backend: &str, url: &str, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let addr = support::serve(url, data_dir, |_| {}).await?;
    let endpoint = format!("http://{addr}/graphql");
    let client = reqwest::Client::new();
    let attacker = token("worker", "attacker")?;
    let victim = token("worker", "victim")?;

    let queries = worst();
    println!("{backend}: time to refuse each worst case (best of 5, alone):");
    for (what, query) in &queries {
        let mut best = Duration::MAX;
        let mut status = 0;
        for _ in 0..5 {
            let started = Instant::now();
            let response = client
                .post(&endpoint)
                .bearer_auth(&attacker)
                .json(&json!({ "query": query }))
                .send()
                .await?;
            status = response.status().as_u16();
            response.bytes().await?;
            best = best.min(started.elapsed());
        }
        println!(
            "  {what:<40} {status}  {:>8.2} ms",
            best.as_secs_f64() * 1e3
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for i in 0..ATTACKERS {
        let (client, endpoint, attacker, stop, sent) = (
            client.clone(),
            endpoint.clone(),
            attacker.clone(),
            Arc::clone(&stop),
            Arc::clone(&sent),
        );
        let queries = queries.clone();
        handles.push(tokio::spawn(async move {
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let (_, query) = &queries[n % queries.len()];
                n += 1;
                if let Ok(response) = client
                    .post(&endpoint)
                    .bearer_auth(&attacker)
                    .json(&json!({ "query": query }))
                    .send()
                    .await
                {
                    let _ = response.bytes().await;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    while Instant::now() < deadline {
        let started = Instant::now();
        let response = client
            .post(&endpoint)
            .bearer_auth(&victim)
            .json(&json!({ "query": "{ me { id } }" }))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "me failed: {}",
            response.status()
        );
        response.bytes().await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await?;
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{backend}: {ATTACKERS} clients sent {} worst queries in {SECONDS} s ({:.0}/s); \
         `me` from another client: {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sent.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed) as f64 / SECONDS as f64,
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
