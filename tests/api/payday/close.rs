//! The day close: who is paid, once, with exact figures, and days closed late.

use serde_json::json;

use super::{CLOSE, app_at, balance, count, seed, wait_for_count};
use crate::helpers::{
    TestDatabase, assert_events_match_their_schemas, assert_ledger_invariants, global_id,
};
use crate::on_both_backends;

on_both_backends!(
    day_close_pays_positive_balances_once,
    missed_days_close_by_themselves_oldest_first_with_exact_figures,
    figures_refuse_bad_ranges_and_other_roles,
);

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
    let top = |from: &str, to: &str, task: Option<(&str, i64)>| json!({ "from": from, "to": to, "task": task.map(|(id, reward)| json!({ "taskId": global_id("Task", id), "reward": reward })) });
    assert_eq!(
        data["analytics"],
        json!({
            "earnings2": -32,
            "earningsToday": 0,
            "negative3": 2,
            "negativeNow": 2,
            "range": { "taskId": global_id("Task", "t4"), "reward": 38, "completedAt": "2026-03-02T11:00:00+00:00" },
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
