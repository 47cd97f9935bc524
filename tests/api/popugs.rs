use chrono::Utc;
use serde_json::json;

use crate::helpers::{TestApp, User, global_id, token};
use crate::on_both_backends;

on_both_backends!(
    claims_create_and_refresh_the_popug,
    popugs_are_listed_for_staff
);

const ME: &str = "{ me { id name email role active } }";

async fn claims_create_and_refresh_the_popug(app: TestApp) {
    let sub = uuid::Uuid::new_v4().to_string();
    let t0 = Utc::now().timestamp() - 100;
    let as_of = |iat: i64, name: &str, role: &str| {
        User::signed(
            &sub,
            token(&json!({
                "sub": sub, "name": name, "email": "bob@uberpopug.test", "role": role,
                "iat": iat, "exp": Utc::now().timestamp() + 600,
            })),
        )
    };

    let me = app.ok(&as_of(t0, "Bob", "worker"), ME, json!({})).await;
    assert_eq!(
        me["me"],
        json!({ "id": global_id("Popug", &sub), "name": "Bob", "email": "bob@uberpopug.test", "role": "WORKER", "active": true })
    );

    // Newer claims refresh the replica.
    let me = app
        .ok(&as_of(t0 + 20, "Robert", "accountant"), ME, json!({}))
        .await;
    assert_eq!(me["me"]["name"], "Robert");
    assert_eq!(me["me"]["role"], "ACCOUNTANT");

    // A token issued before the last change brings back neither the old name nor a role.
    let stale = as_of(t0 + 10, "Bob", "admin");
    let me = app.ok(&stale, ME, json!({})).await;
    assert_eq!(me["me"]["name"], "Robert");
    assert_eq!(
        me["me"]["role"], "ACCOUNTANT",
        "the replica decides the role"
    );
    let code = app
        .error_code(
            Some(&stale.token),
            "mutation { shuffleTasks { moved } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "FORBIDDEN", "a stale admin token grants nothing");
}

async fn popugs_are_listed_for_staff(app: TestApp) {
    let admin = app.user("admin", "alice").await;
    let manager = app.user("manager", "mark").await;
    let accountant = app.user("accountant", "anna").await;
    let worker = app.user("worker", "bob").await;
    let list = "query($role: Role, $after: String) { popugs(role: $role, first: 2, after: $after) { \
                edges { node { id role } } pageInfo { hasNextPage endCursor } } }";

    for user in [&admin, &manager, &accountant] {
        let mut ids = Vec::new();
        let mut after = serde_json::Value::Null;
        loop {
            let data = app.ok(user, list, json!({ "after": after })).await;
            let page = &data["popugs"];
            ids.extend(
                page["edges"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["node"]["id"].clone()),
            );
            if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
                break;
            }
            after = page["pageInfo"]["endCursor"].clone();
        }
        assert_eq!(ids.len(), 4);
    }
    let workers = app.ok(&admin, list, json!({ "role": "WORKER" })).await;
    assert_eq!(
        workers["popugs"]["edges"],
        json!([{ "node": { "id": worker.id, "role": "WORKER" } }])
    );
    assert_eq!(
        app.error_code(Some(&worker.token), list, json!({})).await,
        "FORBIDDEN"
    );
}
