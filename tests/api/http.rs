//! GraphQL over HTTP, written from the specification's text
//! (graphql.github.io/graphql-over-http), and the limits on what one request may ask.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase};
use crate::on_both_backends;

on_both_backends!(
    responses_keep_the_order_of_the_selection,
    responses_take_the_media_type_the_client_accepts,
    requests_that_cannot_run_get_an_error_body_without_data,
    queries_travel_over_get_and_mutations_do_not,
    batches_are_refused,
    shape_limits_hold_both_ways,
    mutations_are_rate_limited_per_popug,
    exhausted_pool_answers_503_quickly,
    a_busy_pool_inside_a_loader_answers_503,
    a_request_over_its_time_gets_503,
);

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// Status, content type and JSON body of a POST with these headers and this raw body.
async fn post_raw(
    app: &TestApp,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String, Value) {
    let mut request = app.client.post(app.url("/graphql")).body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the gateway answers");
    read(response).await
}

async fn read(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        // Every refusal that may pass says when to try again.
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"1"[..]),
            "{status} without Retry-After"
        );
    }
    let media = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("a JSON body, not plain text: {text:?}"));
    (status, media, body)
}

/// The specification: a response's fields come in the order of the selection, which need not
/// be alphabetical.
async fn responses_keep_the_order_of_the_selection(app: TestApp) {
    let bob = app.user("worker", "bob").await;
    let body = json!({ "query": "{ me { role name id } zz: me { id } aa: me { name } }" });
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&bob.token)
        .json(&body)
        .send()
        .await
        .expect("the gateway answers");
    let text = response.text().await.expect("a body");
    let at = |key: &str| {
        text.find(key)
            .unwrap_or_else(|| panic!("{key} is not in {text}"))
    };
    assert!(
        at("\"role\"") < at("\"name\"") && at("\"name\"") < at("\"id\""),
        "{text}"
    );
    assert!(at("\"zz\"") < at("\"aa\""), "{text}");
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error with a code: {body}"))
}

const ME: &str = r#"{"query":"{ me { id } }"}"#;

async fn responses_take_the_media_type_the_client_accepts(app: TestApp) {
    let bob = app.user("worker", "bob").await;
    let json_body = ("content-type", "application/json");
    for (accept, expected) in [
        (Some("application/graphql-response+json"), GRAPHQL_RESPONSE),
        (Some("application/json"), JSON),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            GRAPHQL_RESPONSE,
        ),
        // A client that takes anything may predate the specification.
        (Some("*/*"), JSON),
        (
            Some("application/graphql-response+json, */*"),
            GRAPHQL_RESPONSE,
        ),
        (None, JSON),
        (Some("text/html, application/json"), JSON),
    ] {
        let mut headers = vec![json_body];
        if let Some(accept) = accept {
            headers.push(("accept", accept));
        }
        let (status, media, body) = post_raw(&app, Some(&bob.token), &headers, ME).await;
        assert_eq!(status, StatusCode::OK, "{accept:?}: {body}");
        assert_eq!(media, expected, "{accept:?}");
        assert_eq!(body["data"]["me"]["id"], bob.id.as_str());
    }
    // Neither media type acceptable: 406, still a GraphQL error body.
    let (status, _, body) = post_raw(
        &app,
        Some(&bob.token),
        &[json_body, ("accept", "text/html")],
        ME,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    // A body that is not declared JSON: 415.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let (status, _, body) = post_raw(
            &app,
            Some(&bob.token),
            &[("content-type", content_type)],
            ME,
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        assert_eq!(code(&body), "BAD_REQUEST");
    }
    let (status, _, _) = post_raw(
        &app,
        Some(&bob.token),
        &[("content-type", "application/json; charset=utf-8")],
        ME,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

async fn requests_that_cannot_run_get_an_error_body_without_data(app: TestApp) {
    let bob = app.user("worker", "bob").await;
    let before = app.snapshot().await;
    for accept in ["application/graphql-response+json", "application/json"] {
        let headers = [("content-type", "application/json"), ("accept", accept)];
        let cases = [
            (r#"{"query":"{ me { id "}"#, "GRAPHQL_PARSE_FAILED"),
            (
                r#"{"query":"mutation { createTask(input: {title: "}"#,
                "GRAPHQL_PARSE_FAILED",
            ),
            (r#"{"query":"{ nope }"}"#, "GRAPHQL_VALIDATION_FAILED"),
            (
                r#"{"query":"{ me { id } }","variables":{"x":1},"operationName":"Missing"}"#,
                "GRAPHQL_VALIDATION_FAILED",
            ),
            (
                r#"{"query":"mutation { createTask(input: {title: 5}) { id } }"}"#,
                "GRAPHQL_VALIDATION_FAILED",
            ),
            (r#"{"query":"{ me { id } "#, "BAD_REQUEST"),
            (r#"{"variables":{}}"#, "BAD_REQUEST"),
            (r#"{"query":42}"#, "BAD_REQUEST"),
            (
                r#"{"query":"{ me { id } }","variables":[1]}"#,
                "BAD_REQUEST",
            ),
            (r#""{ me { id } }""#, "BAD_REQUEST"),
        ];
        for (body, expected) in cases {
            let (status, _, response) = post_raw(&app, Some(&bob.token), &headers, body).await;
            // A well-formed request whose document cannot run: 400 for a client that speaks
            // the specification's media type, 200 for an older `application/json` client.
            // A body that is not a request at all: 400 for both.
            let wanted = if accept == "application/json" && expected != "BAD_REQUEST" {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            assert_eq!(status, wanted, "{accept} {body}: {response}");
            assert_eq!(code(&response), expected, "{accept} {body}: {response}");
            assert!(response.get("data").is_none(), "no data key: {response}");
        }
    }
    assert_eq!(app.snapshot().await, before);
}

async fn queries_travel_over_get_and_mutations_do_not(app: TestApp) {
    let bob = app.user("worker", "bob").await;
    let client = reqwest::Client::new();
    let response = client
        .get(app.url("/graphql"))
        .query(&[
            (
                "query",
                "query Me($n: Int) { me { id } myTasks(first: $n) { edges { node { id } } } }",
            ),
            ("variables", r#"{"n": 5}"#),
            ("operationName", "Me"),
        ])
        .header(ACCEPT, "application/graphql-response+json")
        .bearer_auth(&bob.token)
        .send()
        .await
        .expect("answers");
    let (status, media, body) = read(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(media, GRAPHQL_RESPONSE);
    assert_eq!(body["data"]["me"]["id"], bob.id.as_str());

    let manager = app.user("manager", "mark").await;
    let before = app.snapshot().await;
    let response = client
        .get(app.url("/graphql"))
        .query(&[(
            "query",
            "mutation { createTask(input: {title: \"sneaky\"}) { id } }",
        )])
        .bearer_auth(&manager.token)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let (_, _, body) = read(response).await;
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    let tasks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
        .fetch_one(app.db.pool())
        .await
        .expect("count");
    assert_eq!(tasks, 0);
    assert_eq!(app.snapshot().await, before);

    // Variables that are not JSON.
    let response = client
        .get(app.url("/graphql"))
        .query(&[("query", "{ me { id } }"), ("variables", "{nope")])
        .bearer_auth(&bob.token)
        .send()
        .await
        .expect("answers");
    let (status, _, body) = read(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "BAD_REQUEST");
}

async fn batches_are_refused(app: TestApp) {
    let bob = app.user("worker", "bob").await;
    let batch = format!("[{ME},{ME}]");
    let (status, _, body) = post_raw(
        &app,
        Some(&bob.token),
        &[("content-type", "application/json")],
        &batch,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "BAD_REQUEST");

    // Enabled by configuration, a batch answers with an array.
    let database = TestDatabase::sqlite();
    let batching = TestApp::start_with(database, |config| config.limits.allow_batch = true).await;
    let bob = batching.user("worker", "bob").await;
    let (status, _, body) = post_raw(
        &batching,
        Some(&bob.token),
        &[("content-type", "application/json")],
        &batch,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["data"]["me"]["id"], bob.id.as_str());
    assert_eq!(body[1]["data"]["me"]["id"], bob.id.as_str());
}

/// The status and the time a query took to answer.
async fn timed(app: &TestApp, token: &str, query: &str) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let (status, _, body) = post_raw(
        app,
        Some(token),
        &[
            ("content-type", "application/json"),
            ("accept", "application/graphql-response+json"),
        ],
        &json!({ "query": query }).to_string(),
    )
    .await;
    (status, body, started.elapsed())
}

async fn shape_limits_hold_both_ways(app: TestApp) {
    let bob = app.user("worker", "bob").await;
    let repeat =
        |n: usize, item: &dyn Fn(usize) -> String| (0..n).map(item).collect::<Vec<_>>().join(" ");
    let cases = [
        (
            "30 aliases",
            format!("{{ me {{ {} }} }}", repeat(30, &|i| format!("a{i}: id"))),
            "31 aliases",
            format!("{{ me {{ {} }} }}", repeat(31, &|i| format!("a{i}: id"))),
        ),
        (
            "20 root fields",
            format!("{{ {} }}", repeat(20, &|_| "me { id }".into())),
            "21 root fields",
            format!("{{ {} }}", repeat(21, &|_| "me { id }".into())),
        ),
        (
            "500 fields",
            format!("{{ me {{ {} }} }}", repeat(499, &|_| "__typename".into())),
            "501 fields",
            format!("{{ me {{ {} }} }}", repeat(500, &|_| "__typename".into())),
        ),
    ];
    for (fine, under, refused, over) in cases {
        let (status, body, _) = timed(&app, &bob.token, &under).await;
        assert_eq!(status, StatusCode::OK, "{fine}: {body}");
        assert!(body.get("errors").is_none(), "{fine}: {body}");
        let (status, body, took) = timed(&app, &bob.token, &over).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}: {body}");
        assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{refused}");
        eprintln!("{refused}: refused in {took:?}");
    }

    // A long query text is refused before it is parsed; the same value as a variable is fine.
    let long = format!("{{ task(id: \"{}\") {{ id }} }}", "x".repeat(16 * 1024));
    let (status, body, took) = timed(&app, &bob.token, &long).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED");
    eprintln!("a 16 KiB query: refused in {took:?}");
    let (status, _, body) = post_raw(
        &app,
        Some(&bob.token),
        &[("content-type", "application/json")],
        &json!({ "query": "query($id: ID!) { task(id: $id) { id } }", "variables": { "id": "x".repeat(16 * 1024) } }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["task"].is_null(), "{body}");

    // Fragments that spread the next one twice, thirty deep: 2^30 fields from under 2 KB.
    let mut doubling = String::from("{ ...F0 }\n");
    for i in 0..30 {
        doubling.push_str(&format!(
            "fragment F{i} on Query {{ ...F{next} ...F{next} }}\n",
            next = i + 1
        ));
    }
    doubling.push_str("fragment F30 on Query { __typename }\n");
    assert!(doubling.len() < 2048);
    let (status, body, took) = timed(&app, &bob.token, &doubling).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1073741824"),
        "{body}"
    );
    eprintln!("2^30 fields through fragments: refused in {took:?}");
    // A bound against hanging, not a performance figure: expanding it would take minutes.
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A fragment that spreads itself.
    let cycle = "{ ...A } fragment A on Query { me { id } ...B } fragment B on Query { ...A }";
    let (status, body, _) = timed(&app, &bob.token, cycle).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED");
}

async fn mutations_are_rate_limited_per_popug(database: TestDatabase) {
    let app = TestApp::start_with(database, |config| config.limits.mutations_per_second = 20).await;
    let bob = app.user("worker", "bob").await;
    let eve = app.user("worker", "eve").await;
    let complete = r#"{"query":"mutation { completeTask(id: \"no-such-task\") { id } }"}"#;
    let headers = [("content-type", "application/json")];
    // 20 a second, in a burst of 20: the 21st waits its turn.
    let mut statuses = Vec::new();
    for _ in 0..25 {
        let (status, _, body) = post_raw(&app, Some(&bob.token), &headers, complete).await;
        statuses.push((status, code(&body).to_owned()));
    }
    let limited = statuses
        .iter()
        .filter(|(s, c)| *s == StatusCode::TOO_MANY_REQUESTS && c == "RATE_LIMITED")
        .count();
    let passed = statuses
        .iter()
        .filter(|(s, c)| *s == StatusCode::OK && c == "NOT_FOUND")
        .count();
    assert!(
        (1..=5).contains(&limited) && passed + limited == 25 && passed >= 20,
        "{statuses:?}"
    );
    // Another popug is not slowed down, and queries are never limited.
    let (status, _, body) = post_raw(&app, Some(&eve.token), &headers, complete).await;
    assert_eq!((status, code(&body)), (StatusCode::OK, "NOT_FOUND"));
    let (status, _, _) = post_raw(&app, Some(&bob.token), &headers, ME).await;
    assert_eq!(status, StatusCode::OK);
    // A second later the bucket has refilled.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = post_raw(&app, Some(&bob.token), &headers, complete).await;
    assert_eq!((status, code(&body)), (StatusCode::OK, "NOT_FOUND"));
}

/// Introspection and "did you mean" suggestions are off in production mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_mode_hides_the_schema() {
    let database = TestDatabase::sqlite();
    let app = TestApp::start_with(database, |config| {
        config.server.env = gateway::config::Environment::Production;
    })
    .await;
    let bob = app.user("worker", "bob").await;
    let body = app
        .gql(
            Some(&bob.token),
            "{ __schema { types { name } } }",
            json!({}),
        )
        .await;
    assert!(
        body["data"].is_null() || body["data"]["__schema"].is_null(),
        "{body}"
    );
    let body = app.gql(Some(&bob.token), "{ mee { id } }", json!({})).await;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(!message.contains("Did you mean"), "{message}");

    let development = TestApp::sqlite().await;
    let bob = development.user("worker", "bob").await;
    let body = development
        .gql(
            Some(&bob.token),
            "{ __schema { queryType { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
}

/// A gateway with one database connection, which gives up waiting for it after 300 ms.
async fn one_connection(database: TestDatabase) -> TestApp {
    TestApp::start_with(database, |config| {
        config.database.db_max_connections = 1;
        config.database.db_acquire_timeout_ms = 300;
    })
    .await
}

/// Sends `query` as `token` without waiting: its status, body and how long it took.
fn send(
    app: &TestApp,
    token: &str,
    query: &str,
) -> tokio::task::JoinHandle<(StatusCode, Value, Duration)> {
    let (url, token, query) = (app.url("/graphql"), token.to_owned(), query.to_owned());
    tokio::spawn(async move {
        let started = Instant::now();
        let response = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&json!({ "query": query }))
            .send()
            .await
            .expect("answers");
        let (status, _, body) = read(response).await;
        (status, body, started.elapsed())
    })
}

/// One database connection, held by a request stuck behind a lock the test takes: the next
/// requests get 503 once the acquire timeout passes, instead of hanging.
async fn exhausted_pool_answers_503_quickly(database: TestDatabase) {
    let app = one_connection(database).await;
    let mut popugs = Vec::new();
    for i in 0..4 {
        popugs.push(app.user("worker", &format!("p{i}")).await);
    }
    let mut lock = hold_popugs(&app).await;
    let requests: Vec<_> = popugs
        .iter()
        .map(|popug| send(&app, &popug.token, STUCK))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut *lock)
        .await
        .expect("unlock");
    drop(lock);
    let mut unavailable = 0;
    for request in requests {
        let (status, body, took) = request.await.expect("joined");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(code(&body), "SERVICE_UNAVAILABLE", "{body}");
            assert!(took < Duration::from_secs(2), "refused only after {took:?}");
            unavailable += 1;
        } else {
            // It waited for the lock, then ran: there is no such task.
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(code(&body), "NOT_FOUND", "{body}");
        }
    }
    assert!(unavailable >= 1, "no request found the pool exhausted");
}

/// `task(id:)` reads through the request's DataLoader, and for a popug the gateway has seen,
/// that read is the request's first use of the database. With the one connection held by a
/// stuck request, the loader finds none free: the answer is 503 `SERVICE_UNAVAILABLE`, as
/// for any other read, not an internal error.
async fn a_busy_pool_inside_a_loader_answers_503(database: TestDatabase) {
    let app = one_connection(database).await;
    let stuck = app.user("worker", "stuck").await;
    let reader = app.user("worker", "reader").await;
    let mut lock = hold_popugs(&app).await;
    let holder = send(&app, &stuck.token, STUCK);
    // The stuck request takes the connection first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body, _) = send(&app, &reader.token, "{ task(id: \"no-such-task\") { id } }")
        .await
        .expect("joined");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut *lock)
        .await
        .expect("unlock");
    drop(lock);
    holder.await.expect("joined");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "SERVICE_UNAVAILABLE", "{body}");
    // With the connection free again, the same read answers.
    let body = app
        .gql(
            Some(&reader.token),
            "{ task(id: \"no-such-task\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(body, json!({ "data": { "task": null } }));
}

/// A request that waits while [`hold_popugs`] holds: on PostgreSQL the task update waits for
/// the table lock, on SQLite the write transaction waits for the database lock.
const STUCK: &str = "mutation { completeTask(id: \"no-such-task\") { id } }";

/// A connection of the test's own that keeps the popug replica and the tasks locked until it
/// rolls back.
async fn hold_popugs(app: &TestApp) -> sqlx::pool::PoolConnection<sqlx::Any> {
    let mut lock = app.db.pool().acquire().await.expect("a connection");
    let take = match app.db.backend() {
        ates_db::Backend::Sqlite => "BEGIN EXCLUSIVE",
        ates_db::Backend::Postgres => "BEGIN; LOCK TABLE popugs, tasks IN ACCESS EXCLUSIVE MODE",
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(take))
        .execute(&mut *lock)
        .await
        .expect("lock");
    lock
}

/// A request stuck behind a lock is stopped at its time limit with 503 `TIMEOUT`.
async fn a_request_over_its_time_gets_503(database: TestDatabase) {
    let app = TestApp::start_with(database, |config| config.limits.request_timeout_secs = 1).await;
    let slow = app.user("worker", "slow").await;
    let mut lock = hold_popugs(&app).await;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(app.url("/graphql"))
        .bearer_auth(&slow.token)
        .json(&json!({ "query": STUCK }))
        .send()
        .await
        .expect("answers");
    let took = started.elapsed();
    let (status, _, body) = read(response).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut *lock)
        .await
        .expect("unlock");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "TIMEOUT");
    assert!(took < Duration::from_secs(5), "stopped only after {took:?}");
}
