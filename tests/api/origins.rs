//! Web apps on other origins: CORS answers the origins configured (`ATES_CORS_ORIGINS`) and no
//! other, and a WebSocket opened by a page on any other site is refused. Shown with raw HTTP,
//! and with real pages in Chromium on two other ports.

use std::process::{Command, Stdio};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::helpers::{TestApp, TestDatabase, js_dir};
use crate::on_both_backends;

on_both_backends!(
    cors_answers_the_configured_origins_only,
    sockets_opened_from_other_sites_are_refused,
);

const BOARD: &str = "https://board.uberpopug.example";
const ELSEWHERE: &str = "https://elsewhere.example";

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, app.url("/graphql"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,idempotency-key",
        )
        .send()
        .await
        .expect("the gateway answers")
}

async fn cors_answers_the_configured_origins_only(database: TestDatabase) {
    let app = TestApp::start_with(database, |config| {
        config.server.cors_origins = vec![BOARD.to_owned()];
    })
    .await;
    let bob = app.user("worker", "bob").await;

    let allowed = preflight(&app, BOARD).await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some(BOARD));
    let methods = header(&allowed, "access-control-allow-methods").unwrap_or_default();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let headers = header(&allowed, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for wanted in ["authorization", "content-type", "idempotency-key"] {
        assert!(headers.contains(wanted), "{wanted} not in {headers}");
    }
    assert!(header(&allowed, "access-control-max-age").is_some());

    // Another site's preflight gets nothing a browser could go on with.
    let refused = preflight(&app, ELSEWHERE).await;
    assert_eq!(header(&refused, "access-control-allow-origin"), None);

    // The request itself: the allowed origin is named, and caches are told it varies.
    let query = |origin: &'static str| {
        reqwest::Client::new()
            .post(app.url("/graphql"))
            .header("origin", origin)
            .bearer_auth(&bob.token)
            .json(&serde_json::json!({ "query": "{ me { name } }" }))
            .send()
    };
    let answered = query(BOARD).await.expect("answers");
    assert_eq!(answered.status(), StatusCode::OK);
    assert_eq!(
        header(&answered, "access-control-allow-origin"),
        Some(BOARD)
    );
    let vary = header(&answered, "vary")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(vary.contains("origin"), "Vary: {vary}");
    let other = query(ELSEWHERE).await.expect("answers");
    assert_eq!(header(&other, "access-control-allow-origin"), None);

    // By default no other origin is allowed at all.
    let closed = TestApp::sqlite().await;
    let refused = preflight(&closed, BOARD).await;
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
}

/// The status of a WebSocket upgrade sent with these headers.
async fn upgrade_status(app: &TestApp, headers: &[(&'static str, String)]) -> u16 {
    let url = app.url("/graphql/ws").replacen("http", "ws", 1);
    let mut request = url.into_client_request().expect("a request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("a header"),
    );
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, value.parse().expect("a header"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("the upgrade failed otherwise: {other}"),
    }
}

async fn sockets_opened_from_other_sites_are_refused(database: TestDatabase) {
    let app = TestApp::start_with(database, |config| {
        config.server.cors_origins = vec![BOARD.to_owned()];
    })
    .await;
    let own = app.url("").trim_end_matches('/').to_owned();
    // A page of the gateway's own, the configured app, and a client that is not a browser.
    assert_eq!(upgrade_status(&app, &[("origin", own)]).await, 101);
    assert_eq!(upgrade_status(&app, &[("origin", BOARD.into())]).await, 101);
    assert_eq!(upgrade_status(&app, &[]).await, 101);
    // Any other site.
    assert_eq!(
        upgrade_status(&app, &[("origin", ELSEWHERE.into())]).await,
        403
    );
    assert_eq!(
        upgrade_status(&app, &[("origin", "http://127.0.0.1:1".into())]).await,
        403,
        "the same host on another port is another origin"
    );
}

/// A page that calls the API at `?api=` with the token in `#`, and opens a socket to it, then
/// writes what happened into `#result`.
const PAGE: &str = r#"<!doctype html>
<title>board</title>
<pre id="result"></pre>
<script type="module">
const api = new URLSearchParams(location.search).get('api');
const token = location.hash.slice(1);
const result = {};
try {
  const response = await fetch(`${api}/graphql`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ query: '{ me { name } }' }),
  });
  result.fetch = await response.json();
} catch (error) {
  result.fetch = `refused: ${error.message}`;
}
result.socket = await new Promise((resolve) => {
  const socket = new WebSocket(`${api.replace(/^http/, 'ws')}/graphql/ws`, 'graphql-transport-ws');
  socket.onopen = () => { socket.close(); resolve('open'); };
  socket.onerror = () => resolve('refused');
});
document.getElementById('result').textContent = JSON.stringify(result);
</script>
"#;

/// Serves [`PAGE`] on a port of its own: its origin.
async fn serve_page() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("an address"));
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(PAGE) }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    origin
}

/// What the page at `origin` saw, in headless Chromium.
async fn visit(origin: &str, api: &str, token: &str) -> Value {
    let url = format!("{origin}/?api={api}#{token}");
    let js = js_dir();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(js.join("visit.mjs"))
            .arg(url)
            .stderr(Stdio::inherit())
            .output()
            .expect("node is installed")
    })
    .await
    .expect("joined");
    assert!(output.status.success(), "the browser run failed");
    serde_json::from_slice(&output.stdout).expect("the page's result, as JSON")
}

/// A real cross-origin `fetch` and socket from two pages on other ports: the configured one
/// gets through, the other is stopped by the browser (CORS) and by the gateway (the socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_an_allowed_origin_calls_the_api_from_chromium() {
    let board = serve_page().await;
    let elsewhere = serve_page().await;
    let allowed = board.clone();
    let app = TestApp::start_with(TestDatabase::sqlite(), move |config| {
        config.server.cors_origins = vec![allowed];
    })
    .await;
    let bob = app.user("worker", "bob").await;
    let api = app.url("").trim_end_matches('/').to_owned();

    let seen = visit(&board, &api, &bob.token).await;
    assert_eq!(seen["fetch"]["data"]["me"]["name"], "bob", "{seen}");
    assert_eq!(seen["socket"], "open", "{seen}");

    let seen = visit(&elsewhere, &api, &bob.token).await;
    assert!(
        seen["fetch"]
            .as_str()
            .is_some_and(|s| s.starts_with("refused")),
        "{seen}"
    );
    assert_eq!(seen["socket"], "refused", "{seen}");
}
