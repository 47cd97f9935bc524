//! Times `shuffleTasks` over many open tasks, on a fresh SQLite file and, when a PostgreSQL URL
//! is given, on a fresh PostgreSQL database.
//!
//! cargo run --release -p task-domain --example bench_shuffle -- [--tasks N] [--runs R] [postgres://…/postgres]

use std::time::{Duration, Instant};

use ates_db::Db;
use task_domain::{Actor, PopugId, Role, Tracker};

const POPUGS: usize = 50;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut tasks = 10_000usize;
    let mut runs = 5usize;
    let mut postgres = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tasks" => tasks = args.next().unwrap_or_default().parse()?,
            "--runs" => runs = args.next().unwrap_or_default().parse()?,
            url => postgres = Some(url.to_owned()),
        }
    }

    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench("sqlite", &sqlite, tasks, runs).await?;

    if let Some(admin_url) = postgres {
        let name = format!("ates_bench_{}", uuid::Uuid::new_v4().simple());
        let url = ates_db::create_database(&admin_url, &name).await?;
        let result = bench("postgres", &url, tasks, runs).await;
        ates_db::drop_database(&admin_url, &name).await?;
        result?;
    }
    Ok(())
}

async fn bench(backend: &str, url: &str, tasks: usize, runs: usize) -> anyhow::Result<()> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    seed(&db, tasks).await?;
    let tracker = Tracker::new(db.clone(), task_domain::Popugs::new(db.clone()));
    let manager = Actor {
        id: PopugId("manager".into()),
        role: Role::Manager,
    };
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let outcome = tracker.shuffle(&manager).await?.value;
        times.push(started.elapsed());
        anyhow::ensure!(
            outcome.reassigned == tasks,
            "shuffled {} of {tasks}",
            outcome.reassigned
        );
    }
    times.sort();
    println!(
        "{backend}: shuffleTasks over {tasks} open tasks, {POPUGS} popugs, {runs} runs: \
         min {:.0} ms, median {:.0} ms, max {:.0} ms",
        ms(times[0]),
        ms(times[runs / 2]),
        ms(times[runs - 1]),
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Popugs and open tasks written directly, in bulk: the subject is the shuffle, not the set-up.
async fn seed(db: &Db, tasks: usize) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO popugs (id, name, role, changed_at) VALUES ('manager', 'manager', 'manager', 0)")
        .execute(db.pool())
        .await?;
    for i in 0..POPUGS {
        sqlx::query("INSERT INTO popugs (id, name, role, changed_at) VALUES ($1, $1, 'worker', 0)")
            .bind(format!("worker-{i:03}"))
            .execute(db.pool())
            .await?;
    }
    let mut tx = db.begin_write().await?;
    for start in (0..tasks).step_by(500) {
        let end = (start + 500).min(tasks);
        let values: Vec<String> = (start..end)
            .map(|i| {
                format!(
                    "('{}', 'Task {i}', '', 'OPEN', 'worker-{:03}', 'manager', 0)",
                    uuid::Uuid::now_v7(),
                    i % POPUGS
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO tasks (id, title, description, status, assignee_id, created_by, created_at) VALUES {}",
            values.join(", ")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
