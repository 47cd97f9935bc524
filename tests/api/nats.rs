//! The gateway on NATS JetStream: every outbox event published once and in order (across a
//! gateway restart and a broker outage), and Popug Data Updated consumed from a stream.
//!
//! Runs against the NATS server `TEST_NATS_URL` names (`.ci/run` sets it); the outage test
//! starts a `nats-server` of its own, on a free port, so that it may stop it.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use chrono::Utc;
use futures::StreamExt as _;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::auth_events::message;
use crate::helpers::{Gateway, TestApp, TestDatabase, token};
use crate::on_both_backends;

on_both_backends!(
    events_are_published_once_in_order_across_a_gateway_restart,
    a_broker_outage_loses_nothing,
    popug_data_updated_is_consumed_from_the_stream,
);

/// The NATS server of the tests, or `None` (the test is skipped, loudly).
fn nats_url() -> Option<String> {
    let url = std::env::var("TEST_NATS_URL").ok();
    if url.is_none() {
        eprintln!("TEST_NATS_URL is not set: skipping this NATS test");
    }
    url
}

/// Stream, subject and consumer names of one test, so tests sharing a server never meet.
struct Names {
    prefix: String,
    stream: String,
    auth_subject: String,
    auth_stream: String,
}

impl Names {
    fn new() -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Self {
            prefix: format!("t{tag}"),
            stream: format!("T{tag}"),
            auth_subject: format!("a{tag}.popug.>"),
            auth_stream: format!("A{tag}"),
        }
    }

    fn env(&self, url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("ATES_NATS_URL", url.to_owned()),
            ("ATES_NATS_STREAM", self.stream.clone()),
            ("ATES_NATS_SUBJECT_PREFIX", self.prefix.clone()),
            ("ATES_NATS_AUTH_SUBJECT", self.auth_subject.clone()),
            ("ATES_NATS_AUTH_STREAM", self.auth_stream.clone()),
        ]
    }

    fn configure(&self, url: &str, config: &mut gateway::Config) {
        config.broker.nats_url = Some(url.to_owned());
        config.broker.nats_stream = self.stream.clone();
        config.broker.nats_subject_prefix = self.prefix.clone();
        config.broker.nats_auth_subject = self.auth_subject.clone();
        config.broker.nats_auth_stream = self.auth_stream.clone();
    }
}

/// `(subject, Nats-Msg-Id, body)` of a stream message.
type Published = (String, String, Value);

/// Reads the whole stream from its start until `expected` messages arrived (at most 60 s),
/// then makes sure nothing more comes.
async fn read_stream(url: &str, stream_name: &str, expected: usize) -> Vec<Published> {
    let js = jetstream::new(async_nats::connect(url).await.expect("NATS answers"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let stream = loop {
        match js.get_stream(stream_name).await {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("the gateway never created {stream_name}: {error}"),
        }
    };
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("a reader");
    let mut messages = consumer.messages().await.expect("messages");
    let mut seen = Vec::new();
    loop {
        let wait = if seen.len() < expected {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(500)
        };
        match tokio::time::timeout(wait, messages.next()).await {
            Ok(Some(Ok(message))) => {
                let id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_owned())
                    .expect("every message has its outbox id");
                let body = serde_json::from_slice(&message.payload).expect("JSON");
                seen.push((message.subject.to_string(), id, body));
            }
            Ok(other) => panic!("the reader stopped: {other:?}"),
            Err(_) => break,
        }
    }
    seen
}

/// The outbox, oldest first: `(id, type, version)`.
async fn outbox(db: &ates_db::Db) -> Vec<(String, String, i64)> {
    sqlx::query("SELECT id, event_type, version FROM outbox ORDER BY xid, seq")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Every outbox event is in the stream exactly once, in outbox order, on its subject.
async fn assert_published_once_in_order(url: &str, names: &Names, db: &ates_db::Db) {
    let expected = outbox(db).await;
    assert!(!expected.is_empty());
    let seen = read_stream(url, &names.stream, expected.len()).await;
    let ids: Vec<&str> = seen.iter().map(|(_, id, _)| id.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(
        ids, want,
        "the stream holds each event once, in outbox order"
    );
    for ((subject, _, body), (id, kind, version)) in seen.iter().zip(&expected) {
        assert_eq!(subject, &format!("{}.{kind}.v{version}", names.prefix));
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["type"], kind.as_str());
        assert_eq!(body["version"], *version);
        assert!(body["data"].is_object());
    }
}

async fn graphql(client: &reqwest::Client, url: &str, token: &str, query: &str) -> Value {
    let body = crate::helpers::post_graphql(client, url, token, query).await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"].clone()
}

fn popug_token(role: &str) -> String {
    let now = Utc::now().timestamp();
    token(&json!({
        "sub": uuid::Uuid::new_v4().to_string(), "name": role, "role": role,
        "iat": now, "exp": now + 3600,
    }))
}

/// A manager, and the one worker every task goes to.
struct Crew {
    manager: String,
    worker: String,
}

impl Crew {
    fn new() -> Self {
        Self {
            manager: popug_token("manager"),
            worker: popug_token("worker"),
        }
    }
}

/// Creates `count` tasks and completes every other one.
async fn business(client: &reqwest::Client, url: &str, crew: &Crew, count: usize) {
    let Crew { manager, worker } = crew;
    graphql(client, url, worker, "{ me { id } }").await;
    for i in 0..count {
        let created = graphql(
            client,
            url,
            manager,
            &format!("mutation {{ createTask(input: {{ title: \"task {i}\" }}) {{ id }} }}"),
        )
        .await;
        if i % 2 == 0 {
            let id = created["createTask"]["id"].as_str().unwrap();
            graphql(
                client,
                url,
                worker,
                &format!("mutation {{ completeTask(id: \"{id}\") {{ id }} }}"),
            )
            .await;
        }
    }
}

async fn events_are_published_once_in_order_across_a_gateway_restart(database: TestDatabase) {
    let Some(url) = nats_url() else { return };
    let names = Names::new();
    let env = names.env(&url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client = reqwest::Client::new();
    let crew = Crew::new();

    let gateway = Gateway::start_with(&database, &env);
    business(&client, &gateway.url, &crew, 10).await;
    // Killed at once: whatever it had not published yet is published by the next start.
    gateway.kill();
    let gateway = Gateway::start_with(&database, &env);
    business(&client, &gateway.url, &crew, 10).await;

    let db = database.connect().await;
    assert_published_once_in_order(&url, &names, &db).await;
    let relayed = ates_events::outbox::offset(db.pool(), "nats-relay")
        .await
        .unwrap();
    let last = ates_events::outbox::end(&mut db.pool().acquire().await.unwrap())
        .await
        .unwrap();
    assert_eq!(relayed, last, "the relay saved how far it got");
}

/// A `nats-server` with JetStream of this test's own, so it can be stopped and started.
struct OwnNats {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnNats {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut nats = Self {
            port,
            store: tempfile::tempdir().unwrap(),
            child: None,
        };
        nats.restart();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn a_broker_outage_loses_nothing(database: TestDatabase) {
    if nats_url().is_none() {
        return;
    }
    let mut nats = OwnNats::start();
    let names = Names::new();
    let app = TestApp::start_with(database, |config| names.configure(&nats.url(), config)).await;
    let client = reqwest::Client::new();
    let url = app.url("/graphql");
    let crew = Crew::new();
    business(&client, &url, &crew, 6).await;
    // Everything so far reached the broker before it goes down.
    assert_published_once_in_order(&nats.url(), &names, &app.db).await;

    nats.stop();
    // The gateway works unchanged without its broker.
    business(&client, &url, &crew, 6).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.restart();
    assert_published_once_in_order(&nats.url(), &names, &app.db).await;
}

async fn popug_data_updated_is_consumed_from_the_stream(database: TestDatabase) {
    let Some(url) = nats_url() else { return };
    let names = Names::new();
    // The auth service's stream, as it would have it.
    let js = jetstream::new(async_nats::connect(&url).await.expect("NATS answers"));
    js.create_stream(stream::Config {
        name: names.auth_stream.clone(),
        subjects: vec![names.auth_subject.clone()],
        ..Default::default()
    })
    .await
    .expect("the auth stream");
    let subject = |kind: &str| names.auth_subject.replace('>', kind);

    let now = Utc::now();
    let (ann, ben) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let created = message(
        "popug.created",
        now,
        1,
        &ann,
        json!({ "name": "Ann", "role": "manager" }),
    );
    let mut bad = message(
        "popug.created",
        now,
        1,
        &ben,
        json!({ "name": "Ben", "role": "worker" }),
    );
    bad["type"] = json!("popug.renamed");
    let updated = message(
        "popug.updated",
        now,
        2,
        &ann,
        json!({ "name": "Ann", "email": "ann@uberpopug.test", "role": "worker" }),
    );
    let ben_created = message(
        "popug.created",
        now,
        1,
        &ben,
        json!({ "name": "Ben", "role": "worker" }),
    );
    let ben_deleted = message("popug.deleted", now, 3, &ben, json!({}));
    // In the stream before the gateway starts: a durable consumer takes them from the start.
    for (kind, event) in [
        ("created", &created),
        ("created", &bad),
        ("created", &created),
        ("updated", &updated),
    ] {
        js.publish(subject(kind), event.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let app = TestApp::start_with(database, |config| names.configure(&url, config)).await;
    for (kind, event) in [("created", &ben_created), ("deleted", &ben_deleted)] {
        js.publish(subject(kind), event.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let handled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM auth_events")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
        if handled == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "{handled} of 4 events handled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the bad message, and the repeat of the first changed nothing.
    assert_eq!(
        app.popug_row(&ann).await,
        Some((
            "Ann".into(),
            Some("ann@uberpopug.test".into()),
            "worker".into(),
            true
        ))
    );
    assert!(!app.popug_row(&ben).await.unwrap().3, "Ben was deleted");
    let parked: Vec<(String, String, String)> =
        sqlx::query("SELECT subject, payload, reason FROM dead_letters")
            .fetch_all(app.db.pool())
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].0, subject("created"));
    assert_eq!(
        serde_json::from_str::<Value>(&parked[0].1).unwrap(),
        bad,
        "the message is kept as it came"
    );
    assert!(parked[0].2.contains("popug.renamed"), "{}", parked[0].2);
}

/// Two replicas on one PostgreSQL database: one relays at a time, and when it is killed the
/// other takes over; the stream still holds every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_relay_one_at_a_time_and_take_over() {
    let Some(url) = nats_url() else { return };
    let Some(database) = TestDatabase::postgres().await else {
        return;
    };
    let names = Names::new();
    let env = names.env(&url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client = reqwest::Client::new();
    let crew = Crew::new();
    let db = database.connect().await;
    // The first replica takes the relay lock before the second starts: killing it later
    // makes the second take over.
    let first = Gateway::start_with(&database, &env);
    let holders = "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 176050179 \
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held: i64 = sqlx::query_scalar(holders)
            .fetch_one(db.pool())
            .await
            .unwrap();
        if held == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first replica never took the relay lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = Gateway::start_with(&database, &env);
    business(&client, &first.url, &crew, 6).await;
    business(&client, &second.url, &crew, 6).await;
    assert_published_once_in_order(&url, &names, &db).await;
    let held: i64 = sqlx::query_scalar(holders)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(held, 1, "one relay at a time");
    first.kill();
    business(&client, &second.url, &crew, 6).await;
    assert_published_once_in_order(&url, &names, &db).await;
}
