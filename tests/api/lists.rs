//! Lists as a front-end pages them: every connection pages both ways (`first`/`after` and
//! `last`/`before`, with `pageInfo` true to the data), counts its whole list when asked
//! (`totalCount`), and `tasks(search:)` finds tasks by a piece of their title or tracker key.

use serde_json::json;

use crate::helpers::{TestApp, User, settled};
use crate::on_both_backends;

on_both_backends!(
    every_connection_pages_both_ways,
    every_connection_counts_its_whole_list,
    tasks_are_found_by_a_piece_of_title_or_tracker_key,
);

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(app.db.pool())
        .await
        .expect("count")
}

async fn every_connection_counts_its_whole_list(app: TestApp) {
    let admin = app.user("admin", "ada").await;
    let manager = app.user("manager", "mark").await;
    let workers = [
        app.user("worker", "bob").await,
        app.user("worker", "eve").await,
        app.user("worker", "kim").await,
    ];
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(app.create_task(&manager, &format!("Task {i}")).await);
    }
    // Each worker completes the first of its tasks.
    for worker in &workers {
        let mine = app
            .ok(
                worker,
                "{ myTasks(first: 1) { edges { node { id } } } }",
                json!({}),
            )
            .await;
        if let Some(id) = mine["myTasks"]["edges"][0]["node"]["id"].as_str() {
            app.ok(
                worker,
                "mutation($id: ID!) { completeTask(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        }
    }
    settled(&app.db).await;
    let bob = &workers[0];

    let data = app
        .ok(
            &admin,
            "query($bob: ID) {
               all: tasks(first: 2) { totalCount edges { cursor } pageInfo { hasNextPage } }
               open: tasks(status: OPEN, first: 1) { totalCount }
               bobs: tasks(assigneeId: $bob, first: 1) { totalCount }
               workers: popugs(role: WORKER, first: 1) { totalCount }
               everyone: popugs(first: 1) { totalCount }
               log: auditLog(first: 1) { totalCount }
               bobsLog: auditLog(filter: { popugId: $bob }, first: 1) { totalCount }
               fees: auditLog(filter: { kinds: [TASK_ASSIGNED] }, first: 1) { totalCount }
               payouts(first: 1) { totalCount }
               mailbox(first: 1) { totalCount }
             }",
            json!({ "bob": bob.id }),
        )
        .await;
    let total = |name: &str| data[name]["totalCount"].as_i64().expect(name);
    assert_eq!(total("all"), 25);
    assert_eq!(data["all"]["edges"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        total("open"),
        count(&app, "SELECT COUNT(*) FROM tasks WHERE status = 'OPEN'").await
    );
    assert!(total("open") < 25, "some were completed");
    let bobs_tasks = format!(
        "SELECT COUNT(*) FROM tasks WHERE assignee_id = '{}'",
        bob.key
    );
    assert_eq!(total("bobs"), count(&app, &bobs_tasks).await);
    assert_eq!(total("workers"), 3);
    assert_eq!(total("everyone"), 5);
    assert_eq!(
        total("log"),
        count(&app, "SELECT COUNT(*) FROM audit_log").await
    );
    let bobs_log = format!(
        "SELECT COUNT(*) FROM audit_log WHERE popug_id = '{}'",
        bob.key
    );
    assert_eq!(total("bobsLog"), count(&app, &bobs_log).await);
    assert_eq!(total("fees"), 25, "one fee per assignment");
    assert_eq!((total("payouts"), total("mailbox")), (0, 0));

    // A worker's own lists count what the worker may see.
    let own = app
        .ok(
            bob,
            "{ auditLog(first: 1) { totalCount } myTasks(first: 1) { totalCount }
               account { log(first: 1) { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        own["auditLog"]["totalCount"].as_i64(),
        Some(count(&app, &bobs_log).await)
    );
    assert_eq!(
        own["myTasks"]["totalCount"].as_i64(),
        Some(count(&app, &bobs_tasks).await)
    );
    assert_eq!(
        own["account"]["log"]["totalCount"].as_i64(),
        Some(count(&app, &bobs_log).await),
        "today's log is all of it here"
    );
}

/// The titles and tracker keys of the tasks `search` finds, sorted, with their total.
async fn found(app: &TestApp, token: &str, search: &str) -> (Vec<String>, i64) {
    let body = app
        .gql(
            Some(token),
            "query($s: String) { tasks(search: $s, first: 100) { totalCount edges { node { title jiraId } } } }",
            json!({ "s": search }),
        )
        .await;
    assert!(body.get("errors").is_none(), "{search}: {body}");
    let mut titles: Vec<String> = body["data"]["tasks"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| {
            let node = &edge["node"];
            match node["jiraId"].as_str() {
                Some(key) => format!("{} [{key}]", node["title"].as_str().unwrap_or_default()),
                None => node["title"].as_str().unwrap_or_default().to_owned(),
            }
        })
        .collect();
    titles.sort();
    let total = body["data"]["tasks"]["totalCount"]
        .as_i64()
        .expect("a total");
    (titles, total)
}

async fn tasks_are_found_by_a_piece_of_title_or_tracker_key(app: TestApp) {
    let manager = app.user("manager", "mark").await;
    app.user("worker", "bob").await;
    for (title, key) in [
        ("Feed the parrots", Some("UBERPOP-42")),
        ("PARROT show rehearsal", None),
        ("Clean the cage", Some("UBERPOP-7")),
        ("Count 100% of the seeds", None),
        ("Sweep_the_floor", Some("CAGE-1")),
    ] {
        let created = app
            .ok(
                &manager,
                "mutation($t: String!, $k: String) { createTask(input: { title: $t, jiraId: $k }) { id } }",
                json!({ "t": title, "k": key }),
            )
            .await;
        assert!(created["createTask"]["id"].is_string());
    }
    let token = manager.token.as_str();
    let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    // Any case, any position, in the title or the key.
    assert_eq!(
        found(&app, token, "parrot").await,
        (
            names(&["Feed the parrots [UBERPOP-42]", "PARROT show rehearsal"]),
            2
        )
    );
    assert_eq!(
        found(&app, token, "pop-4").await,
        (names(&["Feed the parrots [UBERPOP-42]"]), 1)
    );
    assert_eq!(
        found(&app, token, "cage").await,
        (
            names(&["Clean the cage [UBERPOP-7]", "Sweep_the_floor [CAGE-1]"]),
            2
        )
    );
    // Shorter than a trigram: still found, in the rows themselves.
    assert_eq!(
        found(&app, token, "ro").await,
        (
            names(&["Feed the parrots [UBERPOP-42]", "PARROT show rehearsal"]),
            2
        )
    );
    // `%` and `_` are themselves, not wildcards.
    assert_eq!(
        found(&app, token, "0%").await,
        (names(&["Count 100% of the seeds"]), 1)
    );
    assert_eq!(
        found(&app, token, "ed_the").await,
        (names(&[]), 0),
        "`_` matches only an underscore, not the space of \"Feed the\""
    );
    assert_eq!(
        found(&app, token, "p_the").await,
        (names(&["Sweep_the_floor [CAGE-1]"]), 1)
    );
    assert_eq!(found(&app, token, "\"quoted\"").await, (names(&[]), 0));
    assert_eq!(
        found(&app, token, "").await.1,
        5,
        "an empty search finds everything"
    );

    // With the other filters.
    let body = app
        .gql(
            Some(token),
            "{ tasks(search: \"parrot\", status: DONE) { totalCount edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["tasks"]["totalCount"], 0, "{body}");

    // A pattern too long to be a search.
    let code = app
        .error_code(
            Some(token),
            "query($s: String) { tasks(search: $s) { edges { node { id } } } }",
            json!({ "s": "x".repeat(101) }),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    let (_, total) = found(&app, token, &"x".repeat(100)).await;
    assert_eq!(total, 0, "100 characters is still a search");
}

/// One page of `field`: its cursors and its `pageInfo`.
async fn page_of(
    app: &TestApp,
    user: &User,
    field: &str,
    paging: serde_json::Value,
) -> (Vec<String>, serde_json::Value) {
    let query = format!(
        "query($first: Int, $after: String, $last: Int, $before: String) {{ list: {field} \
         first: $first, after: $after, last: $last, before: $before) {{ edges {{ cursor }} \
         pageInfo {{ hasPreviousPage hasNextPage startCursor endCursor }} }} }}"
    );
    let data = app.ok(user, &query, paging).await;
    let cursors = data["list"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["cursor"].as_str().expect("a cursor").to_owned())
        .collect();
    (cursors, data["list"]["pageInfo"].clone())
}

/// Walks the whole of `field` forward, then backward, `size` at a time: both ways see the same
/// items in the same order, and each page says truly whether the list goes on either side.
async fn walk_both_ways(app: &TestApp, user: &User, field: &str, size: usize) -> usize {
    let (everything, _) = page_of(app, user, field, json!({ "first": 100 })).await;
    assert!(everything.len() > size, "{field}: too short a list to page");
    let mut forward = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (cursors, info) =
            page_of(app, user, field, json!({ "first": size, "after": after })).await;
        let start = forward.len();
        forward.extend(cursors.iter().cloned());
        assert_eq!(
            info["hasPreviousPage"],
            start > 0,
            "{field} forward: {info}"
        );
        assert_eq!(
            info["hasNextPage"],
            forward.len() < everything.len(),
            "{field} forward: {info}"
        );
        assert_eq!(
            info["startCursor"].as_str(),
            cursors.first().map(String::as_str),
            "{field}"
        );
        assert_eq!(
            info["endCursor"].as_str(),
            cursors.last().map(String::as_str),
            "{field}"
        );
        if info["hasNextPage"] != true {
            break;
        }
        after = info["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(forward, everything, "{field}: forward");
    let mut backward: Vec<String> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let (cursors, info) =
            page_of(app, user, field, json!({ "last": size, "before": before })).await;
        let mut page = cursors.clone();
        page.extend(backward);
        backward = page;
        assert_eq!(
            info["hasNextPage"],
            before.is_some(),
            "{field} backward: {info}"
        );
        assert_eq!(
            info["hasPreviousPage"],
            backward.len() < everything.len(),
            "{field} backward: {info}"
        );
        assert_eq!(
            info["startCursor"].as_str(),
            cursors.first().map(String::as_str),
            "{field}"
        );
        if info["hasPreviousPage"] != true {
            break;
        }
        before = info["startCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(backward, everything, "{field}: backward");
    everything.len()
}

async fn every_connection_pages_both_ways(app: TestApp) {
    let admin = app.user("admin", "ada").await;
    let manager = app.user("manager", "mark").await;
    for i in 0..4 {
        app.user("worker", &format!("worker-{i}")).await;
    }
    for i in 0..11 {
        app.create_task(&manager, &format!("Task {i}")).await;
    }
    settled(&app.db).await;
    assert_eq!(walk_both_ways(&app, &admin, "tasks(", 3).await, 11);
    assert_eq!(
        walk_both_ways(&app, &admin, "tasks(status: OPEN, ", 4).await,
        11
    );
    assert_eq!(walk_both_ways(&app, &admin, "popugs(", 2).await, 6);
    let entries = walk_both_ways(&app, &admin, "auditLog(", 5).await;
    assert_eq!(
        walk_both_ways(&app, &admin, "auditLog(filter: { oldestFirst: true }, ", 5).await,
        entries
    );
    assert!(entries >= 22, "a TASK_CREATED and a TASK_ASSIGNED per task");

    // One way at a time.
    for paging in [
        json!({ "first": 2, "last": 2 }),
        json!({ "first": 2, "before": "x" }),
        json!({ "last": 2, "after": "x" }),
    ] {
        let code = app
            .error_code(
                Some(&admin.token),
                "query($first: Int, $after: String, $last: Int, $before: String) { \
                 tasks(first: $first, after: $after, last: $last, before: $before) { edges { cursor } } }",
                paging.clone(),
            )
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{paging}");
    }
}
