//! Relay's object identification: every `Task`, `Popug`, `AuditLogEntry`, `Payout` and `Mail`
//! has a global id, unique across types, that `node` and `nodes` fetch it by; arguments take
//! the global id or the object's own key, as clients sent it before global ids.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, User, global_id, key_of, token};
use crate::on_both_backends;

on_both_backends!(
    every_object_is_fetched_again_by_its_global_id,
    ids_are_unique_across_types_and_old_keys_keep_working,
    node_shows_each_caller_what_its_list_would,
);

const NODE: &str = "query($id: ID!) { node(id: $id) { __typename id \
    ... on Task { title status } \
    ... on Popug { name role } \
    ... on AuditLogEntry { seq kind amount } \
    ... on Payout { amount day } \
    ... on Mail { subject } } }";

/// Every argument that names a task or a popug, at once.
const NAMING_BOTH: &str = "query($task: ID!, $bob: ID!) { \
    task(id: $task) { id } \
    tasks(assigneeId: $bob, first: 5) { totalCount } \
    account(popugId: $bob) { balance } \
    auditLog(filter: { popugId: $bob, taskId: $task }, first: 5) { totalCount } \
    payouts(filter: { popugId: $bob }) { nodes { id } } \
    mailbox(popugId: $bob) { totalCount } \
    statement(popugId: $bob, day: \"2026-03-01\") { closingBalance } }";

const NODES: &str = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }";

/// One of each type, as the lists show them to an admin.
const ONE_OF_EACH: &str = "{ \
    me { __typename id name role } \
    tasks(first: 1) { nodes { __typename id title status } } \
    auditLog(first: 1) { nodes { __typename id seq kind amount } } \
    payouts(first: 1) { nodes { __typename id amount day } } \
    mailbox(first: 1) { nodes { __typename id subject } } }";

/// A day of work closed: bob completed three tasks on 1 March, and was paid out on the 2nd.
/// Returns the app, the admin, the manager and bob.
async fn a_paid_day(database: TestDatabase) -> (TestApp, User, User, User) {
    let clock = database.set_clock("2026-03-01T10:00:00Z");
    let app = TestApp::start_with(database, |config| {
        config.server.clock_file = Some(clock);
        config.payday.close_check_secs = 3600;
    })
    .await;
    let admin = app.user("admin", "ada").await;
    let manager = app.user("manager", "mia").await;
    // The only popug a task can land on.
    let bob = app.user("worker", "bob").await;
    for i in 0..3 {
        let task = app
            .create_task(&manager, &format!("Preen feather {i}"))
            .await;
        assert_eq!(task["assignee"]["id"], bob.id.as_str());
        app.ok(
            &bob,
            "mutation($id: ID!) { completeTask(id: $id) { id } }",
            json!({ "id": task["id"] }),
        )
        .await;
    }
    let balance = app.ok(&bob, "{ account { balance } }", json!({})).await;
    assert!(
        balance["account"]["balance"].as_i64() > Some(0),
        "three rewards of 20..=40 against three fees of 10..=20 leave something to pay: {balance}"
    );
    app.database.set_clock("2026-03-02T10:00:00Z");
    app.ok(
        &admin,
        "mutation { closeDay(day: \"2026-03-01\") { day { payoutCount } } }",
        json!({}),
    )
    .await;
    (app, admin, manager, bob)
}

fn first_node(list: &Value) -> Value {
    let node = list["nodes"][0].clone();
    assert!(node.is_object(), "an item in {list}");
    node
}

async fn every_object_is_fetched_again_by_its_global_id(database: TestDatabase) {
    let (app, admin, _, _) = a_paid_day(database).await;
    let listed = app.ok(&admin, ONE_OF_EACH, json!({})).await;
    let objects = [
        listed["me"].clone(),
        first_node(&listed["tasks"]),
        first_node(&listed["auditLog"]),
        first_node(&listed["payouts"]),
        first_node(&listed["mailbox"]),
    ];
    let types: Vec<&str> = objects
        .iter()
        .map(|o| o["__typename"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Popug", "Task", "AuditLogEntry", "Payout", "Mail"]);

    // `node` gives each back as its list showed it.
    for object in &objects {
        let found = app.ok(&admin, NODE, json!({ "id": object["id"] })).await;
        assert_eq!(&found["node"], object);
    }

    // `nodes` gives them all at once, in the order asked; an id of nothing is null in its place.
    let nobody = global_id("Task", "01a00000-0000-7000-8000-000000000000");
    let mut ids: Vec<Value> = objects.iter().map(|o| o["id"].clone()).collect();
    ids.insert(2, json!(nobody));
    let found = app.ok(&admin, NODES, json!({ "ids": ids })).await;
    let found = found["nodes"].as_array().expect("a list").clone();
    assert_eq!(found.len(), 6);
    assert!(found[2].is_null(), "{found:?}");
    let mut expected: Vec<Value> = objects
        .iter()
        .map(|o| json!({ "__typename": o["__typename"], "id": o["id"] }))
        .collect();
    expected.insert(2, Value::Null);
    assert_eq!(found, expected);

    // A page of ids is the most `nodes` takes; a key that is no global id is refused.
    let many: Vec<String> = (0..101)
        .map(|i| global_id("Task", &i.to_string()))
        .collect();
    assert_eq!(
        app.error_code(Some(&admin.token), NODES, json!({ "ids": many }))
            .await,
        "BAD_USER_INPUT"
    );
    let task_key = key_of(&objects[1]["id"]);
    assert_eq!(
        app.error_code(Some(&admin.token), NODE, json!({ "id": task_key }))
            .await,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        app.error_code(None, NODE, json!({ "id": objects[1]["id"] }))
            .await,
        "UNAUTHENTICATED"
    );
}

async fn ids_are_unique_across_types_and_old_keys_keep_working(database: TestDatabase) {
    let (app, admin, manager, bob) = a_paid_day(database).await;
    let listed = app.ok(&admin, ONE_OF_EACH, json!({})).await;
    let task = first_node(&listed["tasks"]);
    let payout = first_node(&listed["payouts"]);

    // The auth service may give a popug any key, even one a task already has: the two keep
    // ids of their own.
    let twin_key = key_of(&task["id"]);
    let now = chrono::Utc::now().timestamp();
    let twin = User::signed(
        &twin_key,
        token(&json!({
            "sub": twin_key, "name": "twin", "role": "accountant", "iat": now, "exp": now + 600,
        })),
    );
    let me = app.ok(&twin, "{ me { id } }", json!({})).await;
    assert_ne!(me["me"]["id"], task["id"]);
    let found = app
        .ok(
            &admin,
            NODES,
            json!({ "ids": [me["me"]["id"], task["id"]] }),
        )
        .await;
    assert_eq!(
        found["nodes"],
        json!([
            { "__typename": "Popug", "id": me["me"]["id"] },
            { "__typename": "Task", "id": task["id"] },
        ])
    );

    // Every argument that names an object takes its own key as well as its global id.
    let by_key = app
        .ok(
            &admin,
            NAMING_BOTH,
            json!({ "task": twin_key, "bob": bob.key }),
        )
        .await;
    let by_id = app
        .ok(
            &admin,
            NAMING_BOTH,
            json!({ "task": task["id"], "bob": bob.id }),
        )
        .await;
    assert_eq!(by_key, by_id);
    assert_eq!(by_id["task"]["id"], task["id"]);
    assert_eq!(by_id["tasks"]["totalCount"], 3);
    // Bob's entries of the task: its assignment and its completion (the creation is the
    // manager's).
    assert_eq!(by_id["auditLog"]["totalCount"], 2);
    assert_eq!(by_id["payouts"]["nodes"][0]["id"], payout["id"]);

    // Another type's id where a task is meant is refused, and changes nothing.
    let before = app.snapshot().await;
    for wrong in [&payout["id"], &json!(bob.id)] {
        let body = app
            .gql(
                Some(&bob.token),
                "mutation($id: ID!) { completeTask(id: $id) { id } }",
                json!({ "id": wrong }),
            )
            .await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("not of a Task"), "{body}");
    }
    assert_eq!(
        app.error_code(
            Some(&manager.token),
            "query($id: ID!) { tasks(assigneeId: $id) { totalCount } }",
            json!({ "id": task["id"] }),
        )
        .await,
        "BAD_USER_INPUT"
    );
    assert_eq!(app.snapshot().await, before);
}

async fn node_shows_each_caller_what_its_list_would(database: TestDatabase) {
    let (app, admin, manager, bob) = a_paid_day(database).await;
    let carol = app.user("worker", "carol").await;
    let listed = app.ok(&admin, ONE_OF_EACH, json!({})).await;
    let task = first_node(&listed["tasks"]);
    let entry = first_node(&listed["auditLog"]);
    let payout = first_node(&listed["payouts"]);
    let mail = first_node(&listed["mailbox"]);

    // Bob's money is his and the bookkeepers'; mail is the admins'; popugs are listed for
    // managers and bookkeepers, and each popug sees itself. Tasks are everyone's.
    let readable = |user: &User, object: &Value| {
        let app = &app;
        let (token, id) = (user.token.clone(), object["id"].clone());
        async move {
            let body = app.gql(Some(&token), NODE, json!({ "id": id })).await;
            match body["errors"][0]["extensions"]["code"].as_str() {
                None if body["data"]["node"].is_null() => false,
                None => {
                    assert_eq!(body["data"]["node"]["id"], id, "{body}");
                    true
                }
                Some("FORBIDDEN") => false,
                Some(other) => panic!("{other}: {body}"),
            }
        }
    };
    let bobs = json!({ "id": bob.id });
    assert!(readable(&carol, &task).await);
    assert!(readable(&carol, &json!({ "id": carol.id })).await);
    assert!(!readable(&carol, &bobs).await);
    assert!(readable(&manager, &bobs).await);
    assert!(!readable(&carol, &entry).await);
    assert!(readable(&bob, &entry).await);
    assert!(!readable(&carol, &payout).await);
    assert!(readable(&bob, &payout).await);
    assert!(!readable(&manager, &payout).await);
    assert!(!readable(&bob, &mail).await);
    assert!(readable(&admin, &mail).await);

    // Another popug's money answers as money that is not there: payout ids are made of a popug
    // and a day, so a refusal would tell carol who was paid when.
    let nothing = json!({ "data": { "node": null } });
    for id in [
        &payout["id"],
        &entry["id"],
        &json!(global_id("Payout", &format!("{}:2026-03-05", bob.key))),
        &json!(global_id("AuditLogEntry", "999999")),
    ] {
        let body = app.gql(Some(&carol.token), NODE, json!({ "id": id })).await;
        assert_eq!(body, nothing, "{id}");
    }
}
