use std::collections::HashMap;

use accounting_domain::Ledger;
use ates_events::outbox;
use futures::future::join_all;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::helpers::{TestApp, User, assert_ledger_invariants, settled};
use crate::on_both_backends;

on_both_backends!(
    prices_are_drawn_once_within_their_ranges,
    money_moves_on_assignment_and_completion,
    accounts_and_logs_are_private,
    audit_log_filters_and_pages,
    ledger_is_append_only,
    redelivered_and_reordered_events_change_nothing,
    invariants_hold_under_concurrent_load,
    a_stuck_consumer_holds_back_no_mutations_money,
);

const COMPLETE: &str = "mutation($id: ID!) { completeTask(id: $id) { id reward } }";
const ACCOUNT: &str = "query($id: ID) { account(popugId: $id) { balance popug { id } \
                       log { edges { node { kind amount balanceAfter taskId popugId task { id } } } } } }";

async fn prices_are_drawn_once_within_their_ranges(app: TestApp) {
    // An admin: prices show to a task's holder and to bookkeepers only.
    let manager = app.user("admin", "ada").await;
    for name in ["bob", "carl"] {
        app.user("worker", name).await;
    }
    let list = "{ tasks(first: 100) { edges { node { id assignFee reward } } } }";
    let mut created = HashMap::new();
    for i in 0..20 {
        let data = app
            .ok(
                &manager,
                "mutation($t: String!) { createTask(input: {title: $t}) { id assignFee reward } }",
                json!({ "t": format!("Task {i}") }),
            )
            .await;
        let task = &data["createTask"];
        let (fee, reward) = (
            task["assignFee"].as_i64().unwrap(),
            task["reward"].as_i64().unwrap(),
        );
        assert!(
            (10..=20).contains(&fee) && (20..=40).contains(&reward),
            "{task}"
        );
        created.insert(task["id"].clone(), (fee, reward));
    }
    app.ok(&manager, "mutation { shuffleTasks { moved } }", json!({}))
        .await;
    let listed = app.ok(&manager, list, json!({})).await;
    for edge in listed["tasks"]["edges"].as_array().unwrap() {
        let node = &edge["node"];
        let prices = (
            node["assignFee"].as_i64().unwrap(),
            node["reward"].as_i64().unwrap(),
        );
        assert_eq!(created[&node["id"]], prices, "prices changed");
    }
    let distinct: std::collections::HashSet<_> = created.values().collect();
    assert!(distinct.len() > 1, "prices are drawn, not fixed");
}

async fn money_moves_on_assignment_and_completion(app: TestApp) {
    let admin = app.user("admin", "alice").await;
    let bob = app.user("worker", "bob").await;
    let data = app
        .ok(
            &admin,
            "mutation { createTask(input: {title: \"Feed\"}) { id assignFee reward } }",
            json!({}),
        )
        .await;
    let task = &data["createTask"];
    let (fee, reward) = (
        task["assignFee"].as_i64().unwrap(),
        task["reward"].as_i64().unwrap(),
    );

    let account = app.ok(&bob, ACCOUNT, json!({})).await;
    assert_eq!(
        account["account"]["balance"], -fee,
        "a balance may go negative"
    );
    let log = &account["account"]["log"]["edges"];
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["node"]["kind"], "TASK_ASSIGNED");
    assert_eq!(log[0]["node"]["amount"], -fee);
    assert_eq!(log[0]["node"]["balanceAfter"], -fee);
    assert_eq!(log[0]["node"]["task"]["id"], task["id"]);

    app.ok(&bob, COMPLETE, json!({ "id": task["id"] })).await;
    let account = app.ok(&bob, ACCOUNT, json!({})).await;
    assert_eq!(account["account"]["balance"], reward - fee);
    let log = &account["account"]["log"]["edges"];
    assert_eq!(log[1]["node"]["kind"], "TASK_COMPLETED");
    assert_eq!(log[1]["node"]["amount"], reward);
    assert_eq!(log[1]["node"]["balanceAfter"], reward - fee);

    // The creation is logged on the creator's side, with no money.
    let admin_log = app.ok(&admin, ACCOUNT, json!({})).await;
    assert_eq!(admin_log["account"]["balance"], 0);
    assert_eq!(
        admin_log["account"]["log"]["edges"][0]["node"]["kind"],
        "TASK_CREATED"
    );
    assert_eq!(admin_log["account"]["log"]["edges"][0]["node"]["amount"], 0);

    // A day with nothing in it.
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let old = app
        .ok(
            &bob,
            "query($d: Date) { account { log(day: $d) { edges { node { seq } } } } }",
            json!({ "d": yesterday }),
        )
        .await;
    assert_eq!(old["account"]["log"]["edges"], json!([]));
    assert_ledger_invariants(&app.db).await;
}

async fn accounts_and_logs_are_private(app: TestApp) {
    let admin = app.user("admin", "alice").await;
    let manager = app.user("manager", "mark").await;
    let accountant = app.user("accountant", "anna").await;
    let bob = app.user("worker", "bob").await;
    let carl = app.user("worker", "carl").await;
    for i in 0..6 {
        app.create_task(&manager, &format!("Task {i}")).await;
    }
    for reader in [&admin, &accountant] {
        let seen = app.ok(reader, ACCOUNT, json!({ "id": bob.id })).await;
        assert_eq!(seen["account"]["popug"]["id"], bob.id.as_str());
    }
    for (reader, target) in [(&bob, &carl), (&manager, &bob)] {
        let code = app
            .error_code(Some(&reader.token), ACCOUNT, json!({ "id": target.id }))
            .await;
        assert_eq!(code, "FORBIDDEN");
    }
    let code = app
        .error_code(Some(&admin.token), ACCOUNT, json!({ "id": "nobody" }))
        .await;
    assert_eq!(code, "NOT_FOUND");

    let log = "query($f: AuditLogFilter) { auditLog(filter: $f, first: 100) { edges { node { popugId } } } }";
    let own = app.ok(&bob, log, json!({})).await;
    for edge in own["auditLog"]["edges"].as_array().unwrap() {
        assert_eq!(edge["node"]["popugId"], bob.id.as_str());
    }
    let code = app
        .error_code(
            Some(&bob.token),
            log,
            json!({ "f": { "popugId": carl.id } }),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");
    let everyone = app.ok(&accountant, log, json!({})).await;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(
        everyone["auditLog"]["edges"].as_array().unwrap().len() as i64,
        total
    );
    assert_eq!(
        app.error_code(None, log, json!({})).await,
        "UNAUTHENTICATED"
    );
}

async fn audit_log_filters_and_pages(app: TestApp) {
    let admin = app.user("admin", "alice").await;
    let bob = app.user("worker", "bob").await;
    let mut tasks = Vec::new();
    for i in 0..5 {
        tasks.push(app.create_task(&admin, &format!("Task {i}")).await);
    }
    app.ok(&bob, COMPLETE, json!({ "id": tasks[0]["id"] }))
        .await;
    let log = "query($f: AuditLogFilter, $after: String) { auditLog(filter: $f, first: 4, after: $after) { \
               edges { cursor node { seq kind taskId } } pageInfo { hasNextPage endCursor } } }";

    // Newest first, every entry once across pages.
    let mut seqs = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = app.ok(&admin, log, json!({ "after": after })).await;
        let page = &data["auditLog"];
        seqs.extend(
            page["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["seq"].as_i64().unwrap()),
        );
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seqs.len(), 11, "5 created, 5 assigned, 1 completed");
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );

    let oldest = app
        .ok(&admin, log, json!({ "f": { "oldestFirst": true } }))
        .await;
    assert_eq!(
        oldest["auditLog"]["edges"][0]["node"]["seq"]
            .as_i64()
            .unwrap(),
        *seqs.last().unwrap()
    );

    let one_task = app
        .ok(&admin, log, json!({ "f": { "taskId": tasks[0]["id"] } }))
        .await;
    let kinds: Vec<&str> = one_task["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["TASK_COMPLETED", "TASK_ASSIGNED", "TASK_CREATED"]);

    let completed = app
        .ok(
            &admin,
            log,
            json!({ "f": { "kinds": ["TASK_COMPLETED", "PAYOUT"] } }),
        )
        .await;
    assert_eq!(completed["auditLog"]["edges"].as_array().unwrap().len(), 1);

    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let none = app
        .ok(&admin, log, json!({ "f": { "from": future } }))
        .await;
    assert_eq!(none["auditLog"]["edges"], json!([]));
    let all = app
        .ok(
            &admin,
            log,
            json!({ "f": { "to": future, "popugId": bob.id } }),
        )
        .await;
    assert_eq!(all["auditLog"]["edges"].as_array().unwrap().len(), 4);

    let code = app
        .error_code(Some(&admin.token), log, json!({ "after": "not-a-cursor" }))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
}

async fn ledger_is_append_only(app: TestApp) {
    let admin = app.user("admin", "alice").await;
    app.user("worker", "bob").await;
    app.create_task(&admin, "Feed").await;
    settled(&app.db).await;
    for statement in [
        "UPDATE audit_log SET amount = 1000",
        "DELETE FROM audit_log",
        "UPDATE outbox SET payload = '{}'",
        "DELETE FROM outbox",
    ] {
        let refused = sqlx::query(statement).execute(app.db.pool()).await;
        assert!(refused.is_err(), "{statement} was allowed");
    }
    assert_ledger_invariants(&app.db).await;
}

/// Every event delivered twice, and the tasks' events interleaved in another order (each
/// task's own events stay in order): the ledger ends as it did with single delivery.
async fn redelivered_and_reordered_events_change_nothing(app: TestApp) {
    let manager = app.user("manager", "mark").await;
    let mut workers = Vec::new();
    for name in ["bob", "carl", "dora"] {
        workers.push(app.user("worker", name).await);
    }
    busy_day(&app, &manager, &workers, 25).await;
    settled(&app.db).await;

    // The same ledger again, on a second database fed the same events twice.
    let mut conn = app.db.pool().acquire().await.unwrap();
    let events = outbox::read_after(&mut conn, Default::default(), 100_000)
        .await
        .unwrap();
    drop(conn);
    let prices: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT task_id, assign_fee, reward FROM task_prices")
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    let replica = app.database.sibling().await;
    let replica_db = replica.connect().await;
    for (task, fee, reward) in &prices {
        sqlx::query("INSERT INTO task_prices (task_id, assign_fee, reward, priced_at) VALUES ($1, $2, $3, 0)")
            .bind(task.clone())
            .bind(*fee)
            .bind(*reward)
            .execute(replica_db.pool())
            .await
            .unwrap();
    }
    // Per task, its events in order; the tasks interleaved at random; each event twice.
    let mut per_task: HashMap<String, Vec<_>> = HashMap::new();
    for event in &events {
        per_task
            .entry(event.aggregate_id.clone())
            .or_default()
            .push(event.clone());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut queues: Vec<_> = per_task
        .into_values()
        .map(|q| q.into_iter().peekable())
        .collect();
    queues.shuffle(&mut rng);
    let ledger = Ledger::new(replica_db.clone());
    let mut applied = 0;
    while !queues.is_empty() {
        let i = rng.random_range(0..queues.len());
        let Some(event) = queues[i].next() else {
            drop(queues.swap_remove(i));
            continue;
        };
        applied += usize::from(ledger.handle(&event).await.unwrap());
        assert!(
            !ledger.handle(&event).await.unwrap(),
            "a redelivery applied again"
        );
    }
    assert_eq!(applied, events.len());

    let balances = |db: ates_db::Db| async move {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT popug_id, balance FROM accounts ORDER BY popug_id")
                .fetch_all(db.pool())
                .await
                .unwrap();
        rows
    };
    let entries = |db: ates_db::Db| async move {
        let mut rows: Vec<(String, String, i64, String)> =
            sqlx::query_as("SELECT event_id, kind, amount, popug_id FROM audit_log")
                .fetch_all(db.pool())
                .await
                .unwrap();
        rows.sort();
        rows
    };
    assert_eq!(
        balances(replica_db.clone()).await,
        balances(app.db.clone()).await
    );
    assert_eq!(
        entries(replica_db.clone()).await,
        entries(app.db.clone()).await
    );

    // And redelivering the original's events changes nothing there either.
    let before = balances(app.db.clone()).await;
    let original = Ledger::new(app.db.clone());
    for event in &events {
        assert!(!original.handle(event).await.unwrap());
    }
    assert_eq!(balances(app.db.clone()).await, before);
    assert_ledger_invariants(&app.db).await;
}

/// Creates `n` tasks, completes about half, shuffles twice on the way.
async fn busy_day(app: &TestApp, manager: &User, workers: &[User], n: usize) {
    for i in 0..n {
        let task = app.create_task(manager, &format!("Task {i}")).await;
        if i % 2 == 0 {
            let holder = workers
                .iter()
                .find(|w| task["assignee"]["id"] == w.id.as_str())
                .unwrap();
            app.ok(holder, COMPLETE, json!({ "id": task["id"] })).await;
        }
        if i % 10 == 5 {
            app.ok(manager, "mutation { shuffleTasks { moved } }", json!({}))
                .await;
        }
    }
}

/// 2,000 mixed operations from 32 concurrent clients over HTTP: no internal error, and every
/// rule of the money holds afterwards.
async fn invariants_hold_under_concurrent_load(app: TestApp) {
    const CLIENTS: usize = 32;
    const OPERATIONS: usize = 2_000;
    let manager = app.user("manager", "mark").await;
    let mut clients = vec![manager.clone()];
    for i in 1..CLIENTS {
        clients.push(
            app.user(
                if i % 8 == 0 { "accountant" } else { "worker" },
                &format!("popug{i}"),
            )
            .await,
        );
    }
    let runs = clients.iter().enumerate().map(|(i, client)| {
        let app = &app;
        async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
            let mut codes = Vec::new();
            for n in 0..OPERATIONS / CLIENTS {
                let roll = rng.random_range(0..100);
                let answer = if i == 0 && roll < 10 {
                    app.gql(
                        Some(&client.token),
                        "mutation { shuffleTasks { moved } }",
                        json!({}),
                    )
                    .await
                } else if roll < 45 {
                    app.gql(
                        Some(&client.token),
                        "mutation($t: String!) { createTask(input: {title: $t}) { id } }",
                        json!({ "t": format!("Task {i}-{n}") }),
                    )
                    .await
                } else if roll < 85 {
                    let mine = app
                        .gql(
                            Some(&client.token),
                            "{ myTasks(status: OPEN, first: 1) { edges { node { id } } } }",
                            json!({}),
                        )
                        .await;
                    match mine["data"]["myTasks"]["edges"][0]["node"]["id"].as_str() {
                        Some(id) => {
                            app.gql(Some(&client.token), COMPLETE, json!({ "id": id }))
                                .await
                        }
                        None => mine,
                    }
                } else {
                    app.gql(
                        Some(&client.token),
                        "{ account { balance } auditLog(first: 5) { edges { node { seq } } } }",
                        json!({}),
                    )
                    .await
                };
                if let Some(code) = answer["errors"][0]["extensions"]["code"].as_str() {
                    codes.push(code.to_owned());
                }
            }
            codes
        }
    });
    let codes: Vec<String> = join_all(runs).await.into_iter().flatten().collect();
    let unexpected: Vec<&String> = codes
        .iter()
        .filter(|c| *c != "FORBIDDEN" && *c != "CONFLICT")
        .collect();
    assert!(unexpected.is_empty(), "unexpected errors: {unexpected:?}");
    assert_ledger_invariants(&app.db).await;
    let tasks: i64 = sqlx::query("SELECT COUNT(*) FROM tasks")
        .fetch_one(app.db.pool())
        .await
        .unwrap()
        .get(0);
    assert!(tasks > 500, "the load created {tasks} tasks");
}

/// The consumer stuck at an event it cannot read (a newer version, from a producer deployed
/// before us) holds back no mutation's money: each posts its own events, and answers with its
/// fee and reward, which the balance then shows.
async fn a_stuck_consumer_holds_back_no_mutations_money(app: TestApp) {
    // An admin, who sees the prices of the task it creates for bob.
    let manager = app.user("admin", "ada").await;
    let bob = app.user("worker", "bob").await;
    sqlx::query(
        "INSERT INTO outbox (id, event_type, version, aggregate_id, payload, occurred_at) \
         VALUES ($1, 'task.created', 99, 'from-the-future', '{}', 0)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .execute(app.db.pool())
    .await
    .unwrap();
    let created = app
        .ok(
            &manager,
            "mutation { createTask(input: {title: \"Despite the jam\"}) { id assignFee assignee { id } } }",
            json!({}),
        )
        .await;
    let task = &created["createTask"];
    assert_eq!(task["assignee"]["id"], bob.id.as_str());
    let fee = task["assignFee"].as_i64().expect("the fee, not null");
    let done = app.ok(&bob, COMPLETE, json!({ "id": task["id"] })).await;
    let reward = done["completeTask"]["reward"]
        .as_i64()
        .expect("the reward, not null");
    let account = app.ok(&bob, ACCOUNT, json!({})).await;
    assert_eq!(account["account"]["balance"], reward - fee);
    let waiting = outbox::backlog(&app.db, "accounting")
        .await
        .unwrap()
        .waiting;
    assert!(
        waiting >= 3,
        "the consumer is still stuck before the broken event"
    );
}
