use chrono::Utc;
use serde_json::json;

use crate::helpers::{TestApp, token, token_with};
use crate::on_both_backends;

on_both_backends!(bad_tokens_are_unauthenticated);

async fn bad_tokens_are_unauthenticated(app: TestApp) {
    let now = Utc::now().timestamp();
    let sub = uuid::Uuid::new_v4().to_string();
    let valid =
        json!({ "sub": sub, "name": "bob", "role": "worker", "iat": now, "exp": now + 600 });
    let mut without_exp = valid.clone();
    without_exp.as_object_mut().unwrap().remove("exp");
    let mut without_sub = valid.clone();
    without_sub.as_object_mut().unwrap().remove("sub");
    let mut expired = valid.clone();
    expired["exp"] = json!(now - 120);
    let mut exp_as_text = valid.clone();
    exp_as_text["exp"] = json!((now + 600).to_string());
    let mut not_yet = valid.clone();
    not_yet["nbf"] = json!(now + 600);
    let mut empty_sub = valid.clone();
    empty_sub["sub"] = json!("");

    let unsigned = {
        let signed = token(&valid);
        let mut parts = signed.split('.');
        let _header = parts.next();
        let payload = parts.next().unwrap();
        // {"alg":"none","typ":"JWT"}
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.")
    };
    let cases = [
        ("no exp", token(&without_exp)),
        ("no sub", token(&without_sub)),
        ("empty sub", token(&empty_sub)),
        ("expired", token(&expired)),
        ("exp of the wrong type", token(&exp_as_text)),
        ("not valid yet", token(&not_yet)),
        (
            "another secret",
            token_with(&valid, b"not-the-shared-secret"),
        ),
        ("alg none", unsigned),
        ("garbage", "not.a.token".to_owned()),
        ("empty", String::new()),
        ("huge", "a".repeat(100_000)),
    ];
    for (case, bad) in cases {
        let code = app.error_code(Some(&bad), "{ me { id } }", json!({})).await;
        assert_eq!(code, "UNAUTHENTICATED", "{case}");
    }
    assert_eq!(
        app.error_code(None, "{ me { id } }", json!({})).await,
        "UNAUTHENTICATED"
    );
    // None of them created the popug; the valid token does.
    let popugs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM popugs")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(popugs, 0);
    let body = app
        .gql(Some(&token(&valid)), "{ me { id name role } }", json!({}))
        .await;
    assert_eq!(
        body["data"]["me"],
        json!({ "id": sub, "name": "bob", "role": "WORKER" })
    );
}
