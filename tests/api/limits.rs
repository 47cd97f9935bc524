use serde_json::json;

use crate::helpers::TestApp;
use crate::on_both_backends;

on_both_backends!(
    oversized_bodies_and_queries_are_refused,
    limits_let_just_under_through
);

async fn oversized_bodies_and_queries_are_refused(app: TestApp) {
    let bob = app.user("worker", "bob").await;
    let before = app.snapshot().await;

    // A body over 1 MiB: 413, before the gateway reads it.
    let response = reqwest::Client::new()
        .post(app.url("/graphql"))
        .bearer_auth(&bob.token)
        .json(&json!({
            "query": "mutation($t: String!) { createTask(input: {title: $t}) { id } }",
            "variables": { "t": "x".repeat(1_100_000) },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Depth 16, one over the limit (only introspection types nest that far).
    let of_types = (0..11).fold(String::from("name"), |inner, _| {
        format!("ofType {{ {inner} }}")
    });
    let too_deep = format!("{{ __schema {{ types {{ fields {{ type {{ {of_types} }} }} }} }} }}");
    let refused = app.gql(Some(&bob.token), &too_deep, json!({})).await;
    assert!(refused["data"].is_null(), "{refused}");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nested too deep"),
        "{refused}"
    );

    // Pages of pages: priced by their `first`, far over the complexity bound.
    let page = "auditLog(first: 100) { edges { node { task { id title description assignFee reward \
                assignee { id name email role active } createdBy { id name email role active } } } } }";
    let expensive = format!("{{ a: {page} b: {page} c: {page} }}");
    let refused = app.gql(Some(&bob.token), &expensive, json!({})).await;
    assert!(refused["data"].is_null(), "{refused}");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("complex"),
        "{refused}"
    );
    // One such page is fine.
    let fine = app
        .gql(Some(&bob.token), &format!("{{ {page} }}"), json!({}))
        .await;
    assert!(fine.get("errors").is_none(), "{fine}");

    assert_eq!(app.snapshot().await, before);
}

/// The other side of each limit: just under passes.
async fn limits_let_just_under_through(app: TestApp) {
    use std::time::Duration;

    use crate::ws::Said;

    let bob = app.user("worker", "bob").await;
    // Depth 15 exactly: one level less than the refused query above.
    let of_types = (0..10).fold(String::from("name"), |inner, _| {
        format!("ofType {{ {inner} }}")
    });
    let deep = format!("{{ __schema {{ types {{ fields {{ type {{ {of_types} }} }} }} }} }}");
    let body = app.gql(Some(&bob.token), &deep, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");

    // WebSocket messages: 60 KB is read, 70 KB closes the socket (1009, message too big).
    let subscribe = |size: usize| {
        json!({ "type": "subscribe", "id": "1", "payload": {
            "query": "subscription($who: ID) { taskAssigned(assigneeId: $who) { seq } }",
            "variables": { "who": "x".repeat(size) },
        } })
    };
    let mut ws = app.ws("graphql-transport-ws").await;
    ws.init(&bob.token).await;
    ws.send(subscribe(60_000)).await;
    match ws.said(Duration::from_secs(5)).await {
        // Someone else's id: read, understood, refused.
        Said::Message(message) => assert_eq!(
            message["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{message}"
        ),
        other => panic!("a 60 KB message was not answered: {other:?}"),
    }
    let mut ws = app.ws("graphql-transport-ws").await;
    ws.init(&bob.token).await;
    ws.send(subscribe(70_000)).await;
    match ws.said(Duration::from_secs(5)).await {
        Said::Closed(code) => assert!(matches!(code, None | Some(1009)), "{code:?}"),
        other => panic!("a 70 KB message was accepted: {other:?}"),
    }
}
