//! The gateway at a realistic size, through its own API, against what the database itself can
//! do with the same statements.
//!
//! For SQLite, then for PostgreSQL when a server URL is given:
//! 1. starts the release gateway binary on a fresh database (its own process, so its memory
//!    can be read);
//! 2. seeds it through GraphQL: 1,000 workers and a manager, then tasks created by random
//!    workers with 16 clients (150,000 on PostgreSQL, 20,000 on SQLite), and a third of them
//!    (half, on SQLite) completed by their assignees;
//! 3. loads it with 32 connections, each request from a random popug: "my open tasks" with
//!    their prices and assignee, "my 50 newest log entries", and `createTask`;
//! 4. on PostgreSQL, runs `pgbench -M prepared -c 32 -j 2` on the statements the gateway sends
//!    for the two reads, and prints the gateway's rate as a share of that ceiling;
//! 5. shuffles every open task while one popug keeps creating tasks, and prints how long the
//!    shuffle took to answer, when the ledger had every event, and each creation's wait;
//! 6. opens 10,000 WebSockets, each a popug of its own subscribed to its `taskAssigned`, while
//!    the manager creates 50 tasks a second, and prints the gateway's RSS before and after the
//!    sockets opened and the delay from each event's commit to its delivery.
//!
//! Printed: req/s, p50 and p99 per operation, errors, and the gateway's RSS.
//!
//! cargo run --release -p gateway --example bench_load -- [postgres://…/postgres]
//!     [--gateway PATH] [--seconds N] [--tasks N] [--sqlite-tasks N (0: PostgreSQL only)]
//!     [--sockets N (0: none)]
//!
//! `--gateway` runs another build of the gateway (an older commit's, to compare); by default
//! the bench builds and runs this checkout's release binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ates_db::Db;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};
use support::Gateway;

#[path = "support/mod.rs"]
mod support;

const WORKERS: usize = 1000;
/// Workers' ids are numbers, so that pgbench can draw one with `random()`.
const FIRST_WORKER: usize = 1001;
const SEED_CLIENTS: usize = 16;
const CONNECTIONS: usize = 32;

const MY_OPEN_TASKS: &str = "query MyOpenTasks { myTasks(status: OPEN, first: 20) { edges { node { id title status assignFee reward assignee { name } } } } }";
const MY_LOG: &str = "query MyLog { auditLog(first: 50) { edges { node { seq loggedAt kind amount balanceAfter taskId } } } }";
const CREATE: &str = "mutation Create($t: String!) { createTask(input: {title: $t}) { id assignFee assignee { id } } }";
const COMPLETE: &str = "mutation Complete($id: ID!) { completeTask(id: $id) { id reward } }";
const SHUFFLE: &str = "mutation Shuffle { shuffleTasks { reassigned moved } }";

struct Options {
    postgres: Option<String>,
    gateway: Option<PathBuf>,
    seconds: u64,
    tasks: usize,
    sqlite_tasks: usize,
    sockets: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        postgres: None,
        gateway: None,
        seconds: 10,
        tasks: 150_000,
        sqlite_tasks: 20_000,
        sockets: 10_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--gateway" => options.gateway = Some(PathBuf::from(value()?)),
            "--seconds" => options.seconds = value()?.parse()?,
            "--tasks" => options.tasks = value()?.parse()?,
            "--sqlite-tasks" => options.sqlite_tasks = value()?.parse()?,
            "--sockets" => options.sockets = value()?.parse()?,
            url if url.starts_with("postgres") => options.postgres = Some(url.to_owned()),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let binary = support::gateway_binary(options.gateway.as_deref())?;
    println!("gateway binary: {}", binary.display());
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    if options.sqlite_tasks > 0 {
        bench(
            &options,
            &binary,
            "sqlite",
            &sqlite,
            None,
            options.sqlite_tasks,
        )
        .await?;
    }
    if let Some(admin) = &options.postgres {
        let name = format!("ates_bench_{}", uuid::Uuid::new_v4().simple());
        let url = ates_db::create_database(admin, &name).await?;
        let result = bench(
            &options,
            &binary,
            "postgres",
            &url,
            Some(&url),
            options.tasks,
        )
        .await;
        ates_db::drop_database(admin, &name).await?;
        result?;
    }
    Ok(())
}

/// Who acts: the workers (by id) and a manager, with their tokens.
struct Crew {
    workers: Vec<(String, String)>,
    manager: String,
    by_id: HashMap<String, String>,
}

impl Crew {
    fn new() -> anyhow::Result<Self> {
        let mut workers = Vec::with_capacity(WORKERS);
        for i in 0..WORKERS {
            let id = (FIRST_WORKER + i).to_string();
            let token = support::token("worker", &id, &format!("Worker {id}"))?;
            workers.push((id, token));
        }
        let manager = support::token("manager", "9000", "Mark")?;
        let by_id = workers.iter().cloned().collect();
        Ok(Self {
            workers,
            manager,
            by_id,
        })
    }

    fn random_worker(&self) -> &(String, String) {
        self.workers.choose(&mut rand::rng()).expect("workers")
    }
}

/// One GraphQL request: its latency and whether it answered without errors.
async fn send(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> (Duration, Option<Value>) {
    let started = Instant::now();
    let answer = async {
        let response = client
            .post(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let value: Value = response.json().await.ok()?;
        value.get("errors").is_none().then_some(value)
    }
    .await;
    (started.elapsed(), answer)
}

/// One GraphQL request whose answer is only checked: its latency and whether it answered
/// 200 without errors. Reading no JSON keeps the load generator's share of the cores small.
async fn send_checked(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &[u8],
) -> (Duration, bool) {
    let started = Instant::now();
    let ok = async {
        let response = client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let bytes = response.bytes().await.ok()?;
        (!bytes.windows(9).any(|w| w == b"\"errors\":")).then_some(())
    }
    .await
    .is_some();
    (started.elapsed(), ok)
}

/// Latencies of one operation under load.
struct Stats {
    took: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.took.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn at(&self, q: f64) -> Duration {
        let mut took = self.took.clone();
        took.sort();
        took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    fn line(&self, backend: &str, what: &str) -> String {
        format!(
            "{backend}: {what}: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} errors ({} requests in {:.1} s)",
            self.rate(),
            self.at(0.5).as_secs_f64() * 1e3,
            self.at(0.99).as_secs_f64() * 1e3,
            self.at(1.0).as_secs_f64() * 1e3,
            self.errors,
            self.took.len(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// `clients` loops sending what `next` makes, for `duration`, or `total` requests in all.
async fn drive<F>(
    url: &str,
    clients: usize,
    duration: Option<Duration>,
    total: Option<usize>,
    next: F,
) -> Stats
where
    F: Fn(usize) -> (String, Value) + Send + Sync + 'static,
{
    let next = Arc::new(next);
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("a client");
    let loops: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, next, counter) = (
                client.clone(),
                url.to_owned(),
                Arc::clone(&next),
                Arc::clone(&counter),
            );
            tokio::spawn(async move {
                let mut took = Vec::new();
                let mut errors = 0;
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if total.is_some_and(|t| n >= t) {
                        break;
                    }
                    let (token, body) = next(n);
                    let body = serde_json::to_vec(&body).expect("a request body");
                    let (latency, ok) = send_checked(&client, &url, &token, &body).await;
                    took.push(latency);
                    if !ok {
                        errors += 1;
                    }
                }
                (took, errors)
            })
        })
        .collect();
    let mut stats = Stats {
        took: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for handle in loops {
        let (took, errors) = handle.await.expect("a load loop");
        stats.took.extend(took);
        stats.errors += errors;
    }
    stats.elapsed = started.elapsed();
    stats
}

async fn bench(
    options: &Options,
    binary: &Path,
    backend: &str,
    url: &str,
    postgres: Option<&str>,
    tasks: usize,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gateway = Gateway::start(binary, url, dir.path())?;
    let crew = Arc::new(Crew::new()?);
    let client = reqwest::Client::new();
    let started_rss = gateway.rss_mb();

    // Seeding, through the API.
    let me = json!({ "query": "{ me { id } }" });
    for (_, token) in &crew.workers {
        send(&client, &gateway.url, token, &me).await;
    }
    send(&client, &gateway.url, &crew.manager, &me).await;
    let created: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
    let seed = {
        let (crew, created) = (Arc::clone(&crew), Arc::clone(&created));
        let gateway_url = gateway.url.clone();
        let client = client.clone();
        let loops: Vec<_> = (0..SEED_CLIENTS)
            .map(|c| {
                let (crew, created, url, client) = (
                    Arc::clone(&crew),
                    Arc::clone(&created),
                    gateway_url.clone(),
                    client.clone(),
                );
                tokio::spawn(async move {
                    let mut errors = 0;
                    for i in (c..tasks).step_by(SEED_CLIENTS) {
                        let (_, token) = crew.random_worker();
                        let body = json!({ "query": CREATE, "variables": { "t": format!("Seeded task {i}") } });
                        match send(&client, &url, token, &body).await.1 {
                            Some(answer) => {
                                let task = &answer["data"]["createTask"];
                                let pair = (
                                    task["id"].as_str().unwrap_or_default().to_owned(),
                                    popug_key(&task["assignee"]["id"]),
                                );
                                created.lock().expect("created").push(pair);
                            }
                            None => errors += 1,
                        }
                    }
                    errors
                })
            })
            .collect();
        let started = Instant::now();
        let mut errors = 0;
        for handle in loops {
            errors += handle.await?;
        }
        (started.elapsed(), errors)
    };
    println!(
        "{backend}: seeded {tasks} tasks through createTask with {SEED_CLIENTS} clients in {:.1} s: {:.0} tasks/s, {} errors",
        seed.0.as_secs_f64(),
        tasks as f64 / seed.0.as_secs_f64(),
        seed.1
    );
    let share = if postgres.is_some() { 3 } else { 2 };
    let to_complete: Vec<(String, String)> = created
        .lock()
        .expect("created")
        .iter()
        .enumerate()
        .filter(|(i, _)| i % share == 0)
        .map(|(_, pair)| pair.clone())
        .collect();
    let count = to_complete.len();
    let to_complete = Arc::new(to_complete);
    let completed = {
        let (crew, to_complete) = (Arc::clone(&crew), Arc::clone(&to_complete));
        drive(&gateway.url, SEED_CLIENTS, None, Some(count), move |n| {
            let (task, assignee) = &to_complete[n];
            let token = crew.by_id.get(assignee).cloned().unwrap_or_default();
            (
                token,
                json!({ "query": COMPLETE, "variables": { "id": task } }),
            )
        })
        .await
    };
    println!(
        "{backend}: completed {count} tasks in {:.1} s ({} errors); gateway RSS {:.0} MB at start, {:.0} MB after seeding",
        completed.elapsed.as_secs_f64(),
        completed.errors,
        started_rss,
        gateway.rss_mb()
    );
    let db = Db::connect(url, 4).await?;
    wait_for_ledger(&db, Duration::from_secs(120)).await?;

    // Load.
    let seconds = Duration::from_secs(options.seconds);
    let reads = [
        ("my open tasks", MY_OPEN_TASKS),
        ("my 50 newest log entries", MY_LOG),
    ];
    let mut read_rates = Vec::new();
    for (what, query) in reads {
        let crew = Arc::clone(&crew);
        let body = json!({ "query": query });
        let stats = drive(&gateway.url, CONNECTIONS, Some(seconds), None, move |_| {
            (crew.random_worker().1.clone(), body.clone())
        })
        .await;
        println!("{}", stats.line(backend, what));
        read_rates.push(stats.rate());
    }
    let creating = {
        let crew = Arc::clone(&crew);
        drive(&gateway.url, CONNECTIONS, Some(seconds), None, move |n| {
            let body = json!({ "query": CREATE, "variables": { "t": format!("Load task {n}") } });
            (crew.random_worker().1.clone(), body)
        })
        .await
    };
    println!("{}", creating.line(backend, "createTask"));
    println!(
        "{backend}: gateway RSS after the load {:.0} MB",
        gateway.rss_mb()
    );

    if let Some(url) = postgres {
        let ceilings = [
            ("my open tasks", my_tasks_scripts(&db).await?),
            ("my 50 newest log entries", vec![MY_LOG_SQL.to_owned()]),
        ];
        for ((what, scripts), gateway_rate) in ceilings.into_iter().zip(read_rates) {
            let tps = pgbench(url, &scripts, options.seconds)?;
            println!(
                "{backend}: {what}: pgbench on the same statements {tps:.0} tx/s; the gateway reaches {:.1} % of it",
                100.0 * gateway_rate / tps
            );
        }
    }

    wait_for_ledger(&db, Duration::from_secs(120)).await?;
    shuffle(&gateway, &crew, &db, backend).await?;
    if options.sockets > 0 {
        watchers(
            &gateway,
            &crew,
            backend,
            options.sockets,
            options.seconds.max(20),
        )
        .await?;
    }
    Ok(())
}

/// Waits until every task event is in the audit log.
async fn wait_for_ledger(db: &Db, within: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let (entries, events): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM audit_log), \
             (SELECT COUNT(*) FROM outbox WHERE event_type <> 'payout.made')",
        )
        .fetch_one(db.pool())
        .await?;
        if entries >= events {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < within,
            "the ledger is {} events behind after {within:?}",
            events - entries
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every open task shuffled, while one popug keeps creating tasks.
async fn shuffle(
    gateway: &Gateway,
    crew: &Arc<Crew>,
    db: &Db,
    backend: &str,
) -> anyhow::Result<()> {
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status = 'OPEN'")
        .fetch_one(db.pool())
        .await?;
    let client = reqwest::Client::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let creator = {
        let (crew, client, url, stop) = (
            Arc::clone(crew),
            client.clone(),
            gateway.url.clone(),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let mut took = Vec::new();
            let mut missing_fee = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({ "query": CREATE, "variables": { "t": "During the shuffle" } });
                let (latency, answer) = send(&client, &url, &crew.workers[0].1, &body).await;
                took.push(latency);
                if answer.is_none_or(|a| a["data"]["createTask"]["assignFee"].is_null()) {
                    missing_fee += 1;
                }
            }
            (took, missing_fee)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (answered, result) = send(
        &client,
        &gateway.url,
        &crew.manager,
        &json!({ "query": SHUFFLE }),
    )
    .await;
    let reassigned = result
        .as_ref()
        .and_then(|r| r["data"]["shuffleTasks"]["reassigned"].as_i64())
        .unwrap_or(-1);
    wait_for_ledger(db, Duration::from_secs(300)).await?;
    let in_ledger = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut took, missing_fee) = creator.await?;
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    println!(
        "{backend}: shuffleTasks over {open} open tasks (reassigned {reassigned}) answered in {:.2} s; \
         the ledger had every event {:.2} s after the shuffle began",
        answered.as_secs_f64(),
        in_ledger.as_secs_f64()
    );
    println!(
        "{backend}: meanwhile one popug created {} tasks: p50 {:.0} ms, max {:.0} ms, {missing_fee} without a fee",
        took.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
    Ok(())
}

/// Tasks the manager creates per second while the sockets watch.
const WATCHED_RATE: u64 = 50;
/// Sockets being opened at once.
const OPENING: usize = 64;
/// First id of the popugs who watch their boards.
const FIRST_WATCHER: usize = 100_001;

/// `count` popugs, each on a socket of its own subscribed to its `taskAssigned`, while the
/// manager creates tasks: the gateway's memory per socket, and commit → delivery delays.
async fn watchers(
    gateway: &Gateway,
    crew: &Crew,
    backend: &str,
    count: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let open_files = std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    anyhow::ensure!(
        open_files > count + 1000,
        "{count} sockets need more open files than `ulimit -n` allows ({open_files})"
    );
    let ws_url = gateway.url.replacen("http://", "ws://", 1) + "/ws";
    let rss_before = gateway.rss_mb();
    let opening = Instant::now();
    let opened = futures::stream::iter(0..count)
        .map(|i| {
            let ws_url = ws_url.clone();
            async move {
                let id = (FIRST_WATCHER + i).to_string();
                let token = support::token("worker", &id, &format!("Watcher {id}"))?;
                support::open_socket(&ws_url, &token).await
            }
        })
        .buffer_unordered(OPENING)
        .collect::<Vec<_>>()
        .await;
    let sockets = opened.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let opening = opening.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_open = gateway.rss_mb();

    let delays: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
    let subscribe = json!({ "type": "subscribe", "id": "1",
        "payload": { "query": "subscription { taskAssigned { seq occurredAt task { id } } }" } })
    .to_string();
    let mut readers = Vec::with_capacity(count);
    for mut ws in sockets {
        ws.send(Message::Text(subscribe.clone().into())).await?;
        let delays = Arc::clone(&delays);
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let received = chrono::Utc::now();
                let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                let occurred = value["payload"]["data"]["taskAssigned"]["occurredAt"]
                    .as_str()
                    .and_then(|o| chrono::DateTime::parse_from_rfc3339(o).ok());
                if let Some(occurred) = occurred {
                    let delay = (received - occurred.with_timezone(&chrono::Utc))
                        .to_std()
                        .unwrap_or_default();
                    delays.lock().expect("delays").push(delay);
                }
            }
        }));
    }
    // A subscription is live once its first poll subscribed to the feed; there is no ack.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_subscribed = gateway.rss_mb();
    let per_socket = |mb: f64| mb * 1024.0 / count as f64;
    println!(
        "{backend}: opened {count} sockets, one popug each, in {:.1} s; gateway RSS {rss_before:.0} MB \
         before, {rss_open:.0} MB with them open ({:.1} KB a socket), {rss_subscribed:.0} MB once \
         each subscribed to its taskAssigned ({:.1} KB a subscription)",
        opening.as_secs_f64(),
        per_socket(rss_open - rss_before),
        per_socket(rss_subscribed - rss_open),
    );

    // The manager creates tasks at a steady rate; each goes to a random worker, most of them
    // watchers.
    let client = reqwest::Client::new();
    let watched = FIRST_WATCHER..FIRST_WATCHER + count;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / WATCHED_RATE));
    let mut creations = Vec::new();
    for n in 0..WATCHED_RATE * seconds {
        ticker.tick().await;
        let (client, url, manager) = (client.clone(), gateway.url.clone(), crew.manager.clone());
        creations.push(tokio::spawn(async move {
            let body =
                json!({ "query": CREATE, "variables": { "t": format!("Watched task {n}") } });
            let answer = send(&client, &url, &manager, &body).await.1?;
            popug_key(&answer["data"]["createTask"]["assignee"]["id"])
                .parse::<usize>()
                .ok()
        }));
    }
    let (mut expected, mut failed) = (0, 0);
    for creation in creations {
        match creation.await? {
            Some(assignee) if watched.contains(&assignee) => expected += 1,
            Some(_) => {}
            None => failed += 1,
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while delays.lock().expect("delays").len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_after = gateway.rss_mb();
    let mut delays = delays.lock().expect("delays").clone();
    delays.sort();
    let at = |q: f64| {
        delays
            .get(((delays.len() as f64 * q) as usize).min(delays.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{backend}: {} tasks created at {WATCHED_RATE}/s ({failed} failed) while they watched: \
         {} of {expected} assignments delivered to their sockets; commit -> delivery p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms; gateway RSS {rss_after:.0} MB after",
        WATCHED_RATE * seconds,
        delays.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    for reader in readers {
        reader.abort();
    }
    Ok(())
}

/// The gateway's statement for a page of a popug's open tasks, as it sends it.
const MY_TASKS_SQL: &str = "SELECT id, title, jira_id, description, status, assignee_id, created_by, created_at, completed_at FROM tasks WHERE assignee_id = :popug AND status = 'OPEN' ORDER BY id DESC LIMIT 21";
/// The gateway's statement for a popug's newest log entries.
const MY_LOG_SQL: &str = "\\set popug random(1001, 2000)\nSELECT seq, event_id, kind, amount, balance_after, task_id, popug_id, logged_at FROM audit_log WHERE popug_id = :popug ORDER BY seq DESC LIMIT 51;\n";

/// pgbench scripts of what the gateway sends for "my open tasks", for 50 popugs: the page of
/// tasks, then the prices of the tasks on it (the assignee's name comes from memory).
async fn my_tasks_scripts(db: &Db) -> anyhow::Result<Vec<String>> {
    let mut scripts = Vec::new();
    for _ in 0..50 {
        let popug = rand::rng()
            .random_range(FIRST_WORKER..FIRST_WORKER + WORKERS)
            .to_string();
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE assignee_id = $1 AND status = 'OPEN' ORDER BY id DESC LIMIT 20",
        )
        .bind(popug.clone())
        .fetch_all(db.pool())
        .await?;
        let mut script = format!(
            "{};\n",
            MY_TASKS_SQL.replace(":popug", &format!("'{popug}'"))
        );
        if !ids.is_empty() {
            let list: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
            script.push_str(&format!(
                "SELECT task_id, assign_fee, reward FROM task_prices WHERE task_id IN ({});\n",
                list.join(", ")
            ));
        }
        scripts.push(script);
    }
    Ok(scripts)
}

/// Transactions per second of pgbench running `scripts` (chosen at random per transaction).
fn pgbench(url: &str, scripts: &[String], seconds: u64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut args: Vec<String> = ["-n", "-M", "prepared", "-c", "32", "-j", "2", "-T"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(seconds.to_string());
    for (i, script) in scripts.iter().enumerate() {
        let path = dir.path().join(format!("script{i}.sql"));
        std::fs::write(&path, script)?;
        args.push("-f".into());
        args.push(path.display().to_string());
    }
    args.push(url.to_owned());
    let output = Command::new("pgbench").args(&args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench's output: {text}"))
}

/// The popug's own key (the token's `sub`) inside the global id the API answers with.
fn popug_key(id: &serde_json::Value) -> String {
    id.as_str()
        .and_then(|id| gateway::api::ids::key_of(gateway::api::ids::Kind::Popug, id).ok())
        .unwrap_or_default()
}
