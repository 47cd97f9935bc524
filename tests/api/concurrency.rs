use std::collections::HashMap;

use futures::future::join_all;
use serde_json::json;

use crate::helpers::TestApp;
use crate::on_both_backends;

on_both_backends!(
    one_of_fifty_concurrent_completions_wins,
    shuffles_racing_completions_never_move_done_tasks
);

const COMPLETE: &str = "mutation($id: ID!) { completeTask(id: $id) { id } }";

async fn one_of_fifty_concurrent_completions_wins(app: TestApp) {
    let admin = app.user("admin", "alice").await;
    let worker = app.user("worker", "bob").await;
    let task = app.create_task(&admin, "Race for it").await;

    let calls =
        (0..50).map(|_| app.gql(Some(&worker.token), COMPLETE, json!({ "id": task["id"] })));
    let answers = join_all(calls).await;
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for answer in &answers {
        let outcome = match answer["errors"][0]["extensions"]["code"].as_str() {
            Some(code) => code.to_owned(),
            None => "ok".to_owned(),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    assert_eq!(
        outcomes,
        HashMap::from([("ok".to_owned(), 1), ("CONFLICT".to_owned(), 49)])
    );
    assert_eq!(app.events_of("task.completed").await.len(), 1);
}

/// Completions and shuffles run at once; afterwards every completed task is held by its
/// completer, and no assignment of it follows its completion in the outbox.
async fn shuffles_racing_completions_never_move_done_tasks(app: TestApp) {
    let manager = app.user("manager", "mark").await;
    let mut workers = Vec::new();
    for name in ["bob", "carl", "dora"] {
        workers.push(app.user("worker", name).await);
    }
    let mut tasks = Vec::new();
    for i in 0..30 {
        tasks.push(app.create_task(&manager, &format!("Task {i}")).await);
    }
    // Each worker tries to complete every task it holds now; a shuffle may take some away first.
    let completions = tasks.iter().map(|task| {
        let holder = workers
            .iter()
            .find(|w| task["assignee"]["id"] == w.id.as_str())
            .unwrap();
        app.gql(Some(&holder.token), COMPLETE, json!({ "id": task["id"] }))
    });
    let shuffles = (0..5).map(|_| {
        app.gql(
            Some(&manager.token),
            "mutation { shuffleTasks { moved } }",
            json!({}),
        )
    });
    let (completed, shuffled) = tokio::join!(join_all(completions), join_all(shuffles));
    for answer in completed.iter().chain(&shuffled) {
        if let Some(code) = answer["errors"][0]["extensions"]["code"].as_str() {
            assert_eq!(
                code, "FORBIDDEN",
                "only losing a task to a shuffle may fail: {answer}"
            );
        }
    }

    let events = app.events().await;
    let mut completed_at: HashMap<String, (usize, String)> = HashMap::new();
    for (i, (kind, payload)) in events.iter().enumerate() {
        if kind == "task.completed" {
            completed_at.insert(
                payload["taskId"].as_str().unwrap().into(),
                (i, payload["completerId"].as_str().unwrap().into()),
            );
        }
    }
    assert!(!completed_at.is_empty(), "some completion won");
    use sqlx::Row as _;
    for row in sqlx::query("SELECT id, status, assignee_id FROM tasks")
        .fetch_all(app.db.pool())
        .await
        .unwrap()
    {
        let (id, status, assignee): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        match completed_at.get(&id) {
            Some((_, completer)) => {
                assert_eq!(status, "DONE");
                assert_eq!(&assignee, completer, "a completed task moved");
            }
            None => assert_eq!(status, "OPEN"),
        }
    }
    for (i, (kind, payload)) in events.iter().enumerate() {
        if kind != "task.assigned" {
            continue;
        }
        if let Some((done, _)) = completed_at.get(payload["taskId"].as_str().unwrap()) {
            assert!(
                i < *done,
                "an assignment of task {} after its completion",
                payload["taskId"]
            );
        }
    }
}
