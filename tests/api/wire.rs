//! What travels on the wire: compressed answers for clients that accept them, automatic
//! persisted queries (a query sent by its hash), and the `graphql-http` server audit of the
//! GraphQL-over-HTTP specification, with no warning.

use std::process::{Command, Stdio};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::helpers::{TestApp, TestDatabase, js_dir};
use crate::on_both_backends;

on_both_backends!(
    large_answers_are_compressed_for_clients_that_accept_it,
    the_graphql_http_audit_passes_without_a_warning,
    persisted_queries_travel_by_their_hash,
);

const PAGE: &str = "{ tasks(first: 100) { edges { cursor node { id title description status \
    assignee { id name } } } pageInfo { hasNextPage endCursor } } }";

/// The encoding and the size of the answer to `query` as sent, when the client accepts
/// `encoding`; with a client that decodes nothing itself.
async fn sent(app: &TestApp, token: &str, query: &str, encoding: &str) -> (Option<String>, usize) {
    let raw = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .build()
        .expect("a client");
    let response = raw
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .header(ACCEPT_ENCODING, encoding)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("answers");
    let used = response
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response.bytes().await.expect("a body");
    (used, bytes.len())
}

async fn large_answers_are_compressed_for_clients_that_accept_it(database: TestDatabase) {
    let app = TestApp::start_with(database, |config| {
        config.limits.mutations_per_second = 0;
    })
    .await;
    let manager = app.user("manager", "mark").await;
    for i in 0..5 {
        app.user("worker", &format!("worker-{i}")).await;
    }
    for i in 0..100 {
        app.create_task(&manager, &format!("Task {i}: count the popugs' feathers"))
            .await;
    }

    let (plain_encoding, plain) = sent(&app, &manager.token, PAGE, "identity").await;
    let (gzip_encoding, gzip) = sent(&app, &manager.token, PAGE, "gzip").await;
    let (br_encoding, br) = sent(&app, &manager.token, PAGE, "br").await;
    eprintln!(
        "a 100-task page: {plain} bytes plain, {gzip} gzip ({:.0} % saved), {br} br ({:.0} % saved)",
        100.0 - 100.0 * gzip as f64 / plain as f64,
        100.0 - 100.0 * br as f64 / plain as f64,
    );
    assert_eq!(plain_encoding, None);
    assert_eq!(gzip_encoding.as_deref(), Some("gzip"));
    assert_eq!(br_encoding.as_deref(), Some("br"));
    assert!(gzip * 3 < plain && br * 3 < plain, "{plain} {gzip} {br}");

    // A client that decodes gets the same answer as one that asked for none.
    let decoded: Value = reqwest::Client::new()
        .post(app.url("/graphql"))
        .bearer_auth(&manager.token)
        .json(&json!({ "query": PAGE }))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let plain: Value = app.gql(Some(&manager.token), PAGE, json!({})).await;
    assert_eq!(decoded, plain);
    assert_eq!(
        decoded["data"]["tasks"]["edges"].as_array().map(Vec::len),
        Some(100)
    );

    // A small answer is not worth compressing.
    let (small, _) = sent(&app, &manager.token, "{ me { name } }", "gzip").await;
    assert_eq!(small, None);
}

/// `graphql-http`'s `serverAudits` against the running gateway: every MUST and every SHOULD.
async fn the_graphql_http_audit_passes_without_a_warning(database: TestDatabase) {
    let app = TestApp::start_with(database, |_| {}).await;
    let bob = app.user("worker", "bob").await;
    let js = js_dir();
    let url = app.url("/graphql");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(js.join("audit.mjs"))
            .arg(url)
            .arg(bob.token)
            .stderr(Stdio::inherit())
            .output()
            .expect("node is installed")
    })
    .await
    .expect("joined");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the audit found faults:\n{printed}"
    );
    let summary: Value = printed
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .expect("a summary line");
    assert_eq!(summary["bad"], 0, "{printed}");
    assert!(summary["ok"].as_u64() > Some(30), "{printed}");
}

fn persisted(text: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hex::encode(Sha256::digest(text)) } })
}

/// A POST of `body` as `token`: its status and JSON body.
async fn post(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("answers");
    (response.status(), response.json().await.expect("JSON"))
}

/// A GET with these parameters as `token`: its status and JSON body.
async fn get(app: &TestApp, token: &str, params: &[(&str, String)]) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(app.url("/graphql"))
        .bearer_auth(token)
        .header("accept", "application/graphql-response+json")
        .query(params)
        .send()
        .await
        .expect("answers");
    (response.status(), response.json().await.expect("JSON"))
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

async fn persisted_queries_travel_by_their_hash(database: TestDatabase) {
    let app = TestApp::start_with(database, |config| config.limits.max_aliases = 2).await;
    let bob = app.user("worker", "bob").await;
    let me = "query Me { me { name role } }";

    // Unknown: the client is told to send the text, in the protocol's words.
    let (status, body) = post(&app, &bob.token, json!({ "extensions": persisted(me) })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    assert!(body.get("data").is_none(), "{body}");

    // The text with its hash runs and is kept; then the hash alone will do, over GET too.
    let (status, body) = post(
        &app,
        &bob.token,
        json!({ "query": me, "extensions": persisted(me) }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["me"]["name"], "bob", "{body}");
    let (_, by_hash) = post(&app, &bob.token, json!({ "extensions": persisted(me) })).await;
    assert_eq!(by_hash, body);
    let (status, over_get) = get(
        &app,
        &bob.token,
        &[("extensions", persisted(me).to_string())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(over_get, body);

    // A text that is not its hash is refused, and not kept under that hash.
    let lie = persisted("{ me { email } }");
    let (status, body) = post(
        &app,
        &bob.token,
        json!({ "query": "{ me { id } }", "extensions": lie }),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
        "{body}"
    );
    let (_, body) = post(
        &app,
        &bob.token,
        json!({ "extensions": persisted("{ me { email } }") }),
    )
    .await;
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");

    // The shape limits hold for a persisted query as for a sent one.
    let aliased = "{ a: me { id } b: me { id } c: me { id } }";
    let (_, body) = post(
        &app,
        &bob.token,
        json!({ "query": aliased, "extensions": persisted(aliased) }),
    )
    .await;
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    let (_, body) = post(
        &app,
        &bob.token,
        json!({ "extensions": persisted(aliased) }),
    )
    .await;
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");

    // A persisted mutation is still not run over GET.
    let create = "mutation { createTask(input: { title: \"by hash\" }) { id } }";
    let (_, body) = post(
        &app,
        &bob.token,
        json!({ "query": create, "extensions": persisted(create) }),
    )
    .await;
    assert!(body["data"]["createTask"]["id"].is_string(), "{body}");
    let (status, body) = get(
        &app,
        &bob.token,
        &[("extensions", persisted(create).to_string())],
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
}
