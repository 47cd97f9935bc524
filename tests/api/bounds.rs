//! What a stranger sends is measured before any work is done on it: nesting bombs over every
//! transport, against the real binary, which must still be there to answer afterwards.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{EVENTS_SECRET, Gateway, TestApp, TestDatabase, User};
use crate::on_both_backends;
use crate::ws::Ws;

on_both_backends!(
    nesting_bombs_are_refused_on_every_transport,
    nul_is_bad_user_input_and_changes_nothing,
    every_error_has_the_json_body,
    connections_must_send_their_request_in_time,
    connections_per_address_are_bounded,
);

/// `{ today(x: [[[…1…]]]) }`: 3 KB that took the gateway down with a stack overflow.
fn list_bomb(levels: usize) -> String {
    format!(
        "{{ today(x: {}1{}) }}",
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

fn object_bomb(levels: usize) -> String {
    format!(
        "{{ today(x: {}1{}) }}",
        "{a: ".repeat(levels),
        "}".repeat(levels)
    )
}

/// A JSON value nested `levels` deep.
fn json_bomb(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {body}"))
}

async fn nesting_bombs_are_refused_on_every_transport(database: TestDatabase) {
    let gateway = Gateway::start_with(&database, &[("ATES_ALLOW_BATCH", "true")]);
    let client = reqwest::Client::new();
    let url = gateway.url.clone();
    let bob = User::new("worker", "bob");
    let post = |body: String, token: Option<&str>| {
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/graphql-response+json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    // Anonymous, over POST: lists and objects in an argument.
    for bomb in [list_bomb(1500), object_bomb(1500), list_bomb(65)] {
        let response = post(json!({ "query": bomb }).to_string(), None)
            .await
            .expect("the gateway answers");
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(code(&body), "GRAPHQL_PARSE_FAILED", "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("nest at most 64 levels")),
            "{body}"
        );
        assert!(body.get("data").is_none(), "{body}");
    }
    // Just under the bound the parser runs, and validation has its say.
    let response = post(json!({ "query": list_bomb(60) }).to_string(), None)
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");

    // Over GET, as an <img src> on any page would send it.
    let response = client
        .get(&url)
        .query(&[("query", list_bomb(1500))])
        .send()
        .await
        .expect("the gateway answers");
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(code(&body), "GRAPHQL_PARSE_FAILED", "{body}");

    // In variables, in the body and in the URL: JSON is measured too.
    let body = format!(
        r#"{{"query":"query($x: Int) {{ me {{ id }} }}","variables":{{"x":{}}}}}"#,
        json_bomb(5000)
    );
    let response = post(body, Some(&bob.token)).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "BAD_REQUEST", "{body}");
    let response = client
        .get(&url)
        .query(&[
            ("query", "{ me { id } }".to_owned()),
            ("variables", format!(r#"{{"x":{}}}"#, json_bomb(5000))),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "BAD_REQUEST", "{body}");

    // In a batch, and as a persisted query's text (which is then not kept).
    let batch = json!([{ "query": "{ __typename }" }, { "query": list_bomb(1500) }]);
    let response = post(batch.to_string(), None).await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body[0]["data"]["__typename"], "Query", "{body}");
    assert_eq!(code(&body[1]), "GRAPHQL_PARSE_FAILED", "{body}");
    let bomb = list_bomb(1500);
    let hash = hex::encode(Sha256::digest(bomb.as_bytes()));
    let persisted = |query: Option<&str>| {
        json!({ "query": query, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } })
            .to_string()
    };
    let body: Value = post(persisted(Some(&bomb)), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(code(&body), "GRAPHQL_PARSE_FAILED", "{body}");
    let body: Value = post(persisted(None), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");

    // Over a socket: the operation is refused, the socket stays.
    let ws_url = format!("{}/graphql/ws", gateway.base().replace("http://", "ws://"));
    let mut ws = Ws::connect(&ws_url, "graphql-transport-ws").await;
    ws.init(&bob.token).await;
    ws.subscribe("1", &object_bomb(1500), json!({})).await;
    let refused = ws.message().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "GRAPHQL_PARSE_FAILED",
        "{refused}"
    );
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.message().await["type"], "pong");
    // A frame whose JSON nests too deep is not a protocol message: the socket closes with 4400.
    ws.send(json!({ "type": "ping", "payload": serde_json::from_str::<Value>(&json_bomb(100)).unwrap() }))
        .await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(4400));

    // And the gateway is still there for everyone.
    let me = post(
        json!({ "query": "{ me { name } }" }).to_string(),
        Some(&bob.token),
    )
    .await
    .expect("the gateway still answers");
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["data"]["me"]["name"], "bob", "{me}");
}

async fn nul_is_bad_user_input_and_changes_nothing(app: TestApp) {
    let bob = app.user("worker", "bob").await;
    let before = app.snapshot().await;
    let create = "mutation($input: CreateTaskInput!) { createTask(input: $input) { id } }";
    // In a variable, in a literal of the document, deep in an input object.
    let refused = [
        (create, json!({ "input": { "title": "a\u{0}b" } })),
        (
            create,
            json!({ "input": { "title": "ok", "description": "\u{0}" } }),
        ),
        (
            "mutation { createTask(input: {title: \"a\\u0000b\"}) { id } }",
            json!({}),
        ),
        ("{ task(id: \"\\u0000\") { id } }", json!({})),
    ];
    for (query, variables) in refused {
        let code = app.error_code(Some(&bob.token), query, variables).await;
        assert_eq!(code, "BAD_USER_INPUT", "{query}");
    }
    assert_eq!(app.snapshot().await, before);

    // As an auth event it can never apply: refused as such (a dead letter over NATS), not
    // retried.
    let event = json!({
        "type": "popug.created", "version": 1, "id": uuid::Uuid::new_v4().to_string(),
        "occurredAt": "2026-03-01T12:00:00Z",
        "data": { "popugId": "nul-popug", "name": "bo\u{0}b", "role": "worker" },
    })
    .to_string();
    let response = app
        .client
        .post(app.url("/auth/events"))
        .header("content-type", "application/json")
        .header(
            "x-ates-signature",
            format!(
                "sha256={}",
                sign(EVENTS_SECRET.as_bytes(), event.as_bytes())
            ),
        )
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "BAD_EVENT", "{body}");
    assert_eq!(app.snapshot().await, before);
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn every_error_has_the_json_body(app: TestApp) {
    let client = &app.client;
    let checks = [
        (client.get(app.url("/no-such-page")), 404, "NOT_FOUND"),
        (client.post(app.url("/healthz")), 405, "BAD_REQUEST"),
        (
            client
                .post(app.url("/auth/events"))
                .header("content-type", "application/json")
                .body(vec![b' '; 2 * 1024 * 1024]),
            413,
            "BAD_REQUEST",
        ),
    ];
    for (request, status, expected) in checks {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        let media = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(media.starts_with("application/json"), "{status}: {media}");
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(code(&body), expected, "{status}: {body}");
        assert!(body["errors"][0]["message"].is_string(), "{body}");
    }
}

/// What the server sends before it closes the connection, waiting at most `wait`; `None` when
/// it kept the connection open all that time.
async fn until_closed(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&answer).into_owned())
}

async fn connections_must_send_their_request_in_time(database: TestDatabase) {
    let app = TestApp::start_with(database, |config| {
        config.limits.header_timeout_secs = 1;
        config.limits.body_timeout_secs = 1;
    })
    .await;
    // Headers a line at a time, never finished: closed.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break;
        }
    }
    assert!(
        until_closed(&mut slow, Duration::from_secs(5))
            .await
            .is_some(),
        "a client that never finished its headers kept its connection"
    );
    // A connection that says nothing at all: closed too.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    assert!(
        until_closed(&mut idle, Duration::from_secs(5))
            .await
            .is_some()
    );

    // A body announced and never sent: 408, with the JSON error body.
    let mut stalled = TcpStream::connect(app.addr).await.unwrap();
    stalled
        .write_all(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100000\r\n\r\n{",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut stalled, Duration::from_secs(5))
        .await
        .expect("the gateway answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"BAD_REQUEST\""), "{answer}");

    // A client that sends its request in time is served as ever.
    let me = app.gql(None, "{ __typename }", json!({})).await;
    assert_eq!(me["data"]["__typename"], "Query");
}

async fn connections_per_address_are_bounded(database: TestDatabase) {
    let app = TestApp::start_with(database, |config| {
        config.limits.max_connections_per_address = 4;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // Let the gateway accept the four.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = TcpStream::connect(app.addr).await.unwrap();
    let said = until_closed(&mut fifth, Duration::from_secs(2)).await;
    assert_eq!(
        said.as_deref(),
        Some(""),
        "the fifth connection was closed at once"
    );
    // When one goes, another may come.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let me = app.gql(None, "{ __typename }", json!({})).await;
    assert_eq!(me["data"]["__typename"], "Query");
}

/// PostgreSQL cuts every connection of the gateway (as a restart or a failover does): the
/// requests that meet a cut connection are told to try again (503 with `Retry-After`), never
/// "internal error", and the gateway is whole again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_database_connection_answers_try_again() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let bob = app.user("worker", "bob").await;
    let name = app.database.url.rsplit('/').next().unwrap().to_owned();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        app.ok(&bob, "{ me { id } }", json!({})).await;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&name)
        .execute(app.db.pool())
        .await
        .unwrap();
        for _ in 0..8 {
            let response = app
                .client
                .post(app.url("/graphql"))
                .bearer_auth(&bob.token)
                .json(&json!({ "query": "{ myTasks(first: 5) { totalCount } }" }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body: Value = response.json().await.unwrap();
            let code = body["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or("-")
                .to_owned();
            assert_ne!(code, "INTERNAL_SERVER_ERROR", "{body}");
            if status == 503 {
                assert!(retry_after);
                assert_eq!(code, "SERVICE_UNAVAILABLE", "{body}");
            } else {
                assert_eq!(code, "-", "{body}");
            }
            statuses.push(status);
        }
    }
    assert!(
        statuses.contains(&503),
        "no request met a cut connection: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
}
