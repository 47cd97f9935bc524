//! `Idempotency-Key`: a mutation takes effect at most once per popug and key, and a retry gets
//! the first answer back byte for byte, across a restart too; the key with another request is
//! refused and changes nothing; a run that died is taken over without a second effect.

use chrono::Utc;
use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{Gateway, TestApp, TestDatabase, User, settled};
use crate::on_both_backends;
use crate::ws::Said;

on_both_backends!(
    a_double_clicked_create_makes_one_task,
    twenty_sends_of_one_key_take_effect_once,
    a_run_that_died_is_taken_over_without_a_second_task,
    a_key_sent_over_a_socket_is_the_same_key,
);

const CREATE: &str = "mutation($input: CreateTaskInput!) { createTask(input: $input) { id title status assignee { id } } }";

/// Status and raw body of a keyed mutation.
async fn send(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    key: &str,
    query: &str,
    variables: Value,
) -> (u16, String) {
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

fn code(body: &str) -> String {
    let value: Value = serde_json::from_str(body).expect("a JSON body");
    value["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Tasks `user` created, fees charged for them, and their events.
async fn effects(app: &TestApp, user: &User) -> (i64, i64, usize) {
    settled(&app.db).await;
    let tasks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE created_by = $1")
        .bind(user.key.clone())
        .fetch_one(app.db.pool())
        .await
        .expect("count tasks");
    let fees: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log a JOIN tasks t ON t.id = a.task_id \
         WHERE a.kind = 'TASK_ASSIGNED' AND t.created_by = $1",
    )
    .bind(user.key.clone())
    .fetch_one(app.db.pool())
    .await
    .expect("count fees");
    let created = app
        .events_of("task.created")
        .await
        .iter()
        .filter(|e| e["createdBy"] == user.key.as_str())
        .count();
    (tasks, fees, created)
}

async fn a_double_clicked_create_makes_one_task(app: TestApp) {
    let url = app.url("/graphql");
    let manager = app.user("manager", "mia").await;
    app.user("worker", "bob").await;
    let input = json!({ "input": { "title": "Feed the parrots" } });

    let first = send(
        &app.client,
        &url,
        &manager.token,
        "click-1",
        CREATE,
        input.clone(),
    )
    .await;
    let second = send(
        &app.client,
        &url,
        &manager.token,
        "click-1",
        CREATE,
        input.clone(),
    )
    .await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(second, first, "the same answer, byte for byte");
    assert_eq!(effects(&app, &manager).await, (1, 1, 1));

    // The same key with another title: refused, and nothing changes.
    let before = app.snapshot().await;
    let other = json!({ "input": { "title": "Feed the parrots twice" } });
    let reused = send(&app.client, &url, &manager.token, "click-1", CREATE, other).await;
    assert_eq!(
        (reused.0, code(&reused.1)),
        (422, "IDEMPOTENCY_KEY_REUSED".to_owned())
    );
    assert_eq!(app.snapshot().await, before);

    // A key is the popug's own: another popug's same key is another request.
    let other_manager = app.user("manager", "max").await;
    let theirs = send(
        &app.client,
        &url,
        &other_manager.token,
        "click-1",
        CREATE,
        input.clone(),
    )
    .await;
    assert_eq!(theirs.0, 200);
    assert_ne!(theirs.1, first.1);

    // Without a key, each send is its own; a key that is no key is refused.
    for bad in ["", &"k".repeat(256), "tab\there"] {
        let (status, body) = send(
            &app.client,
            &url,
            &manager.token,
            bad,
            CREATE,
            input.clone(),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (400, "BAD_REQUEST".to_owned()),
            "{bad:?}"
        );
    }
    assert_eq!(effects(&app, &manager).await, (1, 1, 1));
}

async fn twenty_sends_of_one_key_take_effect_once(app: TestApp) {
    let url = app.url("/graphql");
    let manager = app.user("manager", "mia").await;
    app.user("worker", "bob").await;
    let input = json!({ "input": { "title": "Polish the perch" } });
    let sends = (0..20).map(|_| {
        send(
            &app.client,
            &url,
            &manager.token,
            "burst",
            CREATE,
            input.clone(),
        )
    });
    let answers = join_all(sends).await;
    let ok: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert!(!ok.is_empty(), "{answers:?}");
    assert!(
        ok.iter().all(|body| *body == ok[0]),
        "one answer: {answers:?}"
    );
    for (status, body) in &answers {
        assert!(
            *status == 200 || (*status == 409 && code(body) == "CONFLICT"),
            "{status}: {body}"
        );
    }
    assert_eq!(effects(&app, &manager).await, (1, 1, 1));
    // Once the first has answered, every send gets its answer.
    let again = send(&app.client, &url, &manager.token, "burst", CREATE, input).await;
    assert_eq!((again.0, &again.1), (200, ok[0]));
}

/// The first run committed its task and died before its answer was kept: its claim is left
/// running. Once its lease is over, a retry takes the run over, finds the task the first run
/// made under the key, and answers with it.
async fn a_run_that_died_is_taken_over_without_a_second_task(app: TestApp) {
    let url = app.url("/graphql");
    let manager = app.user("manager", "mia").await;
    app.user("worker", "bob").await;
    let input = json!({ "input": { "title": "Count the seeds" } });
    let (status, body) = send(
        &app.client,
        &url,
        &manager.token,
        "died",
        CREATE,
        input.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let made: Value = serde_json::from_str(&body).expect("JSON");
    // The key as a run leaves it that has no answer yet, its lease taken at `since`.
    let running_since = |since: i64| {
        sqlx::query(
            "UPDATE idempotency_keys SET answer_status = NULL, answer_body = NULL, \
             running_since = $1 WHERE popug_id = $2",
        )
        .bind(since)
        .bind(manager.key.clone())
        .execute(app.db.pool())
    };
    // As a crash after the commit leaves it: no answer, and a lease that ran out long ago.
    running_since(0).await.expect("forget the answer");
    let (status, again) = send(
        &app.client,
        &url,
        &manager.token,
        "died",
        CREATE,
        input.clone(),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    let again: Value = serde_json::from_str(&again).expect("JSON");
    assert_eq!(
        again["data"]["createTask"]["id"],
        made["data"]["createTask"]["id"]
    );
    assert_eq!(effects(&app, &manager).await, (1, 1, 1));

    // While a run holds its lease, a retry is told to wait.
    running_since(Utc::now().timestamp_micros())
        .await
        .expect("a run in progress");
    let (status, body) = send(&app.client, &url, &manager.token, "died", CREATE, input).await;
    assert_eq!((status, code(&body)), (409, "CONFLICT".to_owned()));
}

/// SIGKILL between two sends of one key: the second, to the gateway started again, gets the
/// first answer and makes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_key_outlives_a_kill() {
    a_key_outlives_a_kill(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_key_outlives_a_kill() {
    if let Some(database) = TestDatabase::postgres().await {
        a_key_outlives_a_kill(database).await;
    }
}

async fn a_key_outlives_a_kill(database: TestDatabase) {
    let client = reqwest::Client::new();
    let manager = User::new("manager", "mia");
    let worker = User::new("worker", "bob");
    let input = json!({ "input": { "title": "Sweep the cage" } });

    let gateway = Gateway::start(&database);
    for user in [&manager, &worker] {
        let me = client
            .post(&gateway.url)
            .bearer_auth(&user.token)
            .json(&json!({ "query": "{ me { id } }" }))
            .send()
            .await
            .expect("the gateway answers");
        assert!(me.status().is_success());
    }
    let first = send(
        &client,
        &gateway.url,
        &manager.token,
        "kill-1",
        CREATE,
        input.clone(),
    )
    .await;
    assert_eq!(first.0, 200, "{}", first.1);
    gateway.kill();

    let gateway = Gateway::start(&database);
    let second = send(
        &client,
        &gateway.url,
        &manager.token,
        "kill-1",
        CREATE,
        input,
    )
    .await;
    assert_eq!(second, first);
    gateway.kill();
    let db = database.connect().await;
    let tasks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE created_by = $1")
        .bind(manager.key.clone())
        .fetch_one(db.pool())
        .await
        .expect("count tasks");
    assert_eq!(tasks, 1);
}

/// Over a WebSocket a mutation carries its key as `extensions.idempotencyKey`: sent twice it
/// takes effect once and answers alike, a retry over HTTP with the same key gets that answer,
/// the key with another request is refused, and a key that is not one is a bad request.
async fn a_key_sent_over_a_socket_is_the_same_key(app: TestApp) {
    let bob = app.user("worker", "bob").await;
    let mut ws = app.ws("graphql-transport-ws").await;
    ws.init(&bob.token).await;
    let keyed = |id: &str, key: Value, title: &str| {
        json!({ "type": "subscribe", "id": id, "payload": {
            "query": CREATE,
            "variables": { "input": { "title": title } },
            "extensions": { "idempotencyKey": key },
        } })
    };
    let mut answers = Vec::new();
    for id in ["first", "again"] {
        ws.send(keyed(id, json!("socket-key-1"), "Preen")).await;
        let next = ws.message().await;
        assert_eq!(next["type"], "next", "{next}");
        assert_eq!(next["id"], id);
        let complete = ws.message().await;
        assert_eq!(complete["type"], "complete", "{complete}");
        answers.push(next["payload"].clone());
    }
    assert_eq!(answers[0], answers[1]);
    assert!(
        answers[0]["data"]["createTask"]["id"].is_string(),
        "{}",
        answers[0]
    );
    assert_eq!(effects(&app, &bob).await.0, 1);

    let client = reqwest::Client::new();
    let (status, body) = send(
        &client,
        &app.url("/graphql"),
        &bob.token,
        "socket-key-1",
        CREATE,
        json!({ "input": { "title": "Preen" } }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), answers[0]);

    ws.send(keyed("other", json!("socket-key-1"), "Something else"))
        .await;
    let refused = ws.message().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "IDEMPOTENCY_KEY_REUSED"
    );
    for (id, bad) in [
        ("number", json!(7)),
        ("empty", json!("")),
        ("long", json!("k".repeat(256))),
    ] {
        ws.send(keyed(id, bad, "Preen")).await;
        let refused = ws.message().await;
        assert_eq!(refused["type"], "error", "{refused}");
        assert_eq!(
            refused["payload"][0]["extensions"]["code"], "BAD_REQUEST",
            "{refused}"
        );
    }
    assert_eq!(
        effects(&app, &bob).await.0,
        1,
        "nothing refused took effect"
    );
    assert!(matches!(
        ws.said(std::time::Duration::from_millis(200)).await,
        Said::Silent
    ));
}
