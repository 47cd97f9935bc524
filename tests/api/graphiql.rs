//! GraphiQL served by the gateway alone: no URL in the page leaves it, and headless Chromium
//! (Debian's `chromium`, driven by playwright-core from `tests/js`) runs a query and a
//! subscription in it.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TestApp, js_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_is_served_whole_by_the_gateway() {
    let app = TestApp::sqlite().await;
    let page = reqwest::get(app.url("/graphql")).await.unwrap();
    assert_eq!(page.status(), 200);
    // The page's own security: no script but the gateway's, none inline, no framing, no
    // guessing of media types, no referrer.
    let header = |name: &str| {
        page.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let policy = header("content-security-policy");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("x-frame-options"), "DENY");
    let page = page.text().await.unwrap();
    assert!(
        !page.contains("<style") && !page.contains("<script>"),
        "{page}"
    );
    assert!(page.contains("<div id=\"graphiql\">"), "{page}");
    let mut scripts = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in page.split(attribute).skip(1) {
            let url = piece.split('"').next().unwrap();
            assert!(
                url.starts_with("/graphiql/assets/"),
                "{url} is not served by the gateway"
            );
            scripts.push(url.to_owned());
        }
    }
    assert_eq!(scripts.len(), 7, "{scripts:?}");
    for asset in &scripts {
        let response = reqwest::get(app.url(asset)).await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        let media = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body = response.bytes().await.unwrap();
        let least = if asset.contains("/ates-") { 40 } else { 1000 };
        assert!(body.len() > least, "{asset} is {} bytes", body.len());
        let expected = if asset.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        };
        assert!(media.starts_with(expected), "{asset}: {media}");
    }
    let start = reqwest::get(app.url("/graphiql/assets/ates-graphiql.js"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!start.contains("http://") && !start.contains("https://"));
    let missing = reqwest::get(app.url("/graphiql/assets/../../etc/passwd"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_a_query_and_a_subscription_in_chromium() {
    let js = js_dir();
    let app = TestApp::sqlite().await;
    let manager = app.user("manager", "mark").await;
    let bob = app.user("worker", "bob").await;
    let mut node = Command::new("node")
        .arg(js.join("graphiql.mjs"))
        .arg(format!("http://{}", app.addr))
        .arg(&bob.token)
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed");
    let mut lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let (query, lines) = tokio::task::spawn_blocking(move || {
        let query = lines.next().expect("the query's result").expect("read");
        let subscribed = lines.next().expect("subscribed").expect("read");
        assert_eq!(subscribed, "subscribed");
        (query, lines)
    })
    .await
    .unwrap();
    let query: Value = serde_json::from_str(&query).expect("JSON");
    let shown = query["result"].as_str().unwrap();
    assert!(
        shown.contains(&bob.id) && shown.contains("WORKER"),
        "{shown}"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    app.create_task(&manager, "Seen in GraphiQL").await;
    let (event, outside, refused, status) = tokio::task::spawn_blocking(move || {
        let mut lines = lines;
        let event = lines.next().expect("the event").expect("read");
        let outside = lines.next().expect("the URLs").expect("read");
        let refused = lines.next().expect("the policy's refusals").expect("read");
        (event, outside, refused, node.wait().expect("node exits"))
    })
    .await
    .unwrap();
    assert!(status.success(), "the browser run failed");
    let event: Value = serde_json::from_str(&event).expect("JSON");
    assert!(
        event["result"]
            .as_str()
            .unwrap()
            .contains("Seen in GraphiQL")
    );
    let outside: Value = serde_json::from_str(&outside).expect("JSON");
    assert_eq!(
        outside["urls"],
        serde_json::json!([]),
        "the page reached outside the gateway"
    );
    let refused: Value = serde_json::from_str(&refused).expect("JSON");
    assert_eq!(
        refused["violations"],
        serde_json::json!([]),
        "the content security policy refused something the page needs"
    );
}
