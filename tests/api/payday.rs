//! Make Payment: day close, payouts, the payment system, mail, and the daily figures.
//!
//! The gateway takes business time from a clock file the tests set, so a test can live
//! through a day and its midnight in milliseconds.

use std::collections::HashMap;
use std::time::Duration;

use ates_db::Db;
use gateway::Config;
use serde_json::json;

use crate::helpers::{
    Gateway, TestApp, TestDatabase, User, WantedFakes, assert_events_match_their_schemas,
    assert_ledger_invariants,
};
use crate::on_both_backends;

on_both_backends!(
    day_close_pays_positive_balances_once,
    missed_days_close_by_themselves_oldest_first_with_exact_figures,
    figures_refuse_bad_ranges_and_other_roles,
    payment_system_failing_twice_then_succeeding,
    failed_payout_is_retried_by_admin,
    mail_goes_over_smtp,
    crash_mid_close_pays_everyone_exactly_once,
    a_deleted_popug_is_still_paid_at_day_close,
);

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

async fn day_close_pays_positive_balances_once(database: TestDatabase) {
    let app = app_at(database, "2026-03-01T10:00:00Z", |_| {}).await;
    let manager = app.user("manager", "mark").await;
    let admin = app.user("admin", "root").await;
    let alice = app.user("worker", "alice").await;

    // Alice is the only one to assign to: she gets and completes three tasks.
    for i in 0..3 {
        let task = app
            .create_task(&manager, &format!("feed the parrots {i}"))
            .await;
        assert_eq!(task["assignee"]["id"], alice.id.as_str());
        app.ok(
            &alice,
            "mutation($id: ID!) { completeTask(id: $id) { id } }",
            json!({ "id": task["id"] }),
        )
        .await;
    }
    // Bob arrives and is handed a task he does not finish.
    let bob = app.user("worker", "bob").await;
    let mut bob_has_one = false;
    for i in 0..60 {
        let task = app
            .create_task(&manager, &format!("sweep the cage {i}"))
            .await;
        if task["assignee"]["id"] == bob.id.as_str() {
            bob_has_one = true;
            break;
        }
    }
    assert!(bob_has_one, "sixty draws never picked bob");
    // Alice finishes whatever the draws gave her, so every fee of hers is met by a reward.
    let open = app
        .ok(
            &alice,
            "{ myTasks(status: OPEN, first: 100) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    for edge in open["myTasks"]["edges"].as_array().expect("edges") {
        app.ok(
            &alice,
            "mutation($id: ID!) { completeTask(id: $id) { id } }",
            json!({ "id": edge["node"]["id"] }),
        )
        .await;
    }
    // Accountants can be assigned tasks too: this one arrives after the last draw.
    let accountant = app.user("accountant", "ada").await;
    let alice_balance = balance(&app, &accountant, &alice.id).await;
    let bob_balance = balance(&app, &accountant, &bob.id).await;
    assert!(
        alice_balance > 0,
        "alice's rewards outweigh her fees: {alice_balance}"
    );
    assert!(bob_balance < 0, "bob only paid fees: {bob_balance}");

    // A day that has not ended, or a role that may not close, changes nothing.
    let day = json!({ "day": "2026-03-01" });
    assert_eq!(
        app.error_code(Some(&accountant.token), CLOSE, day.clone())
            .await,
        "BAD_USER_INPUT"
    );
    for who in [&alice, &manager] {
        assert_eq!(
            app.error_code(Some(&who.token), CLOSE, day.clone()).await,
            "FORBIDDEN"
        );
    }
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM payouts").await, 0);

    // Midnight passes; the accountant closes the day.
    app.database.set_clock("2026-03-02T00:00:05Z");
    let closed = app.ok(&accountant, CLOSE, day.clone()).await;
    let expected = json!({
        "day": "2026-03-01", "payoutCount": 1, "paidTotal": alice_balance, "negativeBalanceCount": 1,
    });
    assert_eq!(closed["closeDay"]["day"], expected);
    assert_eq!(closed["closeDay"]["closedNow"], json!([expected]));
    assert_eq!(balance(&app, &accountant, &alice.id).await, 0);
    assert_eq!(balance(&app, &accountant, &bob.id).await, bob_balance);

    // Alice sees the payout in her log of the day the log received it.
    let log = app
        .ok(
            &alice,
            "{ account { log(day: \"2026-03-02\") { edges { node { kind amount balanceAfter task { id } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        log["account"]["log"]["edges"],
        json!([{ "node": { "kind": "PAYOUT", "amount": -alice_balance, "balanceAfter": 0, "task": null } }])
    );

    // Closing again pays nobody again.
    let again = app.ok(&admin, CLOSE, day.clone()).await;
    assert_eq!(again["closeDay"]["day"], expected);
    assert_eq!(again["closeDay"]["closedNow"], json!([]));
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM payouts").await, 1);

    // With no payment system configured the ledger settles it; with no SMTP the mail waits
    // in the mailbox.
    wait_for_count(
        &app.db,
        "SELECT COUNT(*) FROM payouts WHERE status = 'PAID' AND settled_by = 'ledger'",
        1,
    )
    .await;
    wait_for_count(
        &app.db,
        "SELECT COUNT(*) FROM mail WHERE status = 'SENT' AND sent_via = 'mailbox'",
        1,
    )
    .await;
    let payouts = "query($filter: PayoutFilter) { payouts(filter: $filter) { edges { node { \
                   popug { id } day amount earned status settledBy } } } }";
    let mine = app.ok(&alice, payouts, json!({})).await;
    assert_eq!(
        mine["payouts"]["edges"],
        json!([{ "node": {
            "popug": { "id": alice.id }, "day": "2026-03-01", "amount": alice_balance,
            "earned": alice_balance, "status": "PAID", "settledBy": "ledger",
        } }])
    );
    let none = app.ok(&bob, payouts, json!({})).await;
    assert_eq!(none["payouts"]["edges"], json!([]));
    assert_eq!(
        app.error_code(
            Some(&bob.token),
            payouts,
            json!({ "filter": { "popugId": alice.id } })
        )
        .await,
        "FORBIDDEN"
    );
    let mailbox =
        "{ mailbox { edges { node { popug { id } address subject body status sentVia } } } }";
    let mail = app.ok(&admin, mailbox, json!({})).await;
    let edges = mail["mailbox"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 1, "{mail}");
    let message = &edges[0]["node"];
    assert_eq!(message["popug"]["id"], alice.id.as_str());
    assert_eq!(message["address"], "alice@uberpopug.test");
    assert_eq!(message["status"], "SENT");
    assert_eq!(message["sentVia"], "mailbox");
    let body = message["body"].as_str().expect("a body");
    assert!(
        body.contains(&format!("earned {alice_balance}"))
            && body.contains(&format!("balance of {alice_balance} was paid out")),
        "{body}"
    );
    assert_eq!(
        app.error_code(Some(&accountant.token), mailbox, json!({}))
            .await,
        "FORBIDDEN"
    );

    // The next day nobody is due: alice is at zero, bob's debt carries over untouched.
    app.database.set_clock("2026-03-03T00:00:05Z");
    let next = app
        .ok(&accountant, CLOSE, json!({ "day": "2026-03-02" }))
        .await;
    assert_eq!(
        next["closeDay"]["day"],
        json!({ "day": "2026-03-02", "payoutCount": 0, "paidTotal": 0, "negativeBalanceCount": 1 })
    );
    assert_eq!(balance(&app, &accountant, &bob.id).await, bob_balance);
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM payouts").await, 1);
    assert_eq!(app.events_of("payout.made").await.len(), 1);
    assert_events_match_their_schemas(&app).await;
    assert_ledger_invariants(&app.db).await;
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

const WEEK: &[(&str, &str, &str, i64, &str)] = &[
    ("A", "TASK_ASSIGNED", "t1", -15, "2026-03-01T09:00:00Z"),
    ("B", "TASK_ASSIGNED", "t2", -12, "2026-03-01T10:00:00Z"),
    ("A", "TASK_COMPLETED", "t1", 23, "2026-03-01T11:00:00Z"),
    ("A", "TASK_ASSIGNED", "t3", -20, "2026-03-02T09:00:00Z"),
    ("C", "TASK_ASSIGNED", "t4", -10, "2026-03-02T10:00:00Z"),
    ("C", "TASK_COMPLETED", "t4", 38, "2026-03-02T11:00:00Z"),
    ("B", "TASK_ASSIGNED", "t5", -14, "2026-03-02T12:00:00Z"),
    // As rewarding as t4, but completed later: t4 stays the most expensive.
    ("A", "TASK_COMPLETED", "t3", 38, "2026-03-02T13:00:00Z"),
    ("C", "TASK_ASSIGNED", "t6", -11, "2026-03-03T09:00:00Z"),
    ("C", "TASK_COMPLETED", "t6", 28, "2026-03-03T10:00:00Z"),
    ("A", "TASK_ASSIGNED", "t7", -19, "2026-03-03T11:00:00Z"),
];

/// The gateway was down over three midnights. When it starts, its scheduler closes 1, 2 and 3
/// March in that order, each paying the balance at that day's end:
/// - 1 March: A 8 (−15 + 23); B is at −12 and not paid.
/// - 2 March: A 18 (−20 + 38), C 28 (−10 + 38); B at −26.
/// - 3 March: C 17 (−11 + 28); A ends at −19 and is not paid.
async fn missed_days_close_by_themselves_oldest_first_with_exact_figures(database: TestDatabase) {
    let db = database.connect().await;
    seed(&db, WEEK).await;
    let app = app_at(database, "2026-03-04T10:00:00Z", |config| {
        config.payday.close_check_secs = 1;
    })
    .await;
    wait_for_count(&app.db, "SELECT COUNT(*) FROM day_closes", 3).await;
    let paid: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT day, popug_id, amount, earned FROM payouts ORDER BY day, popug_id")
            .fetch_all(app.db.pool())
            .await
            .expect("payouts");
    let expected = [
        ("2026-03-01", "A", 8, 8),
        ("2026-03-02", "A", 18, 18),
        ("2026-03-02", "C", 28, 28),
        ("2026-03-03", "C", 17, 17),
    ]
    .map(|(d, p, a, e)| (d.to_owned(), p.to_owned(), a, e));
    assert_eq!(paid, expected);
    let balances: Vec<(String, i64)> =
        sqlx::query_as("SELECT popug_id, balance FROM accounts ORDER BY popug_id")
            .fetch_all(app.db.pool())
            .await
            .expect("balances");
    assert_eq!(
        balances,
        [("A", -19), ("B", -26), ("C", 0)].map(|(p, b)| (p.to_owned(), b))
    );

    let admin = app.user("admin", "root").await;
    let accountant = app.user("accountant", "ada").await;
    let summaries = "query($from: Date!, $to: Date!) { dailySummaries(from: $from, to: $to) { \
        day feesDebited rewardsCredited managementEarnings payoutCount paidTotal negativeBalanceCount closed } }";
    let data = app
        .ok(
            &accountant,
            summaries,
            json!({ "from": "2026-03-01", "to": "2026-03-04" }),
        )
        .await;
    let day =
        |day: &str, fees: i64, rewards: i64, count: i64, paid: i64, negative: i64, closed: bool| {
            json!({
                "day": day, "feesDebited": fees, "rewardsCredited": rewards,
                "managementEarnings": fees - rewards, "payoutCount": count, "paidTotal": paid,
                "negativeBalanceCount": negative, "closed": closed,
            })
        };
    assert_eq!(
        data["dailySummaries"],
        json!([
            day("2026-03-01", 27, 23, 1, 8, 1, true),
            day("2026-03-02", 44, 76, 2, 46, 1, true),
            day("2026-03-03", 30, 28, 1, 17, 2, true),
            // Today: nothing moved yet, and A and B are below zero now.
            day("2026-03-04", 0, 0, 0, 0, 2, false),
        ])
    );

    let analytics = "{ analytics { \
        earnings2: managementEarnings(day: \"2026-03-02\") \
        earningsToday: managementEarnings \
        negative3: negativeBalanceCount(day: \"2026-03-03\") \
        negativeNow: negativeBalanceCount \
        range: mostExpensiveTask(from: \"2026-03-01\", to: \"2026-03-03\") { taskId reward completedAt } \
        empty: mostExpensiveTask(from: \"2026-02-01\", to: \"2026-02-28\") { taskId } \
        days: mostExpensiveTasks(period: DAY, from: \"2026-03-01\", to: \"2026-03-03\") { from to task { taskId reward } } \
        weeks: mostExpensiveTasks(period: WEEK, from: \"2026-03-01\", to: \"2026-03-08\") { from to task { taskId reward } } \
        months: mostExpensiveTasks(period: MONTH, from: \"2026-02-27\", to: \"2026-03-03\") { from to task { taskId reward } } \
    } }";
    let data = app.ok(&admin, analytics, json!({})).await;
    let top = |from: &str, to: &str, task: Option<(&str, i64)>| json!({ "from": from, "to": to, "task": task.map(|(id, reward)| json!({ "taskId": id, "reward": reward })) });
    assert_eq!(
        data["analytics"],
        json!({
            "earnings2": -32,
            "earningsToday": 0,
            "negative3": 2,
            "negativeNow": 2,
            "range": { "taskId": "t4", "reward": 38, "completedAt": "2026-03-02T11:00:00+00:00" },
            "empty": null,
            "days": [
                top("2026-03-03", "2026-03-03", Some(("t6", 28))),
                top("2026-03-02", "2026-03-02", Some(("t4", 38))),
                top("2026-03-01", "2026-03-01", Some(("t1", 23))),
            ],
            "weeks": [
                top("2026-03-02", "2026-03-08", Some(("t4", 38))),
                top("2026-03-01", "2026-03-01", Some(("t1", 23))),
            ],
            "months": [
                top("2026-03-01", "2026-03-03", Some(("t4", 38))),
                top("2026-02-27", "2026-02-28", None),
            ],
        })
    );
}

async fn figures_refuse_bad_ranges_and_other_roles(database: TestDatabase) {
    let app = app_at(database, "2026-03-04T10:00:00Z", |_| {}).await;
    let admin = app.user("admin", "root").await;
    let accountant = app.user("accountant", "ada").await;
    let manager = app.user("manager", "mark").await;
    let worker = app.user("worker", "wim").await;
    let summaries =
        "query($from: Date!, $to: Date!) { dailySummaries(from: $from, to: $to) { day } }";
    let range = |from: &str, to: &str| json!({ "from": from, "to": to });
    for who in [&manager, &worker] {
        assert_eq!(
            app.error_code(
                Some(&who.token),
                summaries,
                range("2026-03-01", "2026-03-02")
            )
            .await,
            "FORBIDDEN"
        );
    }
    assert_eq!(
        app.error_code(None, summaries, range("2026-03-01", "2026-03-02"))
            .await,
        "UNAUTHENTICATED"
    );
    let backwards = range("2026-03-02", "2026-03-01");
    assert_eq!(
        app.error_code(Some(&accountant.token), summaries, backwards.clone())
            .await,
        "BAD_USER_INPUT"
    );
    // 2024 is a leap year: 1 January to 31 December is 366 days, one more is too many.
    let year = app
        .ok(&accountant, summaries, range("2024-01-01", "2024-12-31"))
        .await;
    assert_eq!(year["dailySummaries"].as_array().map(Vec::len), Some(366));
    assert_eq!(
        app.error_code(
            Some(&accountant.token),
            summaries,
            range("2024-01-01", "2025-01-01")
        )
        .await,
        "BAD_USER_INPUT"
    );

    let top = "query($from: Date!, $to: Date!) { analytics { mostExpensiveTask(from: $from, to: $to) { reward } } }";
    for who in [&accountant, &manager, &worker] {
        assert_eq!(
            app.error_code(Some(&who.token), top, range("2026-03-01", "2026-03-02"))
                .await,
            "FORBIDDEN"
        );
    }
    assert_eq!(
        app.error_code(Some(&admin.token), top, backwards).await,
        "BAD_USER_INPUT"
    );
    let tops = "query($from: Date!, $to: Date!) { analytics { mostExpensiveTasks(period: WEEK, from: $from, to: $to) { from } } }";
    assert_eq!(
        app.error_code(Some(&admin.token), tops, range("2025-01-01", "2026-03-01"))
            .await,
        "BAD_USER_INPUT"
    );
    let retry = "mutation { retryPayout(id: \"nope\") { id } }";
    assert_eq!(
        app.error_code(Some(&accountant.token), retry, json!({}))
            .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(Some(&admin.token), retry, json!({})).await,
        "NOT_FOUND"
    );
}

/// One popug with a positive balance at the end of 1 March, and the clock past midnight.
async fn one_payout_due(
    database: TestDatabase,
    fakes: WantedFakes,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let db = database.connect().await;
    seed(
        &db,
        &[
            ("A", "TASK_ASSIGNED", "t1", -12, "2026-03-01T09:00:00Z"),
            ("A", "TASK_COMPLETED", "t1", 31, "2026-03-01T10:00:00Z"),
        ],
    )
    .await;
    app_with_fakes_at(database, fakes, "2026-03-02T00:10:00Z", adjust).await
}

async fn payment_system_failing_twice_then_succeeding(database: TestDatabase) {
    let fakes = WantedFakes {
        payments_failing_first: Some(2),
        ..WantedFakes::default()
    };
    let app = one_payout_due(database, fakes, |config| {
        config.payday.delivery_max_attempts = 5;
    })
    .await;
    let payments = app.fakes.payments.as_ref().expect("a payment system");
    let accountant = app.user("accountant", "ada").await;
    app.ok(&accountant, CLOSE, json!({ "day": "2026-03-01" }))
        .await;
    wait_for_count(
        &app.db,
        "SELECT COUNT(*) FROM payouts WHERE status = 'PAID' AND attempts = 3 AND settled_by = 'payment-system'",
        1,
    )
    .await;
    let id: String = sqlx::query_scalar("SELECT id FROM payouts")
        .fetch_one(app.db.pool())
        .await
        .expect("the payout");
    let requests = payments.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    for (key, body) in &requests {
        assert_eq!(key, &id, "every attempt carries the payout id as its key");
        assert_eq!(
            body,
            &json!({ "payoutId": id, "popugId": "A", "day": "2026-03-01", "amount": 19 })
        );
    }
}

async fn failed_payout_is_retried_by_admin(database: TestDatabase) {
    let fakes = WantedFakes {
        payments_failing_first: Some(3),
        ..WantedFakes::default()
    };
    let app = one_payout_due(database, fakes, |config| {
        config.payday.delivery_max_attempts = 3;
    })
    .await;
    let payments = app.fakes.payments.as_ref().expect("a payment system");
    let admin = app.user("admin", "root").await;
    app.ok(&admin, CLOSE, json!({ "day": "2026-03-01" })).await;
    wait_for_count(
        &app.db,
        "SELECT COUNT(*) FROM payouts WHERE status = 'FAILED' AND attempts = 3",
        1,
    )
    .await;
    let listed = app
        .ok(
            &admin,
            "{ payouts(filter: { status: FAILED }) { edges { node { id status attempts lastError } } } }",
            json!({}),
        )
        .await;
    let node = &listed["payouts"]["edges"][0]["node"];
    assert_eq!(node["attempts"], 3);
    assert!(
        node["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("503"),
        "{listed}"
    );
    // A payout that has not failed cannot be retried; the failed one can.
    let retry = "mutation($id: ID!) { retryPayout(id: $id) { id status attempts } }";
    let retried = app.ok(&admin, retry, json!({ "id": node["id"] })).await;
    assert_eq!(retried["retryPayout"]["status"], "PENDING");
    assert_eq!(retried["retryPayout"]["attempts"], 0);
    wait_for_count(
        &app.db,
        "SELECT COUNT(*) FROM payouts WHERE status = 'PAID' AND attempts = 1",
        1,
    )
    .await;
    assert_eq!(
        app.error_code(Some(&admin.token), retry, json!({ "id": node["id"] }))
            .await,
        "CONFLICT"
    );
    assert_eq!(payments.requests().len(), 4);
    // Money moved once, whatever the payment system did.
    assert_eq!(
        count(
            &app.db,
            "SELECT COUNT(*) FROM audit_log WHERE kind = 'PAYOUT'"
        )
        .await,
        1
    );
}

async fn mail_goes_over_smtp(database: TestDatabase) {
    let fakes = WantedFakes {
        smtp: true,
        ..WantedFakes::default()
    };
    let app = app_with_fakes_at(database, fakes, "2026-03-01T10:00:00Z", |_| {}).await;
    let smtp = app.fakes.smtp.as_ref().expect("an SMTP server");
    let manager = app.user("manager", "mark").await;
    let alice = app.user("worker", "alice").await;
    let task = app.create_task(&manager, "polish the perch").await;
    app.ok(
        &alice,
        "mutation($id: ID!) { completeTask(id: $id) { id } }",
        json!({ "id": task["id"] }),
    )
    .await;
    let earned = balance(&app, &alice, &alice.id).await;
    app.database.set_clock("2026-03-02T00:00:05Z");
    let admin = app.user("admin", "root").await;
    let closed = app.ok(&admin, CLOSE, json!({ "day": "2026-03-01" })).await;
    let paid = closed["closeDay"]["day"]["paidTotal"].as_i64().unwrap_or(0);
    assert_eq!(paid, earned.max(0));
    if paid == 0 {
        // A reward equal to the fee leaves nothing to pay, and nothing to write about.
        return;
    }
    wait_for_count(
        &app.db,
        "SELECT COUNT(*) FROM mail WHERE status = 'SENT' AND sent_via = 'smtp'",
        1,
    )
    .await;
    let messages = smtp.messages.lock().expect("lock").clone();
    assert_eq!(messages.len(), 1, "one message per payout: {messages:?}");
    let (to, data) = &messages[0];
    assert_eq!(to, &vec!["<alice@uberpopug.test>".to_owned()]);
    assert!(
        data.contains("Subject: Your aTES payout for 2026-03-01"),
        "{data}"
    );
    assert!(
        data.contains(&format!("balance of {paid} was paid out")),
        "{data}"
    );
}

/// 500 popugs with money, paid one per transaction; the gateway is killed while it pays them and
/// started again: each is paid exactly once, the exact amount.
async fn crash_mid_close_pays_everyone_exactly_once(database: TestDatabase) {
    let db = database.connect().await;
    let popugs: Vec<(String, i64)> = (0..500)
        .map(|i| (format!("popug-{i:03}"), 20 + i % 17))
        .collect();
    let mut values = Vec::new();
    for (popug, amount) in &popugs {
        values.extend([
            ates_db::Value::from(uuid::Uuid::new_v4().to_string()),
            "TASK_COMPLETED".into(),
            (*amount).into(),
            (*amount).into(),
            format!("task-of-{popug}").into(),
            popug.as_str().into(),
            chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
                .expect("instant")
                .timestamp_micros()
                .into(),
        ]);
    }
    let mut conn = db.pool().acquire().await.expect("connection");
    ates_db::insert_rows(
        &mut conn,
        "INSERT INTO audit_log (event_id, kind, amount, balance_after, task_id, popug_id, logged_at) VALUES",
        "",
        7,
        values,
    )
    .await
    .expect("seed the log");
    let accounts: Vec<ates_db::Value> = popugs
        .iter()
        .flat_map(|(p, a)| [ates_db::Value::from(p.as_str()), (*a).into()])
        .collect();
    ates_db::insert_rows(
        &mut conn,
        "INSERT INTO accounts (popug_id, balance) VALUES",
        "",
        2,
        accounts,
    )
    .await
    .expect("seed the accounts");
    drop(conn);

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
    let mut values = Vec::new();
    for (popug, amount) in &entries {
        values.extend([
            ates_db::Value::from(uuid::Uuid::new_v4().to_string()),
            "TASK_COMPLETED".into(),
            (*amount).into(),
            (*amount).into(),
            popug.as_str().into(),
            chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
                .expect("instant")
                .timestamp_micros()
                .into(),
        ]);
    }
    let mut conn = db.pool().acquire().await.expect("connection");
    ates_db::insert_rows(
        &mut conn,
        "INSERT INTO audit_log (event_id, kind, amount, balance_after, popug_id, logged_at) VALUES",
        "",
        6,
        values,
    )
    .await
    .expect("seed the log");
    let accounts: Vec<ates_db::Value> = entries
        .iter()
        .flat_map(|(p, a)| [ates_db::Value::from(p.as_str()), (*a).into()])
        .collect();
    ates_db::insert_rows(
        &mut conn,
        "INSERT INTO accounts (popug_id, balance) VALUES",
        "",
        2,
        accounts,
    )
    .await
    .expect("seed the accounts");
    drop(conn);
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

    let deleted =
        crate::auth_events::message("popug.deleted", chrono::Utc::now(), 1, &alice.id, json!({}));
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
        .bind(&alice.id)
        .fetch_one(app.db.pool())
        .await
        .expect("alice has a payout");
    assert_eq!(paid, alice_balance);
    assert!(closed["closeDay"]["day"]["paidTotal"].as_i64().unwrap() >= alice_balance);
    assert_eq!(balance(&app, &accountant, &alice.id).await, 0);
    assert_ledger_invariants(&app.db).await;
}
