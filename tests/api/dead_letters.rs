//! Dead letters, for operators: a message that could not be applied is listed with its reason,
//! mended, and replayed through the same handler; replaying twice is harmless. (That a
//! malformed message from NATS is parked is shown in `nats.rs`.)

use chrono::Utc;
use serde_json::json;

use crate::auth_events::message;
use crate::helpers::TestApp;
use crate::on_both_backends;

on_both_backends!(a_dead_letter_is_mended_and_replayed_once);

const LIST: &str = "{ deadLetters(first: 10) { totalCount edges { node { id source subject payload reason receivedAt } } } }";
const REPLAY: &str = "mutation($id: ID!) { replayDeadLetter(id: $id) { id outcome } }";

async fn a_dead_letter_is_mended_and_replayed_once(app: TestApp) {
    let admin = app.user("admin", "ada").await;
    let manager = app.user("manager", "mark").await;
    let subject = "auth.popug.created";
    let ben = uuid::Uuid::new_v4().to_string();
    let blank = message(
        "popug.created",
        Utc::now(),
        0,
        "",
        json!({ "name": "Ben", "role": "worker" }),
    );
    // As the NATS consumer parks what it cannot apply: a message that is not JSON, then one
    // whose popug is blank.
    for (payload, reason) in [
        ("{not json".to_owned(), "not JSON"),
        (blank.to_string(), "popugId is blank"),
    ] {
        ates_events::dead_letter::park(&app.db, "nats", subject, payload.as_bytes(), reason)
            .await
            .expect("parked");
    }

    let listed = app.ok(&admin, LIST, json!({})).await;
    assert_eq!(listed["deadLetters"]["totalCount"], 2, "{listed}");
    let newest = &listed["deadLetters"]["edges"][0]["node"];
    assert_eq!(
        newest["payload"],
        blank.to_string(),
        "newest first: {listed}"
    );
    assert_eq!(
        (newest["source"].as_str(), newest["subject"].as_str()),
        (Some("nats"), Some(subject))
    );
    assert!(newest["receivedAt"].is_string());
    let id = newest["id"].clone();
    assert_eq!(
        app.error_code(Some(&manager.token), LIST, json!({})).await,
        "FORBIDDEN"
    );

    // Replayed before it is mended: still refused, and kept with the handler's reason.
    assert_eq!(
        app.error_code(Some(&admin.token), REPLAY, json!({ "id": id }))
            .await,
        "BAD_USER_INPUT"
    );
    let listed = app.ok(&admin, LIST, json!({})).await;
    assert_eq!(listed["deadLetters"]["totalCount"], 2);
    assert!(
        listed["deadLetters"]["edges"][0]["node"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("popugId")),
        "{listed}"
    );

    // The operator mends the payload; the replay applies it, and the letter leaves the list.
    let mut mended = blank.clone();
    mended["data"]["popugId"] = json!(ben);
    sqlx::query("UPDATE dead_letters SET payload = $1 WHERE payload = $2")
        .bind(mended.to_string())
        .bind(blank.to_string())
        .execute(app.db.pool())
        .await
        .expect("mend the letter");
    let replayed = app.ok(&admin, REPLAY, json!({ "id": id })).await;
    assert_eq!(
        replayed["replayDeadLetter"]["outcome"], "applied",
        "{replayed}"
    );
    assert_eq!(
        app.popug_row(&ben).await,
        Some(("Ben".into(), None, "worker".into(), true))
    );
    let listed = app.ok(&admin, LIST, json!({})).await;
    assert_eq!(listed["deadLetters"]["totalCount"], 1, "{listed}");

    // Again: the recorded outcome, and nothing more happens.
    let handled = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM auth_events")
            .fetch_one(app.db.pool())
            .await
            .expect("count")
    };
    let before = handled().await;
    let again = app.ok(&admin, REPLAY, json!({ "id": id })).await;
    assert_eq!(again["replayDeadLetter"]["outcome"], "applied");
    assert_eq!(handled().await, before);

    assert_eq!(
        app.error_code(Some(&admin.token), REPLAY, json!({ "id": "999999" }))
            .await,
        "NOT_FOUND"
    );
}
