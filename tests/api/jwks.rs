//! RS256 tokens checked against the auth service's JWKS, served here by a local server that
//! counts its fetches and can rotate its keys.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use chrono::Utc;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::{TestApp, TestDatabase, global_id};
use crate::on_both_backends;

on_both_backends!(
    jwks_keys_rotate_and_unknown_kids_are_rate_limited,
    a_hanging_auth_service_holds_up_no_request
);

/// The auth service's key set endpoint.
#[derive(Clone, Default)]
struct KeyServer {
    set: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
    /// While set, a fetch is accepted and never answered.
    hanging: Arc<AtomicBool>,
}

impl KeyServer {
    async fn start(&self) -> String {
        let router = axum::Router::new()
            .route(
                "/.well-known/jwks.json",
                axum::routing::get(|State(server): State<KeyServer>| async move {
                    server.fetches.fetch_add(1, Ordering::SeqCst);
                    if server.hanging.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    let keys = server.set.lock().unwrap().clone();
                    axum::Json(JwkSet { keys })
                }),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}/.well-known/jwks.json")
    }

    fn publish(&self, keys: &[(&str, &EncodingKey)]) {
        *self.set.lock().unwrap() = keys
            .iter()
            .map(|(kid, key)| {
                let mut jwk = Jwk::from_encoding_key(key, Algorithm::RS256).unwrap();
                jwk.common.key_id = Some((*kid).to_owned());
                jwk
            })
            .collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn private_key(file: &str) -> EncodingKey {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/api/fixtures");
    EncodingKey::from_rsa_pem(&std::fs::read(fixtures.join(file)).expect("fixture")).unwrap()
}

fn signed(key: &EncodingKey, kid: &str, sub: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let now = Utc::now().timestamp();
    let claims =
        json!({ "sub": sub, "name": "rita", "role": "worker", "iat": now, "exp": now + 600 });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

async fn jwks_keys_rotate_and_unknown_kids_are_rate_limited(database: TestDatabase) {
    let (old, new) = (
        private_key("test-rsa-private.pem"),
        private_key("test-rsa2-private.pem"),
    );
    let keys = KeyServer::default();
    keys.publish(&[("old", &old)]);
    let url = keys.start().await;
    // The default interval: at most one fetch per 10 s for unknown kids.
    let app = TestApp::start_with(database, |config| {
        config.auth.jwt_secret = None;
        config.auth.jwks_url = Some(url);
    })
    .await;
    let started = Instant::now();
    assert_eq!(keys.fetches(), 1, "the keys are fetched at start");
    let sub = uuid::Uuid::new_v4().to_string();
    let me = "{ me { id } }";
    assert_eq!(
        app.gql(Some(&signed(&old, "old", &sub)), me, json!({}))
            .await["data"]["me"]["id"],
        global_id("Popug", &sub)
    );

    // A flood of made-up kids (and a token signed by a key the set does not hold) costs no
    // fetch within the interval.
    let mut flood = futures::stream::FuturesUnordered::new();
    for i in 0..100 {
        let token = signed(&new, &format!("random-{i}"), &sub);
        let app = &app;
        flood.push(async move { app.error_code(Some(&token), me, json!({})).await });
    }
    while let Some(code) = futures::StreamExt::next(&mut flood).await {
        assert_eq!(code, "UNAUTHENTICATED");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the flood ran past the interval; the count below would not prove the limit"
    );
    assert_eq!(keys.fetches(), 1);

    // Rotation: the new key replaces the old one. Once the interval has passed, the first
    // token with the new kid fetches the set; the removed key stops working.
    keys.publish(&[("new", &new)]);
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.gql(Some(&signed(&new, "new", &sub)), me, json!({}))
            .await["data"]["me"]["id"],
        global_id("Popug", &sub)
    );
    assert_eq!(keys.fetches(), 2);
    let code = app
        .error_code(Some(&signed(&old, "old", &sub)), me, json!({}))
        .await;
    assert_eq!(code, "UNAUTHENTICATED", "a removed key no longer verifies");
    // A token claiming the new kid but signed by the old key is refused too.
    let code = app
        .error_code(Some(&signed(&old, "new", &sub)), me, json!({}))
        .await;
    assert_eq!(code, "UNAUTHENTICATED");
    assert_eq!(keys.fetches(), 2);
}

/// The keys grow old while the auth service hangs: requests with a key the gateway holds are
/// answered at once (the set is fetched in the background), and one with a key it does not hold
/// waits a second at most before its refusal. Before, each waited for the fetch: 5 s, the
/// client's timeout. The bounds leave room for a loaded machine.
async fn a_hanging_auth_service_holds_up_no_request(database: TestDatabase) {
    let key = private_key("test-rsa-private.pem");
    let keys = KeyServer::default();
    keys.publish(&[("current", &key)]);
    let url = keys.start().await;
    let app = TestApp::start_with(database, |config| {
        config.auth.jwt_secret = None;
        config.auth.jwks_url = Some(url);
        config.auth.jwks_max_age_secs = 1;
        config.auth.jwks_min_refresh_ms = 500;
    })
    .await;
    let sub = uuid::Uuid::new_v4().to_string();
    let me = "{ me { id } }";
    let token = signed(&key, "current", &sub);
    assert_eq!(
        app.gql(Some(&token), me, json!({})).await["data"]["me"]["id"],
        global_id("Popug", &sub)
    );

    keys.hanging.store(true, Ordering::SeqCst);
    let fetched = keys.fetches();
    // Past the keys' age: the background fetch has started, and hangs.
    let deadline = Instant::now() + Duration::from_secs(5);
    while keys.fetches() == fetched {
        assert!(Instant::now() < deadline, "no fetch in the background");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        let data = app.gql(Some(&token), me, json!({})).await;
        slowest = slowest.max(asked.elapsed());
        assert_eq!(data["data"]["me"]["id"], global_id("Popug", &sub), "{data}");
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a request waited {slowest:?} on the auth service"
    );

    let asked = Instant::now();
    let code = app
        .error_code(Some(&signed(&key, "unknown", &sub)), me, json!({}))
        .await;
    assert_eq!(code, "UNAUTHENTICATED");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "an unknown kid waited {:?}",
        asked.elapsed()
    );
}
