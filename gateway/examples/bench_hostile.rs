//! Hostile load against the release gateway in a process of its own, on 2,000 tasks shuffled
//! ten times (every open task with a history of eleven moves), 52 workers.
//!
//! A quiet worker asks for its open tasks every 40 ms, first alone, then while 16 anonymous
//! clients send nesting bombs back to back, then while one worker sends the heaviest document
//! the limits accept, eight at a time: its p50 and p99 in each phase, and the ratio of each p99
//! to the quiet one. Then the time the gateway takes to refuse each of the worst queries we know
//! (alone), and 32 clients sending them back to back while another asks `{ me { id } }`.
//!
//! cargo run --release -p gateway --example bench_hostile -- [postgres://…/postgres]
//!
//! The gateway inherits this process's environment, so settings can be compared:
//! `ATES_REQUESTS_PER_POPUG=1 cargo run … --example bench_hostile`. Its logs are filtered by
//! `BENCH_LOG`: `BENCH_LOG=info,sqlx::query=debug ATES_LOG_FORMAT=json` gives each request's
//! time (µs) and each statement's, by request id.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

const ATTACKERS: usize = 32;
const SECONDS: u64 = 20;
const TASKS: usize = 2_000;
const WORKERS: usize = 52;
const SHUFFLES: usize = 10;
/// How long the quiet worker is measured in each phase.
const PHASE: Duration = Duration::from_secs(20);
const BOMBERS: usize = 16;
/// Between two of the quiet worker's requests: about 25 a second, 3,500 in complexity, within
/// its budget of 5,000 (`ATES_COMPLEXITY_PER_SECOND`), so that it is measured, not paced.
const QUIET_PAUSE: Duration = Duration::from_millis(40);
const HEAVY_AT_ONCE: usize = 8;
const MY_TASKS: &str =
    "{ myTasks(status: OPEN, first: 20) { nodes { id title status assignFee reward createdAt } } }";

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

/// A GraphQL request's answer; an error when it is not a success without errors.
async fn post(
    client: &reqwest::Client,
    endpoint: &str,
    token: Option<&str>,
    query: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut request = client.post(endpoint).json(&json!({ "query": query }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    anyhow::ensure!(
        status.is_success() && body.get("errors").is_none(),
        "{status}: {body}"
    );
    Ok(body)
}

/// Latencies in ms: p50, p99, max.
fn spread(mut latencies: Vec<f64>) -> (f64, f64, f64) {
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

/// The quiet worker's latencies while `load` runs (sent until `stop` is set); how many the load
/// sent. The quiet worker runs on a thread and a runtime of its own, as it would on a machine of
/// its own: the load's tasks never stand between it and its answers in this process.
async fn measured<F>(endpoint: &str, victim: &str, load: F) -> anyhow::Result<(Vec<f64>, u64)>
where
    F: FnOnce(Arc<AtomicBool>, Arc<AtomicU64>) -> Vec<tokio::task::JoinHandle<()>>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let handles = load(Arc::clone(&stop), Arc::clone(&sent));
    // The load's own start-up is not measured.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counted = sent.load(Ordering::Relaxed);
    let (endpoint, victim) = (endpoint.to_owned(), victim.to_owned());
    let quiet = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let client = reqwest::Client::new();
            let mut latencies = Vec::new();
            let deadline = Instant::now() + PHASE;
            while Instant::now() < deadline {
                let started = Instant::now();
                post(&client, &endpoint, Some(&victim), MY_TASKS).await?;
                latencies.push(started.elapsed().as_secs_f64() * 1e3);
                tokio::time::sleep(QUIET_PAUSE).await;
            }
            anyhow::Ok(latencies)
        })
    });
    while !quiet.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latencies = quiet
        .join()
        .map_err(|_| anyhow::anyhow!("the quiet worker panicked"))??;
    let sent = sent.load(Ordering::Relaxed) - counted;
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await?;
    }
    Ok((latencies, sent))
}

/// `clients` tasks sending `query` (as `token`, or anonymous) back to back until stopped.
fn flood(
    client: &reqwest::Client,
    endpoint: &str,
    token: Option<&str>,
    query: &str,
    clients: usize,
    stop: &Arc<AtomicBool>,
    sent: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let (client, endpoint, stop, sent) = (
                client.clone(),
                endpoint.to_owned(),
                Arc::clone(stop),
                Arc::clone(sent),
            );
            let (token, query) = (token.map(str::to_owned), query.to_owned());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut request = client.post(&endpoint).json(&json!({ "query": query }));
                    if let Some(token) = &token {
                        request = request.bearer_auth(token);
                    }
                    if let Ok(response) = request.send().await {
                        let _ = response.bytes().await;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

/// 2,000 tasks among 52 workers, shuffled ten times.
async fn seed(client: &reqwest::Client, endpoint: &str) -> anyhow::Result<()> {
    for i in 0..WORKERS {
        let worker = token("worker", &format!("worker-{i}"))?;
        post(client, endpoint, Some(&worker), "{ me { id } }").await?;
    }
    for who in ["attacker", "victim"] {
        post(
            client,
            endpoint,
            Some(&token("worker", who)?),
            "{ me { id } }",
        )
        .await?;
    }
    let manager = token("manager", "manager")?;
    let creators: Vec<_> = (0..16)
        .map(|c| {
            let (client, endpoint, manager) =
                (client.clone(), endpoint.to_owned(), manager.clone());
            tokio::spawn(async move {
                for i in (c..TASKS).step_by(16) {
                    let create = format!(
                        "mutation {{ createTask(input: {{title: \"Task {i}\", description: \"A task to shuffle\"}}) {{ id }} }}"
                    );
                    post(&client, &endpoint, Some(&manager), &create).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for creator in creators {
        creator.await??;
    }
    for _ in 0..SHUFFLES {
        post(
            client,
            endpoint,
            Some(&manager),
            "mutation { shuffleTasks { reassigned } }",
        )
        .await?;
    }
    Ok(())
}

/// The answer to `query` when the limits accept it, waiting for the attacker's complexity
/// budget (`ATES_COMPLEXITY_PER_SECOND`) when it runs out.
async fn accepted(
    client: &reqwest::Client,
    endpoint: &str,
    attacker: &str,
    query: &str,
) -> anyhow::Result<Option<serde_json::Value>> {
    loop {
        match post(client, endpoint, Some(attacker), query).await {
            Ok(body) => return Ok(Some(body)),
            Err(error) if error.to_string().contains("RATE_LIMITED") => {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Err(_) => return Ok(None),
        }
    }
}

/// The document the limits accept that answers the most: aliased pages of tasks with their
/// histories, the largest that passes, and its answer's size.
async fn heaviest_accepted(
    client: &reqwest::Client,
    endpoint: &str,
    attacker: &str,
) -> anyhow::Result<(String, usize)> {
    let mut best = (String::new(), 0);
    for aliases in [1, 2, 4, 8] {
        for first in [10, 20, 50, 100] {
            for last in [10, 50] {
                let page = format!(
                    "tasks(first: {first}) {{ nodes {{ id title description assignFee reward \
                     assignee {{ name }} history(last: {last}) {{ move fee reward loggedAt \
                     assignee {{ name }} previousAssignee {{ name }} }} }} }}"
                );
                let query = format!(
                    "{{ {} }}",
                    (0..aliases)
                        .map(|a| format!("a{a}: {page} "))
                        .collect::<String>()
                );
                if let Some(body) = accepted(client, endpoint, attacker, &query).await? {
                    let size = body.to_string().len();
                    if size > best.1 {
                        best = (query, size);
                    }
                }
            }
        }
    }
    anyhow::ensure!(best.1 > 0, "no heavy document was accepted");
    Ok(best)
}

async fn bench(backend: &str, url: &str, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let gateway = support::Gateway::start_with(
        &support::build_gateway()?,
        url,
        data_dir,
        // Every client here is one address.
        &[("ATES_MAX_CONNECTIONS_PER_ADDRESS", "100000")],
    )?;
    let endpoint = gateway.url.clone();
    let client = reqwest::Client::new();
    let attacker = token("worker", "attacker")?;
    let victim = token("worker", "victim")?;

    let started = Instant::now();
    seed(&client, &endpoint).await?;
    println!(
        "{backend}: {TASKS} tasks among {WORKERS} workers, shuffled {SHUFFLES} times, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (heavy, heavy_bytes) = heaviest_accepted(&client, &endpoint, &attacker).await?;
    // Its time alone, on a full complexity budget.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started = Instant::now();
    post(&client, &endpoint, Some(&attacker), &heavy).await?;
    let heavy_ms = started.elapsed().as_secs_f64() * 1e3;

    let (quiet, _) = measured(&endpoint, &victim, |_, _| Vec::new()).await?;
    let (q50, q99, qmax) = spread(quiet);
    println!("{backend}: quiet: myTasks p50 {q50:.2} ms, p99 {q99:.2} ms, max {qmax:.2} ms");
    let depth = 1_500;
    let bomb = format!(
        "{{ today(x: {}1{}) }}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let (bombed, bombs) = measured(&endpoint, &victim, |stop, sent| {
        flood(&client, &endpoint, None, &bomb, BOMBERS, &stop, &sent)
    })
    .await?;
    let (b50, b99, bmax) = spread(bombed);
    let secs = PHASE.as_secs_f64();
    println!(
        "{backend}: {BOMBERS} anonymous clients, nesting bombs of {} bytes ({:.0}/s): \
         myTasks p50 {b50:.2} ms, p99 {b99:.2} ms ({:.2}× quiet), max {bmax:.2} ms",
        bomb.len(),
        bombs as f64 / secs,
        b99 / q99
    );
    let (loaded, heavies) = measured(&endpoint, &victim, |stop, sent| {
        flood(
            &client,
            &endpoint,
            Some(&attacker),
            &heavy,
            HEAVY_AT_ONCE,
            &stop,
            &sent,
        )
    })
    .await?;
    let (h50, h99, hmax) = spread(loaded);
    println!(
        "{backend}: one worker, the heaviest accepted document ({} bytes, answered with {} kB \
         in {heavy_ms:.1} ms alone) {HEAVY_AT_ONCE} at a time ({:.0}/s): myTasks p50 {h50:.2} ms, \
         p99 {h99:.2} ms ({:.2}× quiet), max {hmax:.2} ms",
        heavy.len(),
        heavy_bytes / 1000,
        heavies as f64 / secs,
        h99 / q99
    );

    let queries = worst();
    println!("{backend}: time to refuse each worst case (best of 5, alone):");
    for (i, (what, query)) in queries.iter().enumerate() {
        // A popug of its own, whose complexity budget no earlier case has spent: the time
        // measured is the refusal's work, not a wait for the pace.
        let prober = token("worker", &format!("prober-{i}"))?;
        let mut best = Duration::MAX;
        let mut status = 0;
        for _ in 0..5 {
            let started = Instant::now();
            let response = client
                .post(&endpoint)
                .bearer_auth(&prober)
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
