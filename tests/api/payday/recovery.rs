//! A close cut short, two closers at once, and a popug deleted with money: still once each.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::{CLOSE, app_at, balance, count, seed_rewards, wait_for_count};
use crate::helpers::{Gateway, TestDatabase, assert_ledger_invariants};
use crate::on_both_backends;

on_both_backends!(
    crash_mid_close_pays_everyone_exactly_once,
    a_deleted_popug_is_still_paid_at_day_close,
);

/// 500 popugs with money, paid one per transaction; the gateway is killed while it pays them and
/// started again: each is paid exactly once, the exact amount.
async fn crash_mid_close_pays_everyone_exactly_once(database: TestDatabase) {
    let db = database.connect().await;
    let popugs: Vec<(String, i64)> = (0..500)
        .map(|i| (format!("popug-{i:03}"), 20 + i % 17))
        .collect();
    seed_rewards(&db, &popugs).await;

    let clock = database.set_clock("2026-03-02T00:01:00Z");
    let clock = clock.display().to_string();
    let env = [
        ("ATES_CLOCK_FILE", clock.as_str()),
        ("ATES_CLOSE_BATCH", "1"),
        ("ATES_CLOSE_CHECK_SECS", "1"),
    ];
    let gateway = Gateway::start_with(&database, &env);
    // Kill it once some, not all, are paid.
    let mut seen = 0;
    for _ in 0..20_000 {
        seen = count(&db, "SELECT COUNT(*) FROM payouts").await;
        if seen >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gateway.kill();
    let at_kill = count(&db, "SELECT COUNT(*) FROM payouts").await;
    assert!(
        (20..500).contains(&at_kill) && seen >= 20,
        "the kill should land mid-close; {at_kill} of 500 were paid"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM day_closes").await, 0);

    let _gateway = Gateway::start_with(&database, &env);
    wait_for_count(&db, "SELECT COUNT(*) FROM day_closes", 1).await;
    let paid: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT popug_id, amount FROM payouts WHERE day = '2026-03-01'",
    )
    .fetch_all(db.pool())
    .await
    .expect("payouts")
    .into_iter()
    .collect();
    assert_eq!(paid.len(), 500);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM payouts").await, 500);
    for (popug, amount) in &popugs {
        assert_eq!(paid.get(popug), Some(amount), "{popug}");
    }
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM accounts WHERE balance <> 0").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM audit_log WHERE kind = 'PAYOUT'").await,
        500
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'payout.made'"
        )
        .await,
        500
    );
    let (count_closed, total): (i64, i64) =
        sqlx::query_as("SELECT payout_count, paid_total FROM day_closes")
            .fetch_one(db.pool())
            .await
            .expect("the close");
    assert_eq!(count_closed, 500);
    assert_eq!(total, popugs.iter().map(|(_, a)| a).sum::<i64>());
}

/// Two processes close the same day of one PostgreSQL database at once: one pays, the other
/// finds it paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_close_one_day_once() {
    let Some(database) = TestDatabase::postgres().await else {
        return;
    };
    let db = database.connect().await;
    let entries: Vec<(String, i64)> = (0..300).map(|i| (format!("p{i:03}"), 21 + i % 5)).collect();
    seed_rewards(&db, &entries).await;
    let clock = database.set_clock("2026-03-02T08:00:00Z");
    let close = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .env("DATABASE_URL", &database.url)
            .env("ATES_CLOCK_FILE", &clock)
            .env("ATES_CLOSE_BATCH", "10")
            .env("RUST_LOG", "error")
            .args(["close-day", "--day", "2026-03-01"])
            .output()
    };
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(close);
        let second = scope.spawn(close);
        (first.join(), second.join())
    });
    let outputs = [first, second].map(|o| o.expect("joined").expect("ran"));
    for output in &outputs {
        assert!(
            output.status.success(),
            "close-day failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let said: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect();
    assert_eq!(
        said.iter()
            .filter(|s| s.contains("closed 2026-03-01: 300 payouts"))
            .count(),
        1,
        "{said:?}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM payouts").await, 300);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM (SELECT DISTINCT popug_id FROM payouts) p"
        )
        .await,
        300
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM accounts WHERE balance <> 0").await,
        0
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM day_closes").await, 1);
}

/// The auth service deletes a popug with money on its account: the account stays, and the day
/// close pays it as anyone else's.
async fn a_deleted_popug_is_still_paid_at_day_close(database: TestDatabase) {
    let app = app_at(database, "2026-03-01T10:00:00Z", |_| {}).await;
    let manager = app.user("manager", "mark").await;
    let accountant = app.user("accountant", "ada").await;
    let alice = app.user("worker", "alice").await;
    // Ada can be assigned too; Alice completes whatever comes to her until she is ahead.
    let mut alice_balance = 0;
    for i in 0..40 {
        let task = app.create_task(&manager, &format!("feed {i}")).await;
        if task["assignee"]["id"] == alice.id.as_str() {
            app.ok(
                &alice,
                "mutation($id: ID!) { completeTask(id: $id) { id } }",
                json!({ "id": task["id"] }),
            )
            .await;
            crate::helpers::settled(&app.db).await;
            alice_balance = balance(&app, &accountant, &alice.id).await;
            if alice_balance > 0 {
                break;
            }
        }
    }
    assert!(alice_balance > 0, "alice never got ahead: {alice_balance}");

    let deleted = crate::auth_events::message(
        "popug.deleted",
        chrono::Utc::now(),
        1,
        &alice.key,
        json!({}),
    );
    assert_eq!(app.auth_event(&deleted).await, "applied");
    assert_eq!(
        app.error_code(Some(&alice.token), "{ me { id } }", json!({}))
            .await,
        "FORBIDDEN"
    );
    assert_eq!(balance(&app, &accountant, &alice.id).await, alice_balance);

    app.database.set_clock("2026-03-02T00:00:05Z");
    let closed = app
        .ok(&accountant, CLOSE, json!({ "day": "2026-03-01" }))
        .await;
    let paid: i64 = sqlx::query_scalar("SELECT amount FROM payouts WHERE popug_id = $1")
        .bind(&alice.key)
        .fetch_one(app.db.pool())
        .await
        .expect("alice has a payout");
    assert_eq!(paid, alice_balance);
    assert!(closed["closeDay"]["day"]["paidTotal"].as_i64().unwrap() >= alice_balance);
    assert_eq!(balance(&app, &accountant, &alice.id).await, 0);
    assert_ledger_invariants(&app.db).await;
}
