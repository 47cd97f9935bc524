//! A day close racing other writers: a second closer that holds no common lock, and the
//! ledger moving the same accounts after midnight. Each popug is paid once, exactly its
//! balance at the day's end.

mod support;

use accounting_domain::{Calendar, Payday};
use chrono::NaiveDate;
use support::{Store, entry};

const POPUGS: i64 = 200;

async fn race(store: &Store) {
    let db = &store.db;
    let day = NaiveDate::from_ymd_opt(2026, 3, 1).expect("date");
    for i in 0..POPUGS {
        let popug = format!("p{i:03}");
        let task = format!("t{i:03}");
        entry(
            db,
            &popug,
            "TASK_COMPLETED",
            &task,
            20 + i % 7,
            "2026-03-01T12:00:00Z",
        )
        .await;
    }
    // Two closers with locks of their own, one batch each popug, and a ledger charging every
    // popug a fee after midnight: that money is the next day's.
    let first = Payday::new(db.clone(), Calendar::utc()).with_batch(1);
    let second = Payday::new(db.clone(), Calendar::utc()).with_batch(3);
    let ledger = async {
        for i in 0..POPUGS {
            let popug = format!("p{i:03}");
            let task = format!("u{i:03}");
            entry(
                db,
                &popug,
                "TASK_ASSIGNED",
                &task,
                -11,
                "2026-03-02T00:00:01Z",
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
async fn a_close_racing_a_closer_and_the_ledger() {
    on_each_store!("2026-03-02T00:00:05Z", race);
}
