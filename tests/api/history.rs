//! `Task.history`: every assignment of a task, oldest first, then its completion, read from
//! the ledger, with money shown by the rule of money.

use serde_json::{Value, json};

use crate::helpers::{TestApp, settled};
use crate::on_both_backends;

on_both_backends!(
    a_task_tells_who_held_it_and_what_each_move_cost,
    a_history_shows_its_last_moves_and_is_priced_by_them
);

const HISTORY: &str = "query($id: ID!) { task(id: $id) { assignFee reward \
    history { move cause fee reward loggedAt assignee { id } previousAssignee { id } } } }";

async fn a_task_tells_who_held_it_and_what_each_move_cost(app: TestApp) {
    let manager = app.user("manager", "mark").await;
    let accountant = app.user("accountant", "ann").await;
    let workers = [
        app.user("worker", "bob").await,
        app.user("worker", "eve").await,
    ];
    let task = app.create_task(&manager, "Feed the parrots").await;
    let id = task["id"].as_str().expect("an id").to_owned();
    for _ in 0..2 {
        app.ok(
            &manager,
            "mutation { shuffleTasks { reassigned } }",
            json!({}),
        )
        .await;
    }
    settled(&app.db).await;
    let holder = app
        .ok(
            &manager,
            "query($id: ID!) { task(id: $id) { assignee { id } } }",
            json!({ "id": id }),
        )
        .await;
    let holder_id = holder["task"]["assignee"]["id"]
        .as_str()
        .expect("an assignee")
        .to_owned();
    // Accountants are drawn too: any of the three may hold it.
    let completer = workers
        .iter()
        .chain([&accountant])
        .find(|w| w.id == holder_id)
        .expect("an assignable popug holds it");
    app.ok(
        completer,
        "mutation($id: ID!) { completeTask(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    settled(&app.db).await;

    // A bookkeeper sees every move and its money.
    let seen = app.ok(&accountant, HISTORY, json!({ "id": id })).await;
    let task = &seen["task"];
    let history = task["history"].as_array().expect("a history");
    let moves: Vec<(&str, &Value)> = history
        .iter()
        .map(|m| (m["move"].as_str().unwrap_or_default(), &m["cause"]))
        .collect();
    assert_eq!(
        moves,
        [
            ("ASSIGNED", &json!("CREATION")),
            ("ASSIGNED", &json!("SHUFFLE")),
            ("ASSIGNED", &json!("SHUFFLE")),
            ("COMPLETED", &Value::Null),
        ],
        "{seen}"
    );
    for (i, step) in history.iter().take(3).enumerate() {
        assert_eq!(
            step["fee"], task["assignFee"],
            "every draw costs the fee: {seen}"
        );
        assert!(step["reward"].is_null());
        let previous = if i == 0 {
            Value::Null
        } else {
            history[i - 1]["assignee"]["id"].clone()
        };
        assert_eq!(step["previousAssignee"]["id"], previous, "{seen}");
    }
    let done = &history[3];
    assert_eq!(done["reward"], task["reward"]);
    assert!(done["fee"].is_null());
    assert_eq!(done["assignee"]["id"], completer.id.as_str());
    assert_eq!(
        history[2]["assignee"]["id"],
        completer.id.as_str(),
        "the last holder completed it"
    );

    // A worker sees the moves, and the money of its own moves; the task's holder sees all of
    // it, as it sees the task's prices.
    for worker in &workers {
        let seen = app.ok(worker, HISTORY, json!({ "id": id })).await;
        let holds = worker.id == completer.id;
        for step in seen["task"]["history"].as_array().expect("a history") {
            let own = holds || step["assignee"]["id"] == worker.id.as_str();
            let money = if step["move"] == "ASSIGNED" {
                &step["fee"]
            } else {
                &step["reward"]
            };
            assert_eq!(!money.is_null(), own, "{}: {step}", worker.id);
        }
    }
}

/// However many shuffles a task went through, a history shows its last moves (10, or up to 50
/// asked for), still saying who held the task before the first of them; and the complexity
/// limit prices each move, so pages of long histories are refused before they run.
async fn a_history_shows_its_last_moves_and_is_priced_by_them(app: TestApp) {
    let manager = app.user("manager", "mark").await;
    app.user("worker", "bob").await;
    app.user("worker", "eve").await;
    let task = app.create_task(&manager, "Feed the parrots").await;
    for _ in 0..12 {
        app.ok(
            &manager,
            "mutation { shuffleTasks { reassigned } }",
            json!({}),
        )
        .await;
    }
    settled(&app.db).await;
    let moves = |last: &str| {
        format!(
            "query($id: ID!) {{ task(id: $id) {{ history{last} {{ cause assignee {{ id }} previousAssignee {{ id }} }} }} }}"
        )
    };
    let all = app
        .ok(&manager, &moves("(last: 50)"), json!({ "id": task["id"] }))
        .await;
    let all = all["task"]["history"].as_array().unwrap().clone();
    assert_eq!(all.len(), 13, "the creation and twelve shuffles");
    assert_eq!(all[0]["cause"], "CREATION");
    for last in ["", "(last: 10)"] {
        let shown = app
            .ok(&manager, &moves(last), json!({ "id": task["id"] }))
            .await;
        let shown = shown["task"]["history"].as_array().unwrap();
        assert_eq!(shown.len(), 10);
        assert_eq!(shown[..], all[3..], "the last ten, oldest first");
        assert_eq!(shown[0]["cause"], "SHUFFLE");
        assert_eq!(shown[0]["previousAssignee"], all[2]["assignee"]);
    }
    for last in [0, 51, -1] {
        let code = app
            .error_code(
                Some(&manager.token),
                &moves(&format!("(last: {last})")),
                json!({ "id": task["id"] }),
            )
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "last: {last}");
    }

    // The document that held every connection: four pages of 100 tasks with their whole
    // histories. Each move is priced now, and it is refused before it runs.
    let page = "tasks(first: 100) { nodes { history { move fee reward loggedAt \
                assignee { name email } previousAssignee { name } } } }";
    let heavy = format!("{{ a: {page} b: {page} c: {page} d: {page} }}");
    let refused = app.gql(Some(&manager.token), &heavy, json!({})).await;
    assert!(refused["data"].is_null(), "{refused}");
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("complex"), "{refused}");
}
