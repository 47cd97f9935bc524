//! A day close racing other writers: a second closer that holds no common lock, and the
//! ledger moving the same accounts after midnight. Each popug is paid once, exactly its
//! balance at the day's end.

use std::sync::Arc;

use accounting_domain::{Calendar, Payday};
use ates_db::{Clock, Db, Value};
use chrono::NaiveDate;

const POPUGS: i64 = 200;

async fn store(url: &str, dir: &std::path::Path) -> Db {
    let clock = dir.join("clock");
    std::fs::write(&clock, "2026-03-02T00:00:05Z").expect("clock");
    let db = Db::connect(url, 8)
        .await
        .expect("connect")
        .with_clock(Clock::File(Arc::new(clock)));
    db.migrate().await.expect("migrate");
    db
}

/// `amount` for `popug`, logged at `at` (micros), moving the balance as the ledger would.
async fn entry(db: &Db, popug: &str, amount: i64, at: i64) {
    let mut tx = db.begin_write().await.expect("begin");
    let balance: i64 = sqlx::query_scalar(
        "INSERT INTO accounts (popug_id, balance) VALUES ($1, $2) \
         ON CONFLICT (popug_id) DO UPDATE SET balance = accounts.balance + excluded.balance \
         RETURNING balance",
    )
    .bind(popug.to_owned())
    .bind(amount)
    .fetch_one(&mut *tx)
    .await
    .expect("move");
    let mut conn = tx;
    ates_db::insert_rows(
        &mut conn,
        "INSERT INTO audit_log (event_id, kind, amount, balance_after, popug_id, logged_at) VALUES",
        "",
        6,
        vec![
            Value::from(uuid::Uuid::new_v4().to_string()),
            if amount < 0 {
                "TASK_ASSIGNED"
            } else {
                "TASK_COMPLETED"
            }
            .into(),
            amount.into(),
            balance.into(),
            popug.into(),
            at.into(),
        ],
    )
    .await
    .expect("log");
    conn.commit().await.expect("commit");
}

fn micros(at: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(at)
        .expect("instant")
        .timestamp_micros()
}

async fn race(url: &str, dir: &std::path::Path) {
    let db = store(url, dir).await;
    let day = NaiveDate::from_ymd_opt(2026, 3, 1).expect("date");
    for i in 0..POPUGS {
        entry(
            &db,
            &format!("p{i:03}"),
            20 + i % 7,
            micros("2026-03-01T12:00:00Z"),
        )
        .await;
    }
    // Two closers with locks of their own, one batch each popug, and a ledger charging every
    // popug a fee after midnight: that money is the next day's.
    let first = Payday::new(db.clone(), Calendar::utc()).with_batch(1);
    let second = Payday::new(db.clone(), Calendar::utc()).with_batch(3);
    let ledger = async {
        for i in 0..POPUGS {
            entry(
                &db,
                &format!("p{i:03}"),
                -11,
                micros("2026-03-02T00:00:01Z"),
            )
            .await;
        }
    };
    let (a, b, ()) = tokio::join!(first.close_through(day), second.close_through(day), ledger);
    a.expect("first close");
    b.expect("second close");

    let paid: Vec<(String, i64)> =
        sqlx::query_as("SELECT popug_id, amount FROM payouts ORDER BY popug_id")
            .fetch_all(db.pool())
            .await
            .expect("payouts");
    let expected: Vec<(String, i64)> = (0..POPUGS)
        .map(|i| (format!("p{i:03}"), 20 + i % 7))
        .collect();
    assert_eq!(
        paid, expected,
        "each popug paid once, its balance at midnight"
    );
    let wrong: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE balance <> -11")
        .fetch_one(db.pool())
        .await
        .expect("balances");
    assert_eq!(wrong, 0, "after the payout only the next day's fee remains");
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE kind = 'PAYOUT'")
        .fetch_one(db.pool())
        .await
        .expect("entries");
    assert_eq!(entries, POPUGS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_close_racing_a_closer_and_the_ledger() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("ates.db").display());
    race(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_close_racing_the_ledger() {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL run of this test");
        return;
    };
    let name = format!("ates_test_{}", uuid::Uuid::new_v4().simple());
    let url = ates_db::create_database(&admin, &name)
        .await
        .expect("create");
    let dir = tempfile::tempdir().expect("dir");
    race(&url, dir.path()).await;
    ates_db::drop_database(&admin, &name).await.expect("drop");
}
