use serde_json::json;

use crate::helpers::TestApp;
use crate::on_both_backends;

on_both_backends!(oversized_bodies_and_queries_are_refused);

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

    // Deeper than 15 (only introspection types nest that far).
    let of_types = (0..14).fold(String::from("name"), |inner, _| {
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
