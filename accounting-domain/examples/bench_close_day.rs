//! Times a day close (Make Payment) over many popugs with positive balances, on a fresh SQLite
//! file and, when a PostgreSQL URL is given, on a fresh PostgreSQL database. Payment requests
//! and mail are only queued by a close; delivering them is not part of the figure.
//!
//! cargo run --release -p accounting-domain --example bench_close_day -- [--popugs N] [postgres://…/postgres]

use std::time::Instant;

use accounting_domain::{Calendar, Payday};
use ates_db::{Clock, Db, Value};
use chrono::NaiveDate;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut popugs = 100_000usize;
    let mut postgres = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--popugs" => popugs = args.next().unwrap_or_default().parse()?,
            url => postgres = Some(url.to_owned()),
        }
    }

    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench("sqlite", &sqlite, popugs, dir.path()).await?;

    if let Some(admin_url) = postgres {
        let name = format!("ates_bench_{}", uuid::Uuid::new_v4().simple());
        let url = ates_db::create_database(&admin_url, &name).await?;
        let result = bench("postgres", &url, popugs, dir.path()).await;
        ates_db::drop_database(&admin_url, &name).await?;
        result?;
    }
    Ok(())
}

async fn bench(
    backend: &str,
    url: &str,
    popugs: usize,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    // The day after the seeded one, by a clock of our own.
    let clock = dir.join(format!("clock-{backend}"));
    std::fs::write(&clock, "2026-03-02T00:00:05Z")?;
    let db = Db::connect(url, 8)
        .await?
        .with_clock(Clock::File(std::sync::Arc::new(clock)));
    db.migrate().await?;
    let seeded = Instant::now();
    let total = seed(&db, popugs).await?;
    eprintln!(
        "{backend}: seeded {popugs} popugs in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    let payday = Payday::new(db.clone(), Calendar::utc());
    let day = NaiveDate::from_ymd_opt(2026, 3, 1).expect("a date");
    let started = Instant::now();
    let closes = payday.close_through(day).await?;
    let took = started.elapsed();
    let close = closes
        .first()
        .ok_or_else(|| anyhow::anyhow!("nothing closed"))?;
    anyhow::ensure!(
        close.payout_count == popugs as i64 && close.paid_total == total,
        "paid {} popugs {} in all; expected {popugs} and {total}",
        close.payout_count,
        close.paid_total
    );
    println!(
        "{backend}: closed a day of {popugs} positive balances in {:.2} s ({:.0} payouts/s)",
        took.as_secs_f64(),
        popugs as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// One account and one reward entry per popug, logged on 1 March 2026; the sum of balances.
async fn seed(db: &Db, popugs: usize) -> anyhow::Result<i64> {
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")?.timestamp_micros();
    let mut total = 0;
    let mut tx = db.begin_write().await?;
    let mut entries = Vec::with_capacity(popugs * 6);
    let mut accounts = Vec::with_capacity(popugs * 2);
    for i in 0..popugs {
        let popug = format!("popug-{i:07}");
        let amount = 20 + (i % 21) as i64;
        total += amount;
        entries.extend([
            Value::from(format!("seed-{i}")),
            "TASK_COMPLETED".into(),
            amount.into(),
            amount.into(),
            popug.clone().into(),
            at.into(),
        ]);
        accounts.extend([Value::from(popug), amount.into()]);
    }
    ates_db::insert_rows(
        &mut tx,
        "INSERT INTO audit_log (event_id, kind, amount, balance_after, popug_id, logged_at) VALUES",
        "",
        6,
        entries,
    )
    .await?;
    ates_db::insert_rows(
        &mut tx,
        "INSERT INTO accounts (popug_id, balance) VALUES",
        "",
        2,
        accounts,
    )
    .await?;
    tx.commit().await?;
    Ok(total)
}
