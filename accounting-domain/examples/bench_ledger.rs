//! Times the ledger catching up with a backlog: N new tasks (created and assigned), then a
//! shuffle of all of them (N assignments), on a fresh SQLite file and, when a PostgreSQL URL is
//! given, on a fresh PostgreSQL database. The events are appended to the outbox directly; the
//! figure is the consumer's alone.
//!
//! cargo run --release -p accounting-domain --example bench_ledger -- [--tasks N] [--batch B] [postgres://…/postgres]

use std::time::Instant;

use accounting_domain::Ledger;
use ates_db::Db;
use ates_events::NewEvent;
use ates_events::outbox;
use ates_events::task::{TaskAssigned, TaskCreated};

const POPUGS: usize = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut tasks = 20_000usize;
    let mut batch = None;
    let mut postgres = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tasks" => tasks = args.next().unwrap_or_default().parse()?,
            "--batch" => batch = Some(args.next().unwrap_or_default().parse()?),
            url => postgres = Some(url.to_owned()),
        }
    }

    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench("sqlite", &sqlite, tasks, batch).await?;

    if let Some(admin_url) = postgres {
        let name = format!("ates_bench_{}", uuid::Uuid::new_v4().simple());
        let url = ates_db::create_database(&admin_url, &name).await?;
        let result = bench("postgres", &url, tasks, batch).await;
        ates_db::drop_database(&admin_url, &name).await?;
        result?;
    }
    Ok(())
}

async fn bench(backend: &str, url: &str, tasks: usize, batch: Option<i64>) -> anyhow::Result<()> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    let mut ledger = Ledger::new(db.clone());
    if let Some(batch) = batch {
        ledger = ledger.with_batch(batch);
    }
    let popug = |i: usize| format!("popug-{:04}", i % POPUGS);
    let now = db.now();

    let mut created = Vec::with_capacity(tasks * 2);
    for i in 0..tasks {
        let task = format!("task-{i:07}");
        created.push(NewEvent::new(
            &TaskCreated {
                task_id: task.clone(),
                title: format!("task {i}"),
                jira_id: None,
                created_by: popug(0),
                created_at: now,
            },
            now,
        ));
        created.push(NewEvent::new(
            &TaskAssigned {
                task_id: task,
                assignee_id: popug(i),
                previous_assignee_id: None,
                assigned_at: now,
            },
            now,
        ));
    }
    append(&db, &created).await?;
    let took = timed(&ledger).await?;
    println!(
        "{backend}: ledger applied {} events of {tasks} new tasks in {:.2} s ({:.0} events/s)",
        tasks * 2,
        took,
        (tasks * 2) as f64 / took
    );

    let shuffled: Vec<NewEvent> = (0..tasks)
        .map(|i| {
            NewEvent::new(
                &TaskAssigned {
                    task_id: format!("task-{i:07}"),
                    assignee_id: popug(i + 7),
                    previous_assignee_id: Some(popug(i)),
                    assigned_at: now,
                },
                now,
            )
        })
        .collect();
    append(&db, &shuffled).await?;
    let took = timed(&ledger).await?;
    println!(
        "{backend}: ledger applied a shuffle of {tasks} tasks in {:.2} s ({:.0} events/s)",
        took,
        tasks as f64 / took
    );
    Ok(())
}

async fn append(db: &Db, events: &[NewEvent]) -> anyhow::Result<()> {
    let mut tx = db.begin_write().await?;
    outbox::append(&mut tx, events).await?;
    tx.commit().await?;
    Ok(())
}

/// Seconds the ledger takes to apply everything committed.
async fn timed(ledger: &Ledger) -> anyhow::Result<f64> {
    let started = Instant::now();
    ledger.catch_up().await?;
    Ok(started.elapsed().as_secs_f64())
}
