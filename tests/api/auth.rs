use chrono::Utc;
use serde_json::json;

use crate::helpers::{TestApp, global_id, token, token_with};
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
    // Issued ten years from now: no clock is that far off.
    let mut from_the_future = valid.clone();
    from_the_future["iat"] = json!(now + 10 * 365 * 24 * 3600);
    // Claims as long as the auth service's own events allow, and no longer.
    let mut long_email = valid.clone();
    long_email["email"] = json!(format!("{}@uberpopug.test", "b".repeat(60_000)));
    let mut long_name = valid.clone();
    long_name["name"] = json!("b".repeat(201));
    let mut nul_name = valid.clone();
    nul_name["name"] = json!("bo\u{0}b");

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
        ("issued in the future", token(&from_the_future)),
        ("an e-mail of 60 KB", token(&long_email)),
        ("a name of 201 characters", token(&long_name)),
        ("a NUL in the name", token(&nul_name)),
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
        json!({ "id": global_id("Popug", &sub), "name": "bob", "role": "WORKER" })
    );
    // Within the leeway, a token issued a moment ahead of our clock is fine, and so are
    // claims at their bounds.
    let mut slightly_ahead = valid.clone();
    slightly_ahead["iat"] = json!(now + 5);
    slightly_ahead["name"] = json!("b".repeat(200));
    slightly_ahead["email"] = json!(format!("{}@uberpopug.test", "b".repeat(300)));
    let body = app
        .gql(Some(&token(&slightly_ahead)), "{ me { name } }", json!({}))
        .await;
    assert_eq!(body["data"]["me"]["name"], "b".repeat(200), "{body}");
}

/// A gateway that verifies RS256 tokens of a known issuer and audience; the keys are test
/// fixtures, generated for this suite only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_are_checked_thoroughly() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/api/fixtures");
    let public_pem = std::fs::read(fixtures.join("test-rsa-public.pem")).expect("public key");
    let private = EncodingKey::from_rsa_pem(
        &std::fs::read(fixtures.join("test-rsa-private.pem")).expect("private key"),
    )
    .expect("an RSA key");
    let database = crate::helpers::TestDatabase::sqlite();
    let app = TestApp::start_with(database, |config| {
        config.auth.jwt_secret = None;
        config.auth.jwt_public_key = Some(fixtures.join("test-rsa-public.pem"));
        config.auth.jwt_issuer = Some("https://auth.uberpopug.test".into());
        config.auth.jwt_audience = Some("ates".into());
    })
    .await;
    let now = Utc::now().timestamp();
    let claims = json!({
        "sub": uuid::Uuid::new_v4().to_string(), "name": "rita", "role": "worker",
        "iss": "https://auth.uberpopug.test", "aud": "ates", "iat": now, "exp": now + 600,
    });
    let rs256 = |claims: &serde_json::Value, header: Header| {
        jsonwebtoken::encode(&header, claims, &private).expect("sign")
    };
    let with = |key: &str, value: serde_json::Value| {
        let mut changed = claims.clone();
        changed[key] = value;
        changed
    };
    let plain = Header::new(Algorithm::RS256);
    let mut with_kid = plain.clone();
    with_kid.kid = Some("some-other-key".into());
    let mut with_jku = plain.clone();
    with_jku.jku = Some("http://127.0.0.1:9/keys.json".into());
    let mut with_x5u = plain.clone();
    with_x5u.x5u = Some("http://127.0.0.1:9/cert.pem".into());

    // A header that names a key elsewhere changes nothing: the configured key verifies it,
    // and nothing is fetched (the URLs point at a closed port).
    for header in [with_kid, with_jku, with_x5u] {
        let body = app
            .gql(Some(&rs256(&claims, header)), "{ me { name } }", json!({}))
            .await;
        assert_eq!(body["data"]["me"]["name"], "rita", "{body}");
    }

    // `aud` may be a list (RFC 7519): ours among them is enough.
    let many = with("aud", json!(["board.uberpopug.test", "ates"]));
    let body = app
        .gql(
            Some(&rs256(&many, plain.clone())),
            "{ me { name } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["me"]["name"], "rita", "{body}");

    let cases = [
        // The classic confusion: HS256 with the public key as the secret.
        (
            "HS256 keyed with the public key",
            token_with(&claims, &public_pem),
        ),
        (
            "wrong issuer",
            rs256(&with("iss", json!("https://evil.test")), plain.clone()),
        ),
        (
            "wrong audience",
            rs256(&with("aud", json!("someone-else")), plain.clone()),
        ),
        (
            "a list of audiences without ours",
            rs256(&with("aud", json!(["someone-else", "x"])), plain.clone()),
        ),
        ("no issuer", {
            let mut c = claims.clone();
            c.as_object_mut().expect("object").remove("iss");
            rs256(&c, plain.clone())
        }),
        ("no audience", {
            let mut c = claims.clone();
            c.as_object_mut().expect("object").remove("aud");
            rs256(&c, plain.clone())
        }),
        (
            "expired beyond the leeway",
            rs256(&with("exp", json!(now - 31)), plain.clone()),
        ),
        (
            "not valid yet",
            rs256(&with("nbf", json!(now + 120)), plain.clone()),
        ),
        (
            "exp as text",
            rs256(&with("exp", json!((now + 600).to_string())), plain.clone()),
        ),
        ("signed by another secret", token(&claims)),
    ];
    for (case, bad) in cases {
        let body = app.gql(Some(&bad), "{ me { id } }", json!({})).await;
        let error = &body["errors"][0];
        assert_eq!(
            error["extensions"]["code"], "UNAUTHENTICATED",
            "{case}: {body}"
        );
        // The same generic message whatever was wrong.
        assert_eq!(
            error["message"], "authentication required: send a valid bearer token",
            "{case}"
        );
    }
}
