use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::{Gateway, TestApp, TestDatabase, User, token};
use crate::on_both_backends;
use crate::ws::{Said, Ws};

on_both_backends!(
    popugs_hear_only_their_own_and_watchers_hear_all,
    another_popugs_events_are_forbidden,
    completions_are_heard_with_their_reward,
    resume_replays_then_goes_live_without_gap_or_repeat,
    sockets_keep_the_protocol_rules,
    the_legacy_protocol_works_too,
);

const ASSIGNED: &str = "subscription($who: ID, $after: Int) { taskAssigned(assigneeId: $who, after: $after) { \
                        seq occurredAt fee task { id title assignFee } assignee { id } previousAssignee { id } } }";
const QUIET: Duration = Duration::from_millis(700);

impl TestApp {
    pub async fn ws(&self, protocol: &str) -> Ws {
        Ws::connect(&format!("ws://{}/graphql/ws", self.addr), protocol).await
    }

    /// A socket with a subscription started under id "1".
    pub async fn subscribed(&self, user: &User, query: &str, variables: Value) -> Ws {
        let mut ws = self.ws("graphql-transport-ws").await;
        ws.init(&user.token).await;
        ws.subscribe("1", query, variables).await;
        // Let the subscription reach the feed before anything is committed.
        tokio::time::sleep(Duration::from_millis(500)).await;
        ws
    }
}

fn events(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .map(|m| &m["payload"]["data"]["taskAssigned"])
        .collect()
}

async fn popugs_hear_only_their_own_and_watchers_hear_all(app: TestApp) {
    let admin = app.user("admin", "alice").await;
    let manager = app.user("manager", "mark").await;
    let mut workers = Vec::new();
    for name in ["bob", "carl", "dora"] {
        workers.push(app.user("worker", name).await);
    }
    let mut sockets = Vec::new();
    for worker in &workers {
        sockets.push(app.subscribed(worker, ASSIGNED, json!({})).await);
    }
    let mut everyone = app.subscribed(&admin, ASSIGNED, json!({})).await;
    let mut watch_bob = app
        .subscribed(&manager, ASSIGNED, json!({ "who": workers[0].id }))
        .await;

    let mut by_worker: HashMap<String, HashSet<String>> = HashMap::new();
    for i in 0..12 {
        let task = app.create_task(&manager, &format!("Task {i}")).await;
        by_worker
            .entry(task["assignee"]["id"].as_str().unwrap().to_owned())
            .or_default()
            .insert(task["id"].as_str().unwrap().to_owned());
    }
    for (worker, socket) in workers.iter().zip(&mut sockets) {
        let expected = by_worker.get(&worker.id).map_or(0, HashSet::len);
        let heard = socket.collect(expected).await;
        let heard: HashSet<String> = events(&heard)
            .iter()
            .map(|e| {
                assert_eq!(
                    e["assignee"]["id"],
                    worker.id.as_str(),
                    "another's event reached {}",
                    worker.id
                );
                assert!(e["previousAssignee"].is_null());
                let fee = e["fee"].as_i64().unwrap();
                assert!((10..=20).contains(&fee));
                assert_eq!(e["fee"], e["task"]["assignFee"]);
                e["task"]["id"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            heard,
            by_worker.get(&worker.id).cloned().unwrap_or_default()
        );
    }
    let all = everyone.collect(12).await;
    assert_eq!(all.len(), 12);
    let seqs: Vec<i64> = events(&all)
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in commit order: {seqs:?}"
    );
    let bobs = watch_bob
        .collect(by_worker.get(&workers[0].id).map_or(0, HashSet::len))
        .await;
    assert!(
        events(&bobs)
            .iter()
            .all(|e| e["assignee"]["id"] == workers[0].id.as_str())
    );

    // A shuffle is heard with the previous assignee.
    app.ok(
        &manager,
        "mutation { shuffleTasks { reassigned } }",
        json!({}),
    )
    .await;
    let moves = everyone.collect(12).await;
    assert_eq!(moves.len(), 12);
    for event in events(&moves) {
        assert!(event["previousAssignee"]["id"].is_string());
    }
    // Each worker hears the draws onto them and the ones that took a task from them (its
    // board loses it), and nothing else.
    for (worker, socket) in workers.iter().zip(&mut sockets) {
        let theirs: Vec<i64> = events(&moves)
            .iter()
            .filter(|e| {
                e["assignee"]["id"] == worker.id.as_str()
                    || e["previousAssignee"]["id"] == worker.id.as_str()
            })
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        let heard = socket.collect(theirs.len()).await;
        let heard: Vec<i64> = events(&heard)
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(heard, theirs, "{}", worker.id);
        assert!(matches!(socket.said(QUIET).await, Said::Silent));
    }
}

async fn another_popugs_events_are_forbidden(app: TestApp) {
    let bob = app.user("worker", "bob").await;
    let carl = app.user("worker", "carl").await;
    let mut ws = app
        .subscribed(&bob, ASSIGNED, json!({ "who": carl.id }))
        .await;
    let message = ws.message().await;
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"],
        "FORBIDDEN"
    );
    assert_eq!(ws.message().await["type"], "complete");
    // Naming oneself is fine.
    ws.subscribe("2", ASSIGNED, json!({ "who": bob.id })).await;
    assert!(matches!(ws.said(QUIET).await, Said::Silent));
}

async fn completions_are_heard_with_their_reward(app: TestApp) {
    let manager = app.user("manager", "mark").await;
    let bob = app.user("worker", "bob").await;
    let query = "subscription { taskCompleted { seq reward taskId assignee { id } task { status reward } } }";
    let mut ws = app.subscribed(&bob, query, json!({})).await;
    let task = app.create_task(&manager, "Feed").await;
    app.ok(
        &bob,
        "mutation($id: ID!) { completeTask(id: $id) { id } }",
        json!({ "id": task["id"] }),
    )
    .await;
    let heard = ws.collect(1).await;
    let event = &heard[0]["payload"]["data"]["taskCompleted"];
    assert_eq!(event["taskId"], task["id"]);
    assert_eq!(event["assignee"]["id"], bob.id.as_str());
    assert_eq!(event["task"]["status"], "DONE");
    assert_eq!(event["reward"], event["task"]["reward"]);
}

async fn resume_replays_then_goes_live_without_gap_or_repeat(app: TestApp) {
    let manager = app.user("manager", "mark").await;
    let bob = app.user("worker", "bob").await;
    let mut created = Vec::new();
    for i in 0..4 {
        created.push(app.create_task(&manager, &format!("Task {i}")).await["id"].clone());
    }
    let mut ws = app.subscribed(&bob, ASSIGNED, json!({ "after": 0 })).await;
    for i in 4..7 {
        created.push(app.create_task(&manager, &format!("Task {i}")).await["id"].clone());
    }
    let heard = ws.collect(created.len()).await;
    let tasks: Vec<Value> = events(&heard)
        .iter()
        .map(|e| e["task"]["id"].clone())
        .collect();
    assert_eq!(tasks, created, "replayed and live, each once, in order");
    let seqs: Vec<i64> = events(&heard)
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();

    // Resuming after the third event gives the rest.
    let mut again = app
        .subscribed(&bob, ASSIGNED, json!({ "after": seqs[2] }))
        .await;
    let rest = again.collect(seqs.len() - 3).await;
    let rest: Vec<i64> = events(&rest)
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(rest, seqs[3..]);
}

async fn sockets_keep_the_protocol_rules(app: TestApp) {
    let bob = app.user("worker", "bob").await;

    // No token, a bad token: 4403.
    let mut ws = app.ws("graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": {} }))
        .await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(4403));
    let mut ws = app.ws("graphql-transport-ws").await;
    ws.send(
        json!({ "type": "connection_init", "payload": { "Authorization": "Bearer nonsense" } }),
    )
    .await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(4403));

    // Subscribing before connection_init: 4401.
    let mut ws = app.ws("graphql-transport-ws").await;
    ws.subscribe("1", ASSIGNED, json!({})).await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(4401));

    // The same id twice: 4409.
    let mut ws = app.subscribed(&bob, ASSIGNED, json!({})).await;
    ws.subscribe("1", ASSIGNED, json!({})).await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(4409));

    // Ping, pong.
    let mut ws = app.ws("graphql-transport-ws").await;
    ws.init(&bob.token).await;
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.message().await["type"], "pong");

    // At most 20 subscriptions on a socket; the 21st is refused, the socket stays.
    for i in 0..21 {
        ws.subscribe(&format!("s{i}"), ASSIGNED, json!({})).await;
    }
    let refused = ws.message().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["id"], "s20");
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.message().await["type"], "pong");

    // A token that expires closes its socket when it does.
    let now = Utc::now().timestamp();
    let short = token(
        &json!({ "sub": bob.key, "name": "bob", "role": "worker", "iat": now, "exp": now + 2 }),
    );
    let mut ws = app.ws("graphql-transport-ws").await;
    ws.init(&short).await;
    ws.subscribe("1", ASSIGNED, json!({})).await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(4403));

    // The upgrade's own header is enough, and `/graphql` upgrades too.
    let mut ws = Ws::connect(
        &format!("ws://{}/graphql", app.addr),
        "graphql-transport-ws",
    )
    .await;
    ws.init(&bob.token).await;
}

async fn the_legacy_protocol_works_too(app: TestApp) {
    let manager = app.user("manager", "mark").await;
    let bob = app.user("worker", "bob").await;
    let mut ws = app.ws("graphql-ws").await;
    ws.init(&bob.token).await;
    ws.send(json!({ "type": "start", "id": "1", "payload": { "query": ASSIGNED } }))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let task = app.create_task(&manager, "Feed").await;
    let data = ws.message().await;
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(
        data["payload"]["data"]["taskAssigned"]["task"]["id"],
        task["id"]
    );
    ws.send(json!({ "type": "stop", "id": "1" })).await;
    ws.send(json!({ "type": "connection_terminate" })).await;
    assert!(matches!(
        ws.said(QUIET).await,
        Said::Closed(_) | Said::Silent
    ));
}

/// A subscriber that stops reading while a burst goes out is told where to resume once it
/// falls further behind than the feed keeps; resuming from there gives the rest, so nothing
/// is skipped silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_subscriber_that_falls_behind_is_told_where_to_resume() {
    a_subscriber_that_falls_behind_is_told_where_to_resume(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_subscriber_that_falls_behind_is_told_where_to_resume() {
    if let Some(database) = TestDatabase::postgres().await {
        a_subscriber_that_falls_behind_is_told_where_to_resume(database).await;
    }
}

async fn a_subscriber_that_falls_behind_is_told_where_to_resume(database: TestDatabase) {
    let app = TestApp::start_with(database, |c| c.limits.feed_capacity = 8).await;
    let manager = app.user("manager", "mark").await;
    let bob = app.user("worker", "bob").await;
    for i in 0..40 {
        app.create_task(&manager, &format!("Task {i}")).await;
    }
    let first = app.events_of("task.assigned").await.len();
    let mut ws = app.subscribed(&bob, ASSIGNED, json!({})).await;
    for _ in 0..3 {
        app.ok(
            &manager,
            "mutation { shuffleTasks { reassigned } }",
            json!({}),
        )
        .await;
    }
    let mut delivered = Vec::new();
    let resume_from = loop {
        let message = ws.message().await;
        assert_eq!(message["type"], "next", "{message}");
        if let Some(error) = message["payload"]["errors"].get(0) {
            assert_eq!(error["extensions"]["code"], "CONFLICT");
            let text = error["message"].as_str().unwrap();
            let after: i64 = text.rsplit("after: ").next().unwrap().parse().unwrap();
            break after;
        }
        delivered.push(
            message["payload"]["data"]["taskAssigned"]["seq"]
                .as_i64()
                .unwrap(),
        );
    };
    assert_eq!(ws.message().await["type"], "complete");
    if let Some(&last) = delivered.last() {
        assert_eq!(
            last, resume_from,
            "the resume point is the last event delivered"
        );
    }
    assert!(delivered.windows(2).all(|w| w[0] < w[1]));
    let mut again = app
        .subscribed(&bob, ASSIGNED, json!({ "after": resume_from }))
        .await;
    let total = app.events_of("task.assigned").await.len() - first;
    let rest = again.collect(total - delivered.len()).await;
    assert_eq!(
        delivered.len() + rest.len(),
        total,
        "every event once, across the two subscriptions"
    );
}

/// Two gateway processes on one PostgreSQL: a subscriber on B hears, within a second, of a
/// task created through A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_another_replica_hears_within_a_second() {
    let Some(database) = TestDatabase::postgres().await else {
        return;
    };
    let b = Gateway::start(&database);
    let a = TestApp::start_with(database, |_| {}).await;
    let manager = a.user("manager", "mark").await;
    let bob = a.user("worker", "bob").await;
    let mut ws = Ws::connect(&b.url.replace("http://", "ws://"), "graphql-transport-ws").await;
    ws.init(&bob.token).await;
    ws.subscribe(
        "1",
        "subscription { taskAssigned { seq task { id } } }",
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let task = a.create_task(&manager, "Across replicas").await;
    let started = std::time::Instant::now();
    let message = match ws.said(Duration::from_secs(1)).await {
        Said::Message(message) => message,
        other => panic!("nothing within a second: {other:?}"),
    };
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        message["payload"]["data"]["taskAssigned"]["task"]["id"],
        task["id"]
    );
    b.kill();
}

/// The `graphql-ws` client library itself (from npm) subscribes and hears an assignment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_ws_client_library_subscribes() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};

    let js = crate::helpers::js_dir();
    let app = TestApp::sqlite().await;
    let manager = app.user("manager", "mark").await;
    let bob = app.user("worker", "bob").await;
    let mut node = Command::new("node")
        .arg(js.join("subscribe.mjs"))
        .arg(format!("ws://{}/graphql/ws", app.addr))
        .arg(&bob.token)
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed");
    let mut lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let lines = tokio::task::spawn_blocking(move || {
        let connected = lines.next().expect("a line").expect("read");
        assert_eq!(connected, "connected");
        lines
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let task = app.create_task(&manager, "Seen by a browser").await;
    let (event, status) = tokio::task::spawn_blocking(move || {
        let mut lines = lines;
        let event = lines.next().expect("an event").expect("read");
        (event, node.wait().expect("node exits"))
    })
    .await
    .unwrap();
    assert!(status.success(), "node failed: {event}");
    let event: Value = serde_json::from_str(&event).expect("JSON");
    let heard = &event["data"]["taskAssigned"];
    assert_eq!(heard["task"]["id"], task["id"]);
    assert_eq!(heard["assignee"]["id"], bob.id.as_str());
    assert!(heard["fee"].as_i64().is_some());
}

/// A socket that never sends `connection_init` is closed with 4408 after the configured time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_initialises_is_closed() {
    let app = TestApp::start_with(TestDatabase::sqlite(), |c| {
        c.limits.ws_init_timeout_secs = 1
    })
    .await;
    let mut ws = app.ws("graphql-transport-ws").await;
    let started = std::time::Instant::now();
    assert_eq!(ws.close_code(Duration::from_secs(3)).await, Some(4408));
    assert!(started.elapsed() >= Duration::from_millis(900));
}
