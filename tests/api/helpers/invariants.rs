//! The rules of the money and of the events, checked against the database a test ran on.

use ates_db::Db;
use serde_json::Value;
use sqlx::Row as _;

use super::TestApp;

/// Every event in the outbox matches the JSON Schema of its type and version.
pub async fn assert_events_match_their_schemas(app: &TestApp) {
    use sqlx::Row as _;
    let rows = sqlx::query("SELECT event_type, version, payload FROM outbox ORDER BY seq")
        .fetch_all(app.db.pool())
        .await
        .expect("read the outbox");
    assert!(!rows.is_empty());
    let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/schemas");
    for row in rows {
        let (kind, version, payload): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
        let file = schemas.join(format!("{kind}.v{version}.json"));
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(&file)
                .unwrap_or_else(|_| panic!("no schema {}", file.display())),
        )
        .expect("schema is JSON");
        let validator = jsonschema::validator_for(&schema).expect("a valid schema");
        let payload: Value = serde_json::from_str(&payload).expect("payload is JSON");
        let errors: Vec<String> = validator
            .iter_errors(&payload)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{kind} v{version} {payload} breaks its schema: {errors:?}"
        );
    }
}

/// Waits until accounting is past every event in the outbox (bounded).
pub async fn settled(db: &Db) {
    for _ in 0..200 {
        let backlog = ates_events::outbox::backlog(db, "accounting")
            .await
            .expect("count events");
        if backlog.waiting == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("accounting did not handle every event within 10 s");
}

/// The rules of the money, checked against the database:
/// - each task event has exactly one log entry, with the amount its prices say;
/// - at most one reward per task;
/// - every balance is the sum of its log amounts;
/// - fees debited − rewards credited, from the events and prices, = −(sum of all task money);
/// - each payout has its PAYOUT entry, and a popug is paid at most once a day.
pub async fn assert_ledger_invariants(db: &Db) {
    settled(db).await;
    let rows = sqlx::query(
        "SELECT o.event_type, o.payload, p.assign_fee, p.reward, \
         (SELECT COUNT(*) FROM audit_log l WHERE l.event_id = o.id), \
         (SELECT MIN(l.amount) FROM audit_log l WHERE l.event_id = o.id) \
         FROM outbox o LEFT JOIN task_prices p ON p.task_id = o.aggregate_id ORDER BY o.seq",
    )
    .fetch_all(db.pool())
    .await
    .expect("read events and entries");
    let (mut fees, mut rewards) = (0i64, 0i64);
    let mut rewarded = std::collections::HashSet::new();
    let mut payouts = std::collections::HashSet::new();
    for row in &rows {
        let kind: String = row.get(0);
        let payload: String = row.get(1);
        let fee: Option<i64> = row.get(2);
        let reward: Option<i64> = row.get(3);
        let entries: i64 = row.get(4);
        let amount: Option<i64> = row.get(5);
        assert_eq!(entries, 1, "{kind} {payload} has {entries} log entries");
        let task: Value = serde_json::from_str(&payload).unwrap();
        let priced = || {
            let (fee, reward) = (
                fee.expect("every task is priced"),
                reward.expect("every task is priced"),
            );
            assert!((10..=20).contains(&fee) && (20..=40).contains(&reward));
            (fee, reward)
        };
        match kind.as_str() {
            "task.created" => assert_eq!(amount, Some(0)),
            "task.assigned" => {
                let (fee, _) = priced();
                assert_eq!(amount, Some(-fee), "{payload}");
                fees += fee;
            }
            "task.completed" => {
                let (_, reward) = priced();
                assert_eq!(amount, Some(reward), "{payload}");
                rewards += reward;
                assert!(
                    rewarded.insert(task["taskId"].to_string()),
                    "a task rewarded twice"
                );
            }
            "payout.made" => {
                let paid = task["amount"].as_i64().expect("an amount");
                assert!(paid > 0, "{payload}");
                assert_eq!(amount, Some(-paid), "{payload}");
                assert!(
                    payouts.insert((task["popugId"].to_string(), task["day"].to_string())),
                    "a popug paid twice for one day: {payload}"
                );
            }
            other => panic!("unexpected event {other}"),
        }
    }
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(entries as usize, rows.len(), "log entries without an event");

    let mismatched: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT a.popug_id, a.balance, CAST(COALESCE((SELECT SUM(l.amount) FROM audit_log l WHERE l.popug_id = a.popug_id), 0) AS BIGINT) \
         FROM accounts a",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
    .into_iter()
    .filter(|(_, balance, sum): &(String, i64, i64)| balance != sum)
    .collect();
    assert!(
        mismatched.is_empty(),
        "balances that are not the sum of their log: {mismatched:?}"
    );

    let task_money: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM audit_log WHERE kind IN ('TASK_ASSIGNED', 'TASK_COMPLETED')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        fees - rewards,
        -task_money,
        "management earnings disagree with the log"
    );
}
