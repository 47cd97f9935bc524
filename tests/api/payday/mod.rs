//! Make Payment: day close, payouts, the payment system, mail, and the daily figures.
//!
//! The gateway takes business time from a clock file the tests set, so a test can live
//! through a day and its midnight in milliseconds.
//!
//! - `close`: the day close, its figures, and days missed while the gateway was down;
//! - `delivery`: payouts to the payment system and mail over SMTP, with retries;
//! - `recovery`: a close cut short by a crash, two closers at once, a deleted popug;
//! - `statement`: a popug's day statement, and why a payout was or was not made;
//! - `tls`: payouts over HTTPS and mail over STARTTLS, untrusted certificates, and production
//!   refusing plain delivery.

mod close;
mod delivery;
mod recovery;
mod statement;
mod tls;

use std::time::Duration;

use ates_db::Db;
use gateway::Config;
use serde_json::json;

use crate::helpers::{TestApp, TestDatabase, User, WantedFakes};

const CLOSE: &str = "mutation($day: Date!) { closeDay(day: $day) { \
    day { day payoutCount paidTotal negativeBalanceCount } \
    closedNow { day payoutCount paidTotal negativeBalanceCount } } }";

/// A gateway on `database` whose clock reads `at`; the scheduler only looks at start unless
/// `adjust` says otherwise.
async fn app_at(database: TestDatabase, at: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
    app_with_fakes_at(database, WantedFakes::default(), at, adjust).await
}

/// The same, wired to the fakes asked for.
async fn app_with_fakes_at(
    database: TestDatabase,
    fakes: WantedFakes,
    at: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let clock = database.set_clock(at);
    TestApp::start_with_fakes(database, fakes, |config| {
        config.server.clock_file = Some(clock);
        config.payday.close_check_secs = 3600;
        config.payday.delivery_backoff_ms = 20;
        adjust(config);
    })
    .await
}

async fn balance(app: &TestApp, reader: &User, popug: &str) -> i64 {
    let data = app
        .ok(
            reader,
            "query($id: ID) { account(popugId: $id) { balance } }",
            json!({ "id": popug }),
        )
        .await;
    data["account"]["balance"].as_i64().expect("a balance")
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db.pool())
        .await
        .expect("count")
}

/// Waits (bounded) until `sql` counts `expected`.
async fn wait_for_count(db: &Db, sql: &str, expected: i64) {
    let mut last = -1;
    for _ in 0..300 {
        last = count(db, sql).await;
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{sql} counted {last}, not {expected}, within 15 s");
}

/// Log entries written straight into the store, each moving its popug's balance: a scripted
/// history whose figures are computed by hand below.
async fn seed(db: &Db, entries: &[(&str, &str, &str, i64, &str)]) {
    for (popug, kind, task, amount, at) in entries {
        let at = chrono::DateTime::parse_from_rfc3339(at).expect("an instant");
        let mut tx = db.begin_write().await.expect("begin");
        let balance: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (popug_id, balance) VALUES ($1, $2) \
             ON CONFLICT (popug_id) DO UPDATE SET balance = accounts.balance + excluded.balance \
             RETURNING balance",
        )
        .bind(popug.to_string())
        .bind(*amount)
        .fetch_one(&mut *tx)
        .await
        .expect("move money");
        sqlx::query(
            "INSERT INTO audit_log (event_id, kind, amount, balance_after, task_id, popug_id, logged_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(kind.to_string())
        .bind(*amount)
        .bind(balance)
        .bind(task.to_string())
        .bind(popug.to_string())
        .bind(at.timestamp_micros())
        .execute(&mut *tx)
        .await
        .expect("log");
        tx.commit().await.expect("commit");
    }
}

/// Many popugs at once, each with one reward completed at noon on 1 March and the balance it
/// gave: written in two statements, so hundreds take no time.
async fn seed_rewards(db: &Db, popugs: &[(String, i64)]) {
    let noon = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .expect("an instant")
        .timestamp_micros();
    let entries = popugs.iter().flat_map(|(popug, amount)| {
        [
            ates_db::Value::from(uuid::Uuid::new_v4().to_string()),
            "TASK_COMPLETED".into(),
            (*amount).into(),
            (*amount).into(),
            format!("task-of-{popug}").into(),
            popug.as_str().into(),
            noon.into(),
        ]
    });
    let accounts = popugs
        .iter()
        .flat_map(|(popug, amount)| [ates_db::Value::from(popug.as_str()), (*amount).into()]);
    let mut conn = db.pool().acquire().await.expect("a connection");
    ates_db::insert_rows(
        &mut conn,
        "INSERT INTO audit_log (event_id, kind, amount, balance_after, task_id, popug_id, logged_at) VALUES",
        "",
        7,
        entries.collect(),
    )
    .await
    .expect("seed the log");
    ates_db::insert_rows(
        &mut conn,
        "INSERT INTO accounts (popug_id, balance) VALUES",
        "",
        2,
        accounts.collect(),
    )
    .await
    .expect("seed the accounts");
}
