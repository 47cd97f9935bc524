//! The gateway killed with SIGKILL in the middle of a burst, then started again: every event
//! committed before the kill is handled once, none twice.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{Gateway, TestDatabase, User, assert_ledger_invariants, domain_popugs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_crash_mid_burst_loses_nothing() {
    crash_mid_burst_loses_nothing(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_mid_burst_loses_nothing() {
    if let Some(database) = TestDatabase::postgres().await {
        crash_mid_burst_loses_nothing(database).await;
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Option<Value> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

async fn crash_mid_burst_loses_nothing(database: TestDatabase) {
    let client = reqwest::Client::new();
    let manager = User::new("manager", "mark");
    let workers: Vec<User> = (0..4)
        .map(|i| User::new("worker", &format!("w{i}")))
        .collect();

    let gateway = Gateway::start(&database);
    for user in workers.iter().chain([&manager]) {
        post(
            &client,
            &gateway.url,
            &user.token,
            "{ me { id } }",
            json!({}),
        )
        .await
        .expect("me");
    }
    // A burst of creations, completions and shuffles, cut short by the kill.
    let burst = (0..1000).map(|i| {
        let (client, url) = (&client, gateway.url.clone());
        let (manager, workers) = (&manager, &workers);
        async move {
            let created = post(
                client,
                &url,
                &manager.token,
                "mutation($t: String!) { createTask(input: {title: $t}) { id assignee { id } } }",
                json!({ "t": format!("Task {i}") }),
            )
            .await?;
            let task = &created["data"]["createTask"];
            if i % 3 == 0 {
                let holder = workers
                    .iter()
                    .find(|w| task["assignee"]["id"] == w.id.as_str())?;
                post(
                    client,
                    &url,
                    &holder.token,
                    "mutation($id: ID!) { completeTask(id: $id) { id } }",
                    json!({ "id": task["id"] }),
                )
                .await?;
            }
            if i % 25 == 0 {
                post(
                    client,
                    &url,
                    &manager.token,
                    "mutation { shuffleTasks { moved } }",
                    json!({}),
                )
                .await?;
            }
            Some(())
        }
    });
    let kill_after = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
    };
    tokio::select! {
        _ = join_all(burst) => panic!("the burst finished before the kill: make it longer"),
        () = kill_after => {}
    }
    gateway.kill();

    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(database.connect().await.pool())
        .await
        .unwrap();
    assert!(events > 0, "nothing was committed before the kill");

    // Started again, it handles what the killed one left, once.
    let gateway = Gateway::start(&database);
    assert_ledger_invariants(&database.connect().await).await;
    gateway.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_crash_while_applying_a_large_backlog_loses_nothing() {
    crash_while_applying_a_large_backlog(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_while_applying_a_large_backlog_loses_nothing() {
    if let Some(database) = TestDatabase::postgres().await {
        crash_while_applying_a_large_backlog(database).await;
    }
}

/// Thousands of events written while no gateway ran (a large shuffle among them), then a
/// gateway that applies them in batches, killed half-way through: the next one finishes the
/// work, and every event is in the ledger once.
async fn crash_while_applying_a_large_backlog(database: TestDatabase) {
    use task_domain::{NewTask, Popugs, Tracker};

    let db = database.connect().await;
    let popugs = Popugs::new(db.clone());
    let tracker = Tracker::new(db.clone(), task_domain::Popugs::new(db.clone()));
    let mut workers = domain_popugs(
        &popugs,
        &["manager", "worker", "worker", "worker", "worker"],
    )
    .await;
    let manager = workers.remove(0);
    for i in 0..800 {
        let new = NewTask {
            title: format!("Task {i}"),
            jira_id: None,
            description: String::new(),
        };
        tracker.create(&manager, new).await.unwrap();
    }
    for _ in 0..5 {
        tracker.shuffle(&manager).await.unwrap();
    }
    let mut conn = db.pool().acquire().await.unwrap();
    let end = ates_events::outbox::last(&mut conn).await.unwrap();
    drop(conn);

    // Small batches, so that the kill falls between many commits and inside one.
    let gateway = Gateway::start_with(&database, &[("ATES_LEDGER_BATCH", "100")]);
    let offset = || async {
        ates_events::outbox::offset(db.pool(), "accounting")
            .await
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while offset().await == Default::default() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never applied a batch"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    gateway.kill();
    let at_kill = offset().await;
    assert!(
        at_kill < end,
        "the backlog was applied whole before the kill: make it larger"
    );

    let gateway = Gateway::start(&database);
    assert_ledger_invariants(&db).await;
    let assigned: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE kind = 'TASK_ASSIGNED'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        assigned,
        800 * 6,
        "one fee per assignment: creation and five shuffles"
    );
    gateway.kill();
}
