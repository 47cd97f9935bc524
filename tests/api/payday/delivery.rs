//! Payouts to the payment system and their mail over SMTP: retried, failed, retried by hand,
//! and never paid twice, even when a restore makes one again.

use gateway::Config;
use serde_json::json;

use super::{CLOSE, app_with_fakes_at, balance, count, seed, wait_for_count};
use crate::helpers::{TestApp, TestDatabase, WantedFakes};
use crate::on_both_backends;

on_both_backends!(
    payment_system_failing_twice_then_succeeding,
    a_payout_made_again_after_a_restore_is_not_paid_twice,
    failed_payout_is_retried_by_admin,
    mail_goes_over_smtp,
);

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

/// The money went out; then the database lost the payout: a restore from before the close, or
/// a failover to a replica that lagged. The day closes again and makes the payout again, under
/// the same id, so the payment system sees a key it has paid and pays nothing more.
async fn a_payout_made_again_after_a_restore_is_not_paid_twice(database: TestDatabase) {
    let fakes = WantedFakes {
        payments_failing_first: Some(0),
        ..WantedFakes::default()
    };
    let app = one_payout_due(database, fakes, |_| {}).await;
    let payments = app.fakes.payments.as_ref().expect("a payment system");
    let accountant = app.user("accountant", "ada").await;
    app.ok(&accountant, CLOSE, json!({ "day": "2026-03-01" }))
        .await;
    let paid = "SELECT COUNT(*) FROM payouts WHERE status = 'PAID'";
    wait_for_count(&app.db, paid, 1).await;
    let id: String = sqlx::query_scalar("SELECT id FROM payouts")
        .fetch_one(app.db.pool())
        .await
        .expect("the payout");
    let day = "2026-03-01".parse().expect("a day");
    assert_eq!(id, accounting_domain::payout_id("A", day).to_string());

    // The state of before the close, as a restore would bring it back: no payout, no mail, no
    // PAYOUT entry or event, the day open, and the balance unpaid.
    let undo = match app.db.backend() {
        ates_db::Backend::Postgres => {
            "DROP TRIGGER audit_log_append_only ON audit_log; \
             DROP TRIGGER outbox_append_only ON outbox;"
        }
        ates_db::Backend::Sqlite => {
            "DROP TRIGGER audit_log_no_delete; DROP TRIGGER outbox_no_delete;"
        }
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "{undo} \
         DELETE FROM mail; DELETE FROM audit_log WHERE kind = 'PAYOUT'; \
         DELETE FROM outbox WHERE event_type = 'payout.made'; DELETE FROM payouts; \
         DELETE FROM day_closes; UPDATE accounts SET balance = 19 WHERE popug_id = 'A';"
    )))
    .execute(app.db.pool())
    .await
    .expect("restore the state of before the close");
    let balance_of_a = "SELECT balance FROM accounts WHERE popug_id = 'A'";
    assert_eq!(count(&app.db, balance_of_a).await, 19);

    app.ok(&accountant, CLOSE, json!({ "day": "2026-03-01" }))
        .await;
    wait_for_count(&app.db, paid, 1).await;
    let again: String = sqlx::query_scalar("SELECT id FROM payouts")
        .fetch_one(app.db.pool())
        .await
        .expect("the payout made again");
    assert_eq!(again, id, "the same popug and day make the same payout id");
    let requests = payments.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests.iter().all(|(key, _)| *key == id), "{requests:?}");
    assert_eq!(payments.paid().len(), 1, "paid once: {:?}", payments.paid());
    assert_eq!(count(&app.db, balance_of_a).await, 0);
}
