//! Every rule has one door: the mutation budget counts each mutation field, over HTTP and over
//! a socket alike, and a socket runs each operation as its popug is now.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, User, token};
use crate::on_both_backends;

on_both_backends!(
    every_mutation_field_counts_on_every_transport,
    a_socket_runs_each_operation_as_its_popug_is_now
);

async fn task_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

fn first_code(payload: &Value) -> &str {
    payload[0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

async fn every_mutation_field_counts_on_every_transport(database: TestDatabase) {
    let app = TestApp::start_with(database, |config| config.limits.mutations_per_second = 20).await;
    let bob = app.user("worker", "bob").await;

    // Twenty aliased creations are twenty mutations: the whole budget of a second.
    let aliased: Vec<String> = (0..20)
        .map(|i| format!("t{i}: createTask(input: {{title: \"task {i}\"}}) {{ id }}"))
        .collect();
    let data = app
        .ok(
            &bob,
            &format!("mutation {{ {} }}", aliased.join(" ")),
            json!({}),
        )
        .await;
    assert_eq!(data.as_object().unwrap().len(), 20);
    assert_eq!(task_count(&app).await, 20);

    // The budget is spent: another twenty over HTTP are refused (a second refills it, and this
    // comes sooner)...
    let twenty = format!("mutation {{ {} }}", aliased.join(" "));
    assert_eq!(
        app.error_code(Some(&bob.token), &twenty, json!({})).await,
        "RATE_LIMITED"
    );
    // ...and over a socket, where it is the same popug's budget and the same code.
    let mut ws = app.ws("graphql-transport-ws").await;
    ws.init(&bob.token).await;
    ws.subscribe("m1", &twenty, json!({})).await;
    let refused = ws.message().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "m1");
    assert_eq!(first_code(&refused["payload"]), "RATE_LIMITED", "{refused}");
    // Fragments at the root are counted through.
    let spread = format!(
        "mutation {{ ...Twenty }} fragment Twenty on Mutation {{ {} }}",
        aliased.join(" ")
    );
    assert_eq!(
        app.error_code(Some(&bob.token), &spread, json!({})).await,
        "RATE_LIMITED"
    );
    assert_eq!(
        task_count(&app).await,
        20,
        "a refused mutation wrote nothing"
    );

    // A second later the budget is back, for a mutation over the socket too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let one = "mutation { createTask(input: {title: \"one more\"}) { id } }";
    ws.subscribe("m2", one, json!({})).await;
    let created = ws.message().await;
    assert_eq!(created["type"], "next", "{created}");
    assert!(
        created["payload"]["data"]["createTask"]["id"].is_string(),
        "{created}"
    );
    assert_eq!(ws.message().await["type"], "complete");
    assert_eq!(task_count(&app).await, 21);

    // Queries cost nothing, however many fields.
    let me = app
        .ok(&bob, "{ a: me { id } b: me { id } }", json!({}))
        .await;
    assert!(me["a"]["id"].is_string());
}

async fn a_socket_runs_each_operation_as_its_popug_is_now(app: TestApp) {
    let max = app.user("manager", "max").await;
    app.user("worker", "bob").await;
    app.create_task(&max, "feed the parrots").await;
    let shuffle = "mutation { shuffleTasks { reassigned } }";

    let mut ws = app.ws("graphql-transport-ws").await;
    ws.init(&max.token).await;
    ws.subscribe("1", shuffle, json!({})).await;
    let shuffled = ws.message().await;
    assert_eq!(
        shuffled["payload"]["data"]["shuffleTasks"]["reassigned"], 1,
        "{shuffled}"
    );
    assert_eq!(ws.message().await["type"], "complete");

    // A fresher token says Max is a worker now; no auth event is sent.
    let now = Utc::now().timestamp();
    let demoted = User::signed(
        &max.key,
        token(
            &json!({ "sub": max.key, "name": "max", "role": "worker", "iat": now + 2, "exp": now + 600 }),
        ),
    );
    let me = app.ok(&demoted, "{ me { role } }", json!({})).await;
    assert_eq!(me["me"]["role"], "WORKER");
    assert_eq!(
        app.error_code(Some(&max.token), shuffle, json!({})).await,
        "FORBIDDEN",
        "over HTTP the old token no longer shuffles"
    );

    // The socket opened as a manager does not shuffle either: it ends.
    ws.subscribe("2", shuffle, json!({})).await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(4403));
    let moves: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'task.assigned'")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(moves, 2, "the creation and the one shuffle allowed");
}
