//! A popug's day statement: the opening balance, the day's entries with their running
//! balance, the closing balance, and the payout, or why there was none.

use serde_json::{Value, json};

use super::{CLOSE, app_at, seed, wait_for_count};
use crate::helpers::TestDatabase;
use crate::on_both_backends;

on_both_backends!(a_statement_explains_a_payout_and_its_absence);

const STATEMENT: &str = "query($popug: ID, $day: Date!) { statement(popugId: $popug, day: $day) { \
    day openingBalance closingBalance noPayout payout { amount } \
    entries { kind amount balanceAfter } } }";

async fn a_statement_explains_a_payout_and_its_absence(database: TestDatabase) {
    let db = database.connect().await;
    seed(
        &db,
        &[
            ("A", "TASK_ASSIGNED", "t1", -12, "2026-03-01T09:00:00Z"),
            ("A", "TASK_COMPLETED", "t1", 31, "2026-03-01T10:00:00Z"),
            ("B", "TASK_ASSIGNED", "t2", -10, "2026-03-01T09:00:00Z"),
            ("B", "TASK_COMPLETED", "t2", 10, "2026-03-01T10:00:00Z"),
            ("A", "TASK_ASSIGNED", "t3", -15, "2026-03-02T09:00:00Z"),
        ],
    )
    .await;
    // Just past the first midnight: the scheduler closes 1 March as the gateway starts.
    let app = app_at(database, "2026-03-02T00:10:00Z", |_| {}).await;
    wait_for_count(&app.db, "SELECT COUNT(*) FROM day_closes", 1).await;
    app.database.set_clock("2026-03-03T00:10:00Z");
    let accountant = app.user("accountant", "ada").await;
    app.ok(&accountant, CLOSE, json!({ "day": "2026-03-02" }))
        .await;

    let statement = |popug: &'static str, day: &'static str| {
        let app = &app;
        let accountant = &accountant;
        async move {
            let data = app
                .ok(accountant, STATEMENT, json!({ "popug": popug, "day": day }))
                .await;
            let statement = data["statement"].clone();
            // The opening balance plus the entries is the closing balance, entry by entry.
            let mut running = statement["openingBalance"].as_i64().expect("an opening");
            for entry in statement["entries"].as_array().expect("entries") {
                running += entry["amount"].as_i64().expect("an amount");
                assert_eq!(entry["balanceAfter"], running, "{statement}");
            }
            assert_eq!(statement["closingBalance"], running, "{statement}");
            statement
        }
    };
    let kinds = |statement: &Value| -> Vec<(String, i64)> {
        statement["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap_or_default().to_owned(),
                    e["amount"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    };

    // 1 March: earned 19, paid 19.
    let first = statement("A", "2026-03-01").await;
    assert_eq!(
        kinds(&first),
        [
            ("TASK_ASSIGNED".to_owned(), -12),
            ("TASK_COMPLETED".to_owned(), 31)
        ]
    );
    assert_eq!(
        (
            first["openingBalance"].as_i64(),
            first["closingBalance"].as_i64()
        ),
        (Some(0), Some(19))
    );
    assert_eq!(first["payout"]["amount"], 19, "{first}");
    assert!(first["noPayout"].is_null());

    // 2 March: opens with the 19; a fee and the payout of 1 March leave it below zero. (The
    // fee was seeded before the close ran, so it comes first: entries are in the order they
    // moved the balance.)
    let second = statement("A", "2026-03-02").await;
    assert_eq!(
        kinds(&second),
        [
            ("TASK_ASSIGNED".to_owned(), -15),
            ("PAYOUT".to_owned(), -19)
        ]
    );
    assert_eq!(second["openingBalance"], 19);
    assert_eq!(second["closingBalance"], -15);
    assert!(second["payout"].is_null());
    assert_eq!(second["noPayout"], "NEGATIVE", "{second}");

    // A day that ended at zero, and a day not closed yet.
    let zero = statement("B", "2026-03-01").await;
    assert_eq!(
        (zero["closingBalance"].as_i64(), zero["noPayout"].as_str()),
        (Some(0), Some("ZERO"))
    );
    let open = statement("A", "2026-03-03").await;
    assert_eq!(kinds(&open), []);
    assert_eq!(
        (
            open["openingBalance"].as_i64(),
            open["closingBalance"].as_i64()
        ),
        (Some(-15), Some(-15))
    );
    assert_eq!(open["noPayout"], "DAY_OPEN");

    // Another popug's statement is the bookkeepers' only.
    let bob = app.user("worker", "bob").await;
    assert_eq!(
        app.error_code(
            Some(&bob.token),
            STATEMENT,
            json!({ "popug": "A", "day": "2026-03-01" })
        )
        .await,
        "FORBIDDEN"
    );
    let own = app
        .ok(&bob, STATEMENT, json!({ "day": "2026-03-01" }))
        .await;
    assert_eq!(own["statement"]["closingBalance"], 0);
}
