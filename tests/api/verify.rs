//! `gateway verify` and `ledgerCheck`: the ledger checks itself on the live database. A
//! healthy ledger passes; each invariant, broken on purpose by SQL (the append-only triggers
//! dropped), is caught and named, and the command exits 1.

use accounting_domain::{Calendar, Ledger, Payday};
use serde_json::json;
use task_domain::{NewTask, Popugs, TaskId, Tracker};

use crate::helpers::{TestApp, TestDatabase, domain_popugs, run_gateway};
use crate::on_both_backends;

on_both_backends!(a_healthy_ledger_passes_and_each_breach_is_named);

/// A ledger with every kind of entry: tasks created, assigned, completed, and a day closed
/// with payouts. Written through the domains, with no gateway running.
async fn history(database: &TestDatabase) -> ates_db::Db {
    let db = database.connect_at("2026-03-01T10:00:00Z").await;
    let popugs = Popugs::new(db.clone());
    let tracker = Tracker::new(db.clone(), Popugs::new(db.clone()));
    let actors = domain_popugs(&popugs, &["manager", "worker", "worker", "worker"]).await;
    let mut created = Vec::new();
    for i in 0..12 {
        let new = NewTask {
            title: format!("Task {i}"),
            jira_id: None,
            description: String::new(),
        };
        created.push(
            tracker
                .create(&actors[0], new)
                .await
                .expect("created")
                .value,
        );
    }
    // Every task completed: each reward is at least its fee, so the workers end the day above
    // zero and are paid.
    for task in &created {
        let assignee = actors
            .iter()
            .find(|actor| actor.id == task.assignee_id)
            .expect("the assignee");
        tracker
            .complete(assignee, &TaskId(task.id.0.clone()))
            .await
            .expect("completed");
    }
    Ledger::new(db.clone()).catch_up().await.expect("posted");
    database.set_clock("2026-03-02T00:10:00Z");
    let day = "2026-03-01".parse().expect("a day");
    Payday::new(db.clone(), Calendar::utc())
        .close_through(day)
        .await
        .expect("closed");
    // The ledger passes the payouts' events too, as a running gateway's would.
    Ledger::new(db.clone()).catch_up().await.expect("caught up");
    db
}

/// `gateway verify` on the database: whether it passed, and what it printed.
fn verify(database: &TestDatabase) -> (bool, String) {
    let clock = database.folder().join("clock");
    run_gateway(
        &["verify", "--max-backlog-secs", "60"],
        &[
            ("DATABASE_URL", &database.url),
            ("ATES_DATA_DIR", database.folder().to_str().unwrap()),
            ("ATES_CLOCK_FILE", clock.to_str().unwrap()),
        ],
    )
}

/// The line of the check named `name`.
fn line<'a>(printed: &'a str, name: &str) -> &'a str {
    printed
        .lines()
        .find(|line| line.contains(name))
        .unwrap_or_else(|| panic!("no check `{name}` in:\n{printed}"))
}

async fn a_healthy_ledger_passes_and_each_breach_is_named(database: TestDatabase) {
    let db = history(&database).await;
    let (ok, printed) = verify(&database);
    assert!(ok, "{printed}");
    assert_eq!(
        printed.lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{printed}"
    );
    assert!(printed.contains("the ledger holds"), "{printed}");
    assert!(
        line(&printed, "one payout per popug and day").contains(" 0 popug-days"),
        "{printed}"
    );

    let unguarded = match db.backend() {
        ates_db::Backend::Postgres => {
            "DROP TRIGGER audit_log_append_only ON audit_log; DROP TRIGGER outbox_append_only ON outbox;"
        }
        ates_db::Backend::Sqlite => {
            "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
             DROP TRIGGER outbox_no_update; DROP TRIGGER outbox_no_delete;"
        }
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(unguarded))
        .execute(db.pool())
        .await
        .expect("drop the guards");
    // Each breach, on a copy of the healthy state: broken, named, then mended.
    let breaches = [
        (
            "balances are the sums of their logs",
            // An account that exists: the tasks go to random workers, and a worker who got
            // none has no account.
            "UPDATE accounts SET balance = balance + 1 \
             WHERE popug_id = (SELECT MIN(popug_id) FROM accounts)",
            "UPDATE accounts SET balance = balance - 1 \
             WHERE popug_id = (SELECT MIN(popug_id) FROM accounts)",
        ),
        (
            "one log entry per handled event",
            "INSERT INTO handled_events (consumer, event_id) VALUES ('accounting', 'an-event-never-logged')",
            "DELETE FROM handled_events WHERE event_id = 'an-event-never-logged'",
        ),
        (
            "at most one reward per task",
            "INSERT INTO audit_log (event_id, kind, amount, balance_after, task_id, popug_id, logged_at) \
             SELECT 'a-second-reward', kind, 0, balance_after, task_id, popug_id, logged_at \
             FROM audit_log WHERE kind = 'TASK_COMPLETED' ORDER BY seq LIMIT 1",
            "DELETE FROM audit_log WHERE event_id = 'a-second-reward'",
        ),
        (
            "fees less rewards are what the popugs lost on tasks",
            // One off the price (down from the highest, which the price's check allows no
            // higher), then back to the reward the log paid.
            "UPDATE task_prices SET reward = CASE WHEN reward < 40 THEN reward + 1 ELSE reward - 1 END \
             WHERE task_id = \
             (SELECT task_id FROM audit_log WHERE kind = 'TASK_COMPLETED' ORDER BY seq LIMIT 1)",
            "UPDATE task_prices SET reward = (SELECT amount FROM audit_log \
             WHERE kind = 'TASK_COMPLETED' AND audit_log.task_id = task_prices.task_id) \
             WHERE task_id = \
             (SELECT task_id FROM audit_log WHERE kind = 'TASK_COMPLETED' ORDER BY seq LIMIT 1)",
        ),
        (
            "one payout per popug and day",
            "UPDATE audit_log SET kind = 'TASK_CREATED' WHERE seq = \
             (SELECT MIN(seq) FROM audit_log WHERE kind = 'PAYOUT')",
            "UPDATE audit_log SET kind = 'PAYOUT' WHERE seq = \
             (SELECT MIN(l.seq) FROM audit_log l JOIN payouts p ON p.id = l.event_id)",
        ),
        (
            "no event waits long for the ledger",
            "INSERT INTO outbox (id, event_type, version, aggregate_id, payload, occurred_at) \
             VALUES ('a-stuck-event', 'task.created', 1, 'no-such-task', '{}', 0)",
            "DELETE FROM outbox WHERE id = 'a-stuck-event'",
        ),
    ];
    for (name, breach, mend) in breaches {
        sqlx::raw_sql(sqlx::AssertSqlSafe(breach))
            .execute(db.pool())
            .await
            .unwrap_or_else(|e| panic!("break `{name}`: {e}"));
        let (ok, printed) = verify(&database);
        assert!(!ok, "`{name}` broken, and verify passed:\n{printed}");
        assert!(
            line(&printed, name).starts_with("BROKEN"),
            "{name}:\n{printed}"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(mend))
            .execute(db.pool())
            .await
            .unwrap_or_else(|e| panic!("mend `{name}`: {e}"));
        let (ok, printed) = verify(&database);
        assert!(ok, "`{name}` mended, and verify failed:\n{printed}");
    }
}

/// The same check over GraphQL. On one store only: the metric is the process's, and the
/// other store's run would set it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_query_checks_the_ledger_and_sets_the_metric() {
    let app = TestApp::sqlite().await;
    let admin = app.user("admin", "ada").await;
    let manager = app.user("manager", "mark").await;
    app.user("worker", "bob").await;
    for i in 0..3 {
        app.create_task(&manager, &format!("Task {i}")).await;
    }
    let query = "{ ledgerCheck { holds violations checks { name figure violations } } }";
    let data = app.ok(&admin, query, json!({})).await;
    assert_eq!(data["ledgerCheck"]["holds"], true, "{data}");
    assert_eq!(
        data["ledgerCheck"]["checks"].as_array().map(Vec::len),
        Some(6)
    );
    assert_gauge(&app, "ates_ledger_invariant_violations 0").await;
    sqlx::query("UPDATE accounts SET balance = balance + 5 WHERE popug_id IN (SELECT popug_id FROM accounts ORDER BY popug_id LIMIT 1)")
        .execute(app.db.pool())
        .await
        .expect("break a balance");
    let data = app.ok(&admin, query, json!({})).await;
    assert_eq!(data["ledgerCheck"]["holds"], false, "{data}");
    assert_eq!(data["ledgerCheck"]["violations"], 1, "{data}");
    assert_gauge(&app, "ates_ledger_invariant_violations 1").await;
    assert_eq!(
        app.error_code(Some(&manager.token), query, json!({})).await,
        "FORBIDDEN"
    );
}

/// `/metrics` shows `line`.
async fn assert_gauge(app: &TestApp, line: &str) {
    app.scrape_until(line).await;
}
