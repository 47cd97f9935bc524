//! Measures accounting on a running gateway, on SQLite and (given a URL) PostgreSQL:
//! - latency from a task's commit to its audit-log entry, under light load through HTTP
//!   (`logged_at` of the TASK_ASSIGNED entry − `occurred_at` of its event, which is taken just
//!   before the commit, so the figure slightly overstates);
//! - the time of one popug's one-day audit-log query with 1,000,000 log rows present.
//!
//! cargo run --release -p gateway --example bench_accounting -- [postgres://…/postgres]

use std::time::{Duration, Instant};

use accounting_domain::{Ledger, LogFilter};
use ates_db::Db;
use ates_db::PageRequest;
use chrono::{TimeZone, Utc};
use gateway::{App, Config};
use serde_json::json;

const SECRET: &str = "bench-secret";
const TASKS: usize = 500;
const LOG_ROWS: i64 = 1_000_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let postgres = std::env::args().nth(1);
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench("sqlite", &sqlite, dir.path()).await?;
    if let Some(admin_url) = postgres {
        let name = format!("ates_bench_{}", uuid::Uuid::new_v4().simple());
        let url = ates_db::create_database(&admin_url, &name).await?;
        let result = bench("postgres", &url, dir.path()).await;
        ates_db::drop_database(&admin_url, &name).await?;
        result?;
    }
    Ok(())
}

async fn bench(backend: &str, url: &str, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let mut config = Config::defaults()?;
    config.database.database_url = Some(url.to_owned());
    config.server.listen = "127.0.0.1:0".parse()?;
    config.server.data_dir = data_dir.to_path_buf();
    config.auth.jwt_secret = Some(SECRET.into());
    let app = App::build(&config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}/graphql", listener.local_addr()?);
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
    let db = Db::connect(url, 4).await?;

    let client = reqwest::Client::new();
    let now = Utc::now().timestamp();
    let token = |role: &str, i: usize| {
        let claims = json!({ "sub": format!("{role}-{i}"), "name": format!("{role} {i}"), "role": role, "iat": now, "exp": now + 3600 });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
    };
    let manager = token("manager", 0)?;
    for i in 0..20 {
        let worker = token("worker", i)?;
        client
            .post(&endpoint)
            .bearer_auth(&worker)
            .json(&json!({ "query": "{ me { id } }" }))
            .send()
            .await?;
    }
    // Light load: one creation at a time, 10 ms apart.
    for i in 0..TASKS {
        let body = json!({ "query": "mutation($t: String!) { createTask(input: {title: $t}) { id } }", "variables": { "t": format!("Task {i}") } });
        let answer: serde_json::Value = client
            .post(&endpoint)
            .bearer_auth(&manager)
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(answer.get("errors").is_none(), "{answer}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut latencies: Vec<i64> = sqlx::query_scalar(
        "SELECT l.logged_at - o.occurred_at FROM audit_log l JOIN outbox o ON o.id = l.event_id \
         WHERE l.kind = 'TASK_ASSIGNED'",
    )
    .fetch_all(db.pool())
    .await?;
    latencies.sort_unstable();
    let at =
        |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    println!(
        "{backend}: task commit -> audit-log entry over {} assignments: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );

    // 1,000,000 entries for 1,000 popugs over 30 days, then one popug's day.
    let started = Instant::now();
    let month_start = Utc
        .with_ymd_and_hms(2026, 10, 1, 0, 0, 0)
        .unwrap()
        .timestamp_micros();
    let step = 30 * 86_400_000_000 / LOG_ROWS;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE g(n) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT n + 1 FROM g WHERE n < {LOG_ROWS}) \
         INSERT INTO audit_log (event_id, kind, amount, balance_after, task_id, popug_id, logged_at) \
         SELECT 'bench-' || n, 'TASK_ASSIGNED', -10, 0, 'bench-task-' || n, 'bench-popug-' || (n % 1000), \
         {month_start} + n * {step} FROM g"
    )))
    .execute(db.pool())
    .await?;
    if backend == "postgres" {
        sqlx::query("ANALYZE audit_log").execute(db.pool()).await?;
    }
    let filled = started.elapsed();
    let ledger = Ledger::new(db.clone());
    let day = Utc.with_ymd_and_hms(2026, 10, 15, 0, 0, 0).unwrap();
    let filter = LogFilter {
        popug_id: Some(ates_events::ids::PopugId("bench-popug-7".into())),
        from: Some(day),
        to: Some(day + chrono::Duration::days(1)),
        ..LogFilter::default()
    };
    let page = PageRequest::forward(100, None);
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..200 {
        let started = Instant::now();
        rows = ledger.log(&filter, &page, true).await?.items.len();
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{backend}: one popug's day ({rows} entries) among {LOG_ROWS} log rows (filled in {:.1} s): \
         median {:.2} ms, p99 {:.2} ms over 200 queries",
        filled.as_secs_f64(),
        ms(times[100]),
        ms(times[197])
    );
    Ok(())
}
