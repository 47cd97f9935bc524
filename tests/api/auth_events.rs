//! Popug Data Updated over `POST /auth/events`: signed or with a service token, applied once,
//! in order, and a deleted popug deactivated everywhere.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::helpers::{EVENTS_SECRET, TestApp, User, global_id, token};
use crate::on_both_backends;

on_both_backends!(
    events_create_and_update_popugs_and_roles_take_effect_at_once,
    the_same_event_twice_or_an_older_one_changes_nothing,
    a_deleted_popug_is_deactivated_everywhere,
    bad_or_unauthenticated_events_are_refused_and_change_nothing
);

/// How a test authenticates to the endpoint.
pub enum Sender<'a> {
    Signed,
    SignedWith(&'a [u8]),
    Token(&'a str),
    Nobody,
}

/// A Popug Data Updated message, `seconds` after `base`.
pub fn message(
    event_type: &str,
    base: DateTime<Utc>,
    seconds: i64,
    popug: &str,
    data: Value,
) -> Value {
    let mut data = data;
    data["popugId"] = json!(popug);
    json!({
        "type": event_type,
        "version": 1,
        "id": uuid::Uuid::new_v4().to_string(),
        "occurredAt": (base + chrono::Duration::seconds(seconds)).to_rfc3339(),
        "data": data,
    })
}

impl TestApp {
    /// Posts raw bytes to `/auth/events`: the status and the JSON answer.
    pub async fn post_auth_event(&self, body: &[u8], sender: Sender<'_>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(self.url("/auth/events"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        request = match sender {
            Sender::Signed => request.header(
                "x-ates-signature",
                gateway::auth_events::sign(EVENTS_SECRET.as_bytes(), body),
            ),
            Sender::SignedWith(secret) => {
                request.header("x-ates-signature", gateway::auth_events::sign(secret, body))
            }
            Sender::Token(token) => request.bearer_auth(token),
            Sender::Nobody => request,
        };
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let body = response.json().await.expect("a JSON answer");
        (status, body)
    }

    /// Posts a signed event and expects it handled: its outcome.
    pub async fn auth_event(&self, event: &Value) -> String {
        let (status, body) = self
            .post_auth_event(event.to_string().as_bytes(), Sender::Signed)
            .await;
        assert_eq!(status, 200, "{body}");
        body["outcome"].as_str().expect("an outcome").to_owned()
    }

    /// `(name, email, role, active)` of a popug, read from the database.
    pub async fn popug_row(&self, id: &str) -> Option<(String, Option<String>, String, bool)> {
        sqlx::query("SELECT name, email, role, deactivated_at FROM popugs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .expect("read popugs")
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get::<Option<i64>, _>(3).is_none(),
                )
            })
    }
}

fn user_token(id: &str, role: &str, iat: i64) -> User {
    User::signed(
        id,
        token(&json!({
            "sub": id, "name": id, "role": role, "iat": iat, "exp": Utc::now().timestamp() + 3600,
        })),
    )
}

const SHUFFLE: &str = "mutation { shuffleTasks { moved } }";

async fn events_create_and_update_popugs_and_roles_take_effect_at_once(app: TestApp) {
    let now = Utc::now();
    let admin = app.user("admin", "alice").await;
    let mark = uuid::Uuid::new_v4().to_string();
    let created = message(
        "popug.created",
        now,
        1,
        &mark,
        json!({ "name": "Mark", "email": "mark@uberpopug.test", "role": "manager" }),
    );
    assert_eq!(app.auth_event(&created).await, "applied");
    assert_eq!(
        app.popug_row(&mark).await,
        Some((
            "Mark".into(),
            Some("mark@uberpopug.test".into()),
            "manager".into(),
            true
        ))
    );

    // His token, issued before the events, acts with the role the replica holds.
    let mark_user = user_token(&mark, "manager", now.timestamp() - 60);
    let me = app.ok(&mark_user, "{ me { name role } }", json!({})).await;
    assert_eq!(me["me"], json!({ "name": "Mark", "role": "MANAGER" }));
    app.ok(&mark_user, SHUFFLE, json!({})).await;
    // Nobody but admins and managers: a task cannot be created.
    let code = app
        .error_code(
            Some(&admin.token),
            "mutation { createTask(input: { title: \"t\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "CONFLICT");

    // Demoted: at once he may not shuffle, and he is the one tasks go to; his open socket,
    // authorised as a manager, is closed so he reconnects as what he is now.
    let mut socket = app
        .subscribed(
            &mark_user,
            "subscription { taskAssigned { task { id } } }",
            json!({}),
        )
        .await;
    let demoted = message(
        "popug.updated",
        now,
        2,
        &mark,
        json!({ "name": "Mark", "role": "worker" }),
    );
    assert_eq!(app.auth_event(&demoted).await, "applied");
    assert_eq!(socket.close_code(Duration::from_secs(5)).await, Some(4403));
    let code = app
        .error_code(Some(&mark_user.token), SHUFFLE, json!({}))
        .await;
    assert_eq!(code, "FORBIDDEN");
    let task = app.create_task(&admin, "for the demoted").await;
    assert_eq!(task["assignee"]["id"], global_id("Popug", &mark));
    let me = app.ok(&mark_user, "{ me { role email } }", json!({})).await;
    assert_eq!(
        me["me"],
        json!({ "role": "WORKER", "email": null }),
        "the e-mail left out of the event is cleared"
    );

    // An unknown role is an ordinary popug.
    let odd = message(
        "popug.updated",
        now,
        3,
        &mark,
        json!({ "name": "Mark", "role": "superuser" }),
    );
    assert_eq!(app.auth_event(&odd).await, "applied");
    assert_eq!(app.popug_row(&mark).await.unwrap().2, "worker");
}

async fn the_same_event_twice_or_an_older_one_changes_nothing(app: TestApp) {
    let now = Utc::now();
    let id = uuid::Uuid::new_v4().to_string();
    let named = |seconds: i64, name: &str| {
        message(
            "popug.updated",
            now,
            seconds,
            &id,
            json!({ "name": name, "role": "worker" }),
        )
    };
    let first = named(10, "Ann");
    assert_eq!(app.auth_event(&first).await, "applied");
    let before = app.snapshot().await;
    assert_eq!(app.auth_event(&first).await, "duplicate");
    assert_eq!(app.snapshot().await, before);

    assert_eq!(app.auth_event(&named(30, "Anna")).await, "applied");
    assert_eq!(app.auth_event(&named(20, "Annie")).await, "stale");
    assert_eq!(app.popug_row(&id).await.unwrap().0, "Anna");

    // A token issued later refreshes the popug; an event older than that token is stale even
    // though it is newer than the last event.
    let later = User::signed(
        &id,
        token(&json!({
            "sub": id, "name": "Anya", "role": "accountant",
            "iat": now.timestamp() + 60, "exp": now.timestamp() + 3600,
        })),
    );
    let me = app.ok(&later, "{ me { name role } }", json!({})).await;
    assert_eq!(me["me"], json!({ "name": "Anya", "role": "ACCOUNTANT" }));
    assert_eq!(app.auth_event(&named(40, "Anastasia")).await, "stale");
    assert_eq!(
        app.popug_row(&id).await.unwrap(),
        ("Anya".into(), None, "accountant".into(), true)
    );

    // Each event handled is recorded once, with what it did.
    let outcomes: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM auth_events WHERE popug_id = $1 ORDER BY occurred_at",
    )
    .bind(&id)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert_eq!(outcomes, ["APPLIED", "STALE", "APPLIED", "STALE"]);
}

async fn a_deleted_popug_is_deactivated_everywhere(app: TestApp) {
    let now = Utc::now();
    let admin = app.user("admin", "alice").await;
    let bob = app.user("worker", "bob").await;
    let task = app.create_task(&admin, "bob's").await;
    assert_eq!(task["assignee"]["id"], bob.id.as_str());
    let balance = "query($id: ID!) { account(popugId: $id) { balance } }";
    let bob_balance = app.ok(&admin, balance, json!({ "id": bob.id })).await;
    let carol = app.user("worker", "carol").await;
    let mut socket = app
        .subscribed(
            &bob,
            "subscription { taskAssigned { task { id } } }",
            json!({}),
        )
        .await;

    let deleted = message("popug.deleted", now, 5, &bob.key, json!({}));
    assert_eq!(app.auth_event(&deleted).await, "applied");

    // His socket closes, his tokens are refused, an even newer token does not revive him.
    assert_eq!(socket.close_code(Duration::from_secs(5)).await, Some(4403));
    for token in [
        bob.token.clone(),
        user_token(&bob.key, "worker", now.timestamp() + 60).token,
    ] {
        let code = app
            .error_code(Some(&token), "{ me { id } }", json!({}))
            .await;
        assert_eq!(code, "FORBIDDEN");
    }
    let code = app
        .error_code(
            Some(&bob.token),
            "mutation($id: ID!) { completeTask(id: $id) { id } }",
            json!({ "id": task["id"] }),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");
    // Deleted again, or updated later: nothing brings him back.
    assert_eq!(app.auth_event(&deleted).await, "duplicate");
    let revive = message(
        "popug.updated",
        now,
        50,
        &bob.key,
        json!({ "name": "Bob", "role": "admin" }),
    );
    assert_eq!(app.auth_event(&revive).await, "stale");
    assert_eq!(
        app.popug_row(&bob.key).await.unwrap(),
        (
            "bob".into(),
            Some("bob@uberpopug.test".into()),
            "worker".into(),
            false
        )
    );

    // Never chosen again; his open task moves at the next shuffle; his account stays.
    for i in 0..10 {
        let task = app.create_task(&admin, &format!("t{i}")).await;
        assert_eq!(task["assignee"]["id"], carol.id.as_str());
    }
    app.ok(&admin, SHUFFLE, json!({})).await;
    let open = "query($id: ID!) { task(id: $id) { status assignee { id active } } }";
    let moved = app.ok(&admin, open, json!({ "id": task["id"] })).await;
    assert_eq!(
        moved["task"],
        json!({ "status": "OPEN", "assignee": { "id": carol.id, "active": true } })
    );
    assert_eq!(
        app.ok(&admin, balance, json!({ "id": bob.id })).await,
        bob_balance
    );
    let listed = app
        .ok(
            &admin,
            "{ popugs(first: 10) { edges { node { id active } } } }",
            json!({}),
        )
        .await;
    let edges = listed["popugs"]["edges"].as_array().unwrap();
    assert!(edges.contains(&json!({ "node": { "id": bob.id, "active": false } })));

    // A popug first heard of through its deletion can never be created by a token.
    let ghost = uuid::Uuid::new_v4().to_string();
    let deleted = message("popug.deleted", now, 1, &ghost, json!({}));
    assert_eq!(app.auth_event(&deleted).await, "applied");
    let ghost = user_token(&ghost, "admin", now.timestamp() + 60);
    let code = app
        .error_code(Some(&ghost.token), "{ me { id } }", json!({}))
        .await;
    assert_eq!(code, "FORBIDDEN");
}

async fn bad_or_unauthenticated_events_are_refused_and_change_nothing(app: TestApp) {
    let now = Utc::now();
    let admin = app.user("admin", "alice").await;
    let id = uuid::Uuid::new_v4().to_string();
    let good = message(
        "popug.created",
        now,
        1,
        &id,
        json!({ "name": "Pat", "role": "worker" }),
    );
    let body = good.to_string();
    let before = app.snapshot().await;

    let service =
        token(&json!({ "sub": "auth-service", "role": "service", "exp": now.timestamp() + 600 }));
    let expired_service =
        token(&json!({ "sub": "auth-service", "role": "service", "exp": now.timestamp() - 600 }));
    let unauthenticated = [
        Sender::Nobody,
        Sender::SignedWith(b"not the secret"),
        Sender::Token(&admin.token),
        Sender::Token(&expired_service),
        Sender::Token("garbage"),
    ];
    for sender in unauthenticated {
        let (status, answer) = app.post_auth_event(body.as_bytes(), sender).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }
    // A signature over other bytes.
    let signed = gateway::auth_events::sign(EVENTS_SECRET.as_bytes(), b"{}");
    let response = reqwest::Client::new()
        .post(app.url("/auth/events"))
        .header("x-ates-signature", signed)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let mut unknown = good.clone();
    unknown["type"] = json!("popug.renamed");
    let mut future = good.clone();
    future["version"] = json!(2);
    let mut no_role = good.clone();
    no_role["data"].as_object_mut().unwrap().remove("role");
    let mut extra = good.clone();
    extra["data"]["salary"] = json!(1_000_000);
    let mut no_time = good.clone();
    no_time.as_object_mut().unwrap().remove("occurredAt");
    let cases = [
        (unknown.to_string(), "popug.renamed"),
        (future.to_string(), "version 2"),
        (no_role.to_string(), "role"),
        (extra.to_string(), "salary"),
        (no_time.to_string(), "occurredAt"),
        ("{\"type\":".to_owned(), "not JSON"),
    ];
    for (body, reason) in cases {
        let (status, answer) = app.post_auth_event(body.as_bytes(), Sender::Signed).await;
        assert_eq!(status, 400, "{answer}");
        let error = &answer["errors"][0];
        assert_eq!(error["extensions"]["code"], "BAD_EVENT");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(reason),
            "{message:?} should name {reason:?}"
        );
    }
    assert_eq!(app.snapshot().await, before);
    let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM auth_events")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(recorded, 0);

    // The service token is enough, and does not make the service a popug.
    let (status, answer) = app
        .post_auth_event(body.as_bytes(), Sender::Token(&service))
        .await;
    assert_eq!((status, answer["outcome"].clone()), (200, json!("applied")));
    assert!(app.popug_row("auth-service").await.is_none());
    assert_eq!(app.popug_row(&id).await.unwrap().0, "Pat");
}

/// A gateway keeps popugs in memory, and forgets one as soon as another replica changes it:
/// a rename through replica A shows on replica B at once, not after the memory expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_replica_shows_on_another_at_once() {
    let Some(database) = crate::helpers::TestDatabase::postgres().await else {
        return;
    };
    let b = crate::helpers::Gateway::start(&database);
    let a = TestApp::start_with(database, |_| {}).await;
    let bob = user_token(
        &uuid::Uuid::new_v4().to_string(),
        "worker",
        Utc::now().timestamp() - 60,
    );
    let me = |url: String, token: String| async move {
        let body: Value = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&json!({ "query": "{ me { name role } }" }))
            .send()
            .await
            .expect("the gateway answers")
            .json()
            .await
            .expect("JSON");
        body["data"]["me"].clone()
    };
    // Both replicas have read Bob, and keep him.
    assert_eq!(
        me(a.url("/graphql"), bob.token.clone()).await["name"],
        bob.key.as_str()
    );
    assert_eq!(
        me(b.url.clone(), bob.token.clone()).await["name"],
        bob.key.as_str()
    );

    let event = message(
        "popug.updated",
        Utc::now(),
        0,
        &bob.key,
        json!({ "name": "Robert", "email": null, "role": "accountant" }),
    );
    assert_eq!(a.auth_event(&event).await, "applied");
    let started = std::time::Instant::now();
    loop {
        let seen = me(b.url.clone(), bob.token.clone()).await;
        if seen["name"] == "Robert" {
            assert_eq!(seen["role"], "ACCOUNTANT");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "replica B still shows {seen} (it keeps popugs for {:?})",
            task_domain::POPUG_MEMORY
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.kill();
}
