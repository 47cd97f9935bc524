//! What an operator relies on: `/metrics`, `/readyz`, an orderly stop on SIGTERM, and
//! replicas that start together on a fresh database.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::{Gateway, TestApp, TestDatabase, global_id, key_of, token};
use crate::on_both_backends;
use crate::ws::Ws;

on_both_backends!(
    metrics_show_the_named_series_and_parse_as_prometheus_text,
    metrics_are_not_served_without_a_token,
);

async fn metrics_are_not_served_without_a_token(database: TestDatabase) {
    let app = TestApp::start_with(database, |config| config.server.metrics_token = None).await;
    let response = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND");
}

/// One sample of the exposition: name, labels (sorted), value.
type Sample = (String, Vec<(String, String)>, f64);

/// The samples of the exposition.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    scrape
        .samples
        .into_iter()
        .map(|sample| {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            };
            let mut labels: Vec<(String, String)> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            (sample.metric, labels, value)
        })
        .collect()
}

fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
}

async fn metrics_show_the_named_series_and_parse_as_prometheus_text(app: TestApp) {
    let admin = app.user("admin", "alice").await;
    let bob = app.user("worker", "bob").await;
    app.create_task(&admin, "feed the parrots").await;
    app.ok(
        &bob,
        "query MyOpenTasks { myTasks(status: OPEN) { edges { node { id } } } }",
        json!({}),
    )
    .await;
    let refused = app
        .error_code(
            Some(&bob.token),
            "mutation Shuffle { shuffleTasks { moved } }",
            json!({}),
        )
        .await;
    assert_eq!(refused, "FORBIDDEN");
    let _socket = app
        .subscribed(
            &bob,
            "subscription { taskAssigned { task { id } } }",
            json!({}),
        )
        .await;

    // Strangers get nothing: no token, or the wrong one.
    for token in [None, Some("guess"), Some("")] {
        let mut request = reqwest::Client::new().get(app.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), 401, "{token:?}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }
    let response = app.scrape().await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let samples = parse_exposition(&text);
    let need = |name: &str, labels: &[(&str, &str)]| {
        value_of(&samples, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert!(
        need(
            "ates_graphql_requests_total",
            &[("operation", "MyOpenTasks"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert!(
        need(
            "ates_graphql_requests_total",
            &[("operation", "Shuffle"), ("outcome", "error")]
        ) >= 1.0
    );
    assert!(need("ates_graphql_errors_total", &[("code", "FORBIDDEN")]) >= 1.0);
    assert!(
        text.contains("ates_graphql_request_duration_seconds_count{operation=\"MyOpenTasks\"}")
    );
    assert!(text.contains(
        "ates_graphql_request_duration_seconds_bucket{operation=\"MyOpenTasks\",le=\"0.005\"}"
    ));
    assert!(need("ates_websockets_open", &[]) >= 1.0);
    assert!(need("ates_subscriptions_active", &[]) >= 1.0);
    need("ates_outbox_waiting_events", &[("consumer", "accounting")]);
    need(
        "ates_outbox_oldest_waiting_seconds",
        &[("consumer", "accounting")],
    );
    for status in ["PENDING", "PAID", "FAILED"] {
        need("ates_payouts", &[("status", status)]);
    }
    assert!(need("ates_db_pool_connections", &[]) >= 1.0);
    need("ates_db_pool_idle_connections", &[]);
    assert_eq!(need("ates_database_up", &[]), 1.0);
    // Tokens and query text never reach the exposition.
    assert!(!text.contains(&bob.token));
    assert!(!text.contains("myTasks"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_readyz_turns_503_when_the_database_is_gone() {
    let Some(database) = TestDatabase::postgres().await else {
        return;
    };
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap();
    let name = database.url.rsplit('/').next().unwrap().to_owned();
    let app = TestApp::start_with(database, |config| {
        config.database.db_acquire_timeout_ms = 500
    })
    .await;
    let ready = || async { reqwest::get(app.url("/readyz")).await.unwrap().status() };
    assert_eq!(ready().await, 200);
    app.db.pool().close().await;
    ates_db::drop_database(&admin_url, &name).await.unwrap();
    assert_eq!(ready().await, 503);
    let health = reqwest::get(app.url("/healthz")).await.unwrap().status();
    assert_eq!(health, 200, "the process itself still answers");
    // The figures are read on their own interval, so the scrape after the loss may still show
    // the last good reading; the next reading says the database is gone.
    app.scrape_until("ates_database_up 0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigterm_drains_requests_and_sends_sockets_away() {
    sigterm_drains_requests_and_sends_sockets_away(TestDatabase::sqlite()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigterm_drains_requests_and_sends_sockets_away() {
    if let Some(database) = TestDatabase::postgres().await {
        sigterm_drains_requests_and_sends_sockets_away(database).await
    }
}

async fn post(client: &reqwest::Client, url: &str, token: &str, query: &str) -> Value {
    crate::helpers::post_graphql(client, url, token, query).await
}

async fn sigterm_drains_requests_and_sends_sockets_away(database: TestDatabase) {
    let mut gateway = Gateway::start_with(&database, &[("ATES_SHUTDOWN_DELAY_MS", "1500")]);
    let client = reqwest::Client::new();
    let now = Utc::now().timestamp();
    let person = |role: &str| {
        let id = uuid::Uuid::new_v4().to_string();
        let token =
            token(&json!({ "sub": id, "name": role, "role": role, "iat": now, "exp": now + 3600 }));
        (id, token)
    };
    let (manager, worker) = (person("manager"), person("worker"));
    post(&client, &gateway.url, &worker.1, "{ me { id } }").await;
    let created = post(
        &client,
        &gateway.url,
        &manager.1,
        "mutation { createTask(input: { title: \"slow\" }) { id } }",
    )
    .await;
    // The task's own key, for the database; the API takes it as well as the global id.
    let task = key_of(&created["data"]["createTask"]["id"]);
    let mut socket = Ws::connect(
        &format!("{}/graphql/ws", gateway.base().replace("http", "ws")),
        "graphql-transport-ws",
    )
    .await;
    socket.init(&worker.1).await;
    socket
        .subscribe(
            "1",
            "subscription { taskAssigned { task { id } } }",
            json!({}),
        )
        .await;

    // The completion waits on a lock the test holds: a request in flight when SIGTERM comes.
    let db = database.connect().await;
    let mut lock = db.begin_write().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM tasks WHERE id = $1{}",
        db.lock_rows()
    )))
    .bind(&task)
    .fetch_all(&mut *lock)
    .await
    .unwrap();
    let slow = {
        let (client, url, token) = (client.clone(), gateway.url.clone(), worker.1.clone());
        let query = format!("mutation {{ completeTask(id: \"{task}\") {{ id status }} }}");
        tokio::spawn(async move { post(&client, &url, &token, &query).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!slow.is_finished(), "the completion waits for the lock");

    let signalled = Instant::now();
    gateway.terminate();
    assert_eq!(
        socket.close_code(Duration::from_secs(5)).await,
        Some(1001),
        "sockets are told the server is going away"
    );
    let ready = reqwest::get(format!("{}/readyz", gateway.base()))
        .await
        .expect("still answering during the delay");
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..]),
        "a 503 says when to come back"
    );
    let body: Value = ready.json().await.expect("the JSON error body");
    assert_eq!(body["errors"][0]["message"], "shutting down", "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "SERVICE_UNAVAILABLE"
    );

    // Past the delay, the request is still in flight; then the lock goes and it finishes.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(signalled.elapsed())).await;
    assert!(!slow.is_finished());
    lock.commit().await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the request finishes")
        .unwrap();
    assert_eq!(
        answer["data"]["completeTask"],
        json!({ "id": global_id("Task", &task), "status": "DONE" }),
        "{answer}"
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = gateway.exit_status(Duration::from_secs(10));
        (gateway, status)
    })
    .await
    .unwrap()
    .1
    .expect("the gateway exits once drained");
    assert!(status.success(), "{status:?}");
    let done: String = sqlx::query_scalar("SELECT status FROM tasks WHERE id = $1")
        .bind(&task)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(done, "DONE");
}

/// Four replicas started at once on a fresh PostgreSQL database: one migrates, the others wait
/// for its lock, and all become ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_four_replicas_start_at_once_on_a_fresh_database() {
    let Some(database) = TestDatabase::postgres().await else {
        return;
    };
    let database = std::sync::Arc::new(database);
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let database = std::sync::Arc::clone(&database);
            std::thread::spawn(move || Gateway::start(&database))
        })
        .collect();
    let gateways: Vec<Gateway> = starts
        .into_iter()
        .map(|start| start.join().expect("every replica starts"))
        .collect();
    for gateway in &gateways {
        let ready = reqwest::get(format!("{}/readyz", gateway.base()))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
    }
    let db = database.connect().await;
    let migrations = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/postgres"),
    )
    .unwrap()
    .count() as i64;
    let (rows, versions): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT version) FROM _sqlx_migrations WHERE success",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((rows, versions), (migrations, migrations));
}

/// JSON log lines: each request with its id (the client's, echoed back), operation and popug;
/// never the token, the query text or its variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_and_no_secrets() {
    let database = TestDatabase::sqlite();
    let gateway = Gateway::start_with(
        &database,
        &[("ATES_LOG_FORMAT", "json"), ("RUST_LOG", "info,sqlx=warn")],
    );
    let now = Utc::now().timestamp();
    let id = uuid::Uuid::new_v4().to_string();
    let bearer =
        token(&json!({ "sub": id, "name": "Bob", "role": "worker", "iat": now, "exp": now + 600 }));
    let client = reqwest::Client::new();
    let response = client
        .post(&gateway.url)
        .bearer_auth(&bearer)
        .header("x-request-id", "req-from-the-balancer-42")
        .json(&json!({
            "query": "query Lookup($secretWord: ID!) { me { id } task(id: $secretWord) { id } }",
            "variables": { "secretWord": "swordfish" },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-request-id"],
        "req-from-the-balancer-42"
    );
    // Without one, the gateway makes one up and returns it.
    let response = client
        .post(&gateway.url)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    let made_up = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&made_up).is_ok(), "{made_up}");

    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let lines = gateway.logs.lock().unwrap().clone();
        if lines.iter().any(|l| l.contains(&made_up)) || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let entries: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let ours = entries
        .iter()
        .find(|e| e["span"]["id"] == "req-from-the-balancer-42" && e["status"] == 200)
        .unwrap_or_else(|| panic!("no response line for the request in {lines:#?}"));
    assert_eq!(ours["span"]["operation"], "Lookup");
    assert_eq!(ours["span"]["popug"], id.as_str());
    assert_eq!(ours["span"]["path"], "/graphql");
    assert!(entries.iter().any(|e| e["span"]["id"] == made_up.as_str()));
    let all = lines.join("\n");
    for secret in [
        bearer.as_str(),
        "swordfish",
        "secretWord",
        crate::helpers::SECRET,
    ] {
        assert!(!all.contains(secret), "{secret} leaked into the logs");
    }
}
