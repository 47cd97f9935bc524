//! The audit-log CSV export at a year's size, against the database writing the same rows as
//! CSV itself.
//!
//! For SQLite, then for PostgreSQL when a server URL is given:
//! 1. seeds a fresh database in SQL: 1,000 popugs, 250,000 tasks (every hundredth titled like a
//!    formula), and 1,000,000 log entries spread over 2026;
//! 2. starts the release gateway binary (its own process, so its memory can be read);
//! 3. as an accountant, exports the whole year three times uncompressed and three times as a
//!    browser asks for it (`gzip, br`: brotli), reading the body as it comes, while a thread
//!    samples the gateway's RSS every 10 ms;
//! 4. has the database write the same rows, joined to the same titles, as CSV itself
//!    (`COPY … TO STDOUT` through psql, `sqlite3 -csv`), three times.
//!
//! Printed per run: rows, bytes, time to the first byte, the whole time, and the gateway's RSS
//! before and at its peak; then the medians.
//!
//! cargo run --release -p gateway --example bench_export -- [postgres://…/postgres]
//!     [--gateway PATH] [--rows N]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ates_db::Db;
use chrono::{TimeZone, Utc};
use support::Gateway;

const POPUGS: i64 = 1_000;
const TASKS: i64 = 250_000;
const RUNS: usize = 3;

struct Options {
    postgres: Option<String>,
    gateway: Option<PathBuf>,
    rows: i64,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        postgres: None,
        gateway: None,
        rows: 1_000_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--gateway" => options.gateway = Some(value()?.into()),
            "--rows" => options.rows = value()?.parse()?,
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
    let dir = tempfile::tempdir()?;
    let sqlite = dir.path().join("bench.db");
    bench(
        "sqlite",
        &format!("sqlite://{}", sqlite.display()),
        &binary,
        &options,
    )
    .await?;
    if let Some(admin) = &options.postgres {
        let name = format!("ates_bench_{}", uuid::Uuid::new_v4().simple());
        let url = ates_db::create_database(admin, &name).await?;
        let result = bench("postgres", &url, &binary, &options).await;
        ates_db::drop_database(admin, &name).await?;
        result?;
    }
    Ok(())
}

/// The year's bounds, in microseconds.
fn year() -> (i64, i64) {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
    (start.timestamp_micros(), end.timestamp_micros())
}

async fn seed(db: &Db, rows: i64) -> anyhow::Result<()> {
    let (start, end) = year();
    let step = (end - start) / rows;
    let statements = [
        format!(
            "WITH RECURSIVE g(n) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT n + 1 FROM g WHERE n < {POPUGS} - 1) \
             INSERT INTO popugs (id, name, role, changed_at) \
             SELECT 'popug-' || n, 'Popug ' || n, 'worker', 0 FROM g"
        ),
        format!(
            "WITH RECURSIVE g(n) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT n + 1 FROM g WHERE n < {TASKS} - 1) \
             INSERT INTO tasks (id, title, jira_id, description, status, assignee_id, created_by, created_at) \
             SELECT 'task-' || n, \
                    CASE WHEN n % 100 = 0 THEN '=SUM(A' || n || ')' ELSE 'Feed the parrots, round ' || n END, \
                    'POP-' || n, '', 'DONE', 'popug-' || (n % {POPUGS}), 'popug-0', {start} FROM g"
        ),
        format!(
            "WITH RECURSIVE g(n) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT n + 1 FROM g WHERE n < {rows} - 1) \
             INSERT INTO audit_log (event_id, kind, amount, balance_after, task_id, popug_id, logged_at) \
             SELECT 'event-' || n, \
                    CASE WHEN n % 2 = 0 THEN 'TASK_ASSIGNED' ELSE 'TASK_COMPLETED' END, \
                    CASE WHEN n % 2 = 0 THEN -15 ELSE 32 END, 17, \
                    'task-' || (n % {TASKS}), 'popug-' || (n % {POPUGS}), {start} + n * {step} FROM g"
        ),
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(db.pool())
            .await?;
    }
    if db.backend() == ates_db::Backend::Postgres {
        sqlx::query("ANALYZE").execute(db.pool()).await?;
    }
    Ok(())
}

/// One export, read as it comes.
struct Run {
    rows: usize,
    bytes: usize,
    first_byte: Duration,
    whole: Duration,
    rss_before: f64,
    rss_peak: f64,
}

/// How the client asks for the body: plain, or compressed as a browser asks for it.
#[derive(Clone, Copy)]
enum Encoding {
    Identity,
    /// `gzip, br`, which reqwest sends and decodes; the gateway answers with brotli.
    Browser,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Self::Identity => "plain",
            Self::Browser => "brotli",
        }
    }
}

async fn export(
    gateway: &Gateway,
    url: &str,
    token: &str,
    encoding: Encoding,
) -> anyhow::Result<Run> {
    let rss_before = gateway.rss_mb();
    let peak = Arc::new(std::sync::Mutex::new(rss_before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        let pid = gateway.child.id();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let rss = support::rss_mb_of(pid);
                let mut peak = peak.lock().expect("the peak");
                *peak = peak.max(rss);
                drop(peak);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let mut request = reqwest::Client::new().get(url).bearer_auth(token);
    if let Encoding::Identity = encoding {
        request = request.header("accept-encoding", "identity");
    }
    let response = request.send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "export refused: {}",
        response.status()
    );
    let mut response = response;
    let (mut bytes, mut lines, mut first_byte) = (0, 0, None);
    while let Some(chunk) = response.chunk().await? {
        first_byte.get_or_insert_with(|| started.elapsed());
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let whole = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("the sampler");
    let rss_peak = *peak.lock().expect("the peak");
    Ok(Run {
        rows: lines - 1,
        bytes,
        first_byte: first_byte.unwrap_or(whole),
        whole,
        rss_before,
        rss_peak,
    })
}

/// The database writing the same rows, joined to the same titles, as CSV; its time.
fn native_csv(backend: &str, url: &str, sqlite: Option<&Path>) -> anyhow::Result<Duration> {
    let (start, end) = year();
    let select = format!(
        "SELECT a.seq, a.logged_at, a.kind, a.amount, a.balance_after, a.popug_id, a.task_id, \
                t.jira_id, t.title, a.event_id \
         FROM audit_log a LEFT JOIN tasks t ON t.id = a.task_id \
         WHERE a.logged_at >= {start} AND a.logged_at < {end} ORDER BY a.logged_at, a.seq"
    );
    let mut command = match (backend, sqlite) {
        ("sqlite", Some(file)) => {
            let mut command = Command::new("sqlite3");
            command.args(["-csv", "-header"]).arg(file).arg(&select);
            command
        }
        _ => {
            let mut command = Command::new("psql");
            command.args([
                url,
                "-q",
                "-c",
                &format!("COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER)"),
            ]);
            command
        }
    };
    let started = Instant::now();
    let status = command.stdout(Stdio::null()).status()?;
    anyhow::ensure!(status.success(), "{backend}'s own CSV failed");
    Ok(started.elapsed())
}

async fn bench(backend: &str, url: &str, binary: &Path, options: &Options) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    let seeding = Instant::now();
    seed(&db, options.rows).await?;
    println!(
        "{backend}: seeded {} popugs, {} tasks, {} log entries in {:.1} s",
        POPUGS,
        TASKS,
        options.rows,
        seeding.elapsed().as_secs_f64()
    );
    let gateway = Gateway::start(binary, url, dir.path())?;
    let base = gateway.url.trim_end_matches("/graphql").to_owned();
    let token = support::token("accountant", "bench-accountant", "Ada")?;
    // One request first, so the accountant is known and the pool is warm.
    reqwest::Client::new()
        .post(&gateway.url)
        .bearer_auth(&token)
        .json(&serde_json::json!({ "query": "{ me { id } }" }))
        .send()
        .await?;
    let export_url = format!("{base}/exports/audit-log.csv?from=2026-01-01&to=2026-12-31");
    let mut runs = Vec::new();
    for encoding in [Encoding::Identity, Encoding::Browser] {
        let mut these = Vec::new();
        for i in 1..=RUNS {
            let run = export(&gateway, &export_url, &token, encoding).await?;
            println!(
                "{backend}: {} export {i}: {} rows, {:.1} MB in {:.2} s ({:.0} rows/s), first byte after {:.0} ms; \
                 gateway RSS {:.1} MB before, {:.1} MB at its peak",
                encoding.name(),
                run.rows,
                run.bytes as f64 / 1e6,
                run.whole.as_secs_f64(),
                run.rows as f64 / run.whole.as_secs_f64(),
                run.first_byte.as_secs_f64() * 1000.0,
                run.rss_before,
                run.rss_peak
            );
            anyhow::ensure!(
                i64::try_from(run.rows)? == options.rows,
                "the export held {} rows, not {}",
                run.rows,
                options.rows
            );
            these.push(run);
        }
        runs.push((encoding, these));
    }
    drop(gateway);
    let sqlite_file = url
        .strip_prefix("sqlite://")
        .map(|path| PathBuf::from(path.split('?').next().unwrap_or(path)));
    let mut native = Vec::new();
    for _ in 0..RUNS {
        native.push(native_csv(backend, url, sqlite_file.as_deref())?);
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    for (encoding, runs) in &runs {
        println!(
            "{backend}: median of {RUNS} {} exports of {} rows: {:.2} s, first byte {:.0} ms, gateway RSS peak {:.1} MB (before {:.1} MB)",
            encoding.name(),
            options.rows,
            median(runs.iter().map(|r| r.whole.as_secs_f64()).collect()),
            median(
                runs.iter()
                    .map(|r| r.first_byte.as_secs_f64() * 1000.0)
                    .collect()
            ),
            median(runs.iter().map(|r| r.rss_peak).collect()),
            median(runs.iter().map(|r| r.rss_before).collect()),
        );
    }
    println!(
        "{backend}: median of {RUNS}: the database's own CSV of the same rows and titles: {:.2} s",
        median(native.iter().map(Duration::as_secs_f64).collect()),
    );
    Ok(())
}
