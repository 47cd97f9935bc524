//! Paces: a popug's documents spend its complexity budget, over HTTP and WebSocket alike (a
//! refused one spends a little too), and requests without a token share one pace that popugs
//! with a token never wait on.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase};
use crate::on_both_backends;
use crate::ws::Ws;

on_both_backends!(
    a_popugs_documents_spend_its_complexity_budget,
    strangers_wait_their_pace_and_popugs_never_do
);

/// A page of 50 tasks' ids and titles: 151 in complexity (1 + 50 × 3).
const PAGE: &str = "{ tasks(first: 50) { nodes { id title } } }";

/// Posts `query`: the status, the `Retry-After` header, the body and how long it took.
async fn timed(
    app: &TestApp,
    token: Option<&str>,
    query: &str,
) -> (u16, Option<String>, Value, Duration) {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": query }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let started = Instant::now();
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.expect("a JSON body");
    (status, retry_after, body, started.elapsed())
}

/// The longest any of `answers` took.
fn slowest_of(answers: &[(u16, Option<String>, Value, Duration)]) -> Duration {
    answers
        .iter()
        .map(|(.., took)| *took)
        .max()
        .unwrap_or_default()
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

async fn a_popugs_documents_spend_its_complexity_budget(database: TestDatabase) {
    // A budget of 100 a second with a burst of 1,000 (two documents at the limit of 500).
    let app = TestApp::start_with(database, |config| {
        config.limits.max_query_complexity = 500;
        config.limits.complexity_per_second = 100;
    })
    .await;
    let (bob, eve) = (
        app.user("worker", "bob").await,
        app.user("worker", "eve").await,
    );
    // Seven pages at once: six fit the burst (906 of 1,000), the last to come waits for the
    // refill (57 more at 100 a second), and all are answered. Sent together, so that a slow
    // machine's refill between them cannot hide the wait.
    let answers = join_all((0..7).map(|_| timed(&app, Some(&bob.token), PAGE))).await;
    for (status, _, body, _) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert!(body["data"]["tasks"].is_object(), "{body}");
    }
    let slowest = slowest_of(&answers);
    assert!(
        slowest >= Duration::from_millis(400),
        "no page waited for the budget: {slowest:?}"
    );

    // Another popug's budget is its own: eve does not wait the second and a half bob would.
    let (status, _, body, took) = timed(&app, Some(&eve.token), PAGE).await;
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_millis(1200), "{took:?}");

    // Over the WebSocket, bob spends from the same budget: still short, his query waits.
    let mut socket = Ws::connect(
        &format!("ws://{}/graphql/ws", app.addr),
        "graphql-transport-ws",
    )
    .await;
    socket.init(&bob.token).await;
    let started = Instant::now();
    socket.subscribe("1", PAGE, json!({})).await;
    let answer = socket.message().await;
    assert_eq!(answer["type"], "next", "{answer}");
    assert!(answer["payload"]["data"]["tasks"].is_object(), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the socket's query did not wait for the budget: {:?}",
        started.elapsed()
    );

    // Three at once overspend by more than two seconds: the last is refused, after the wait,
    // as RATE_LIMITED with 429 and Retry-After, and nothing else goes wrong.
    let answers = join_all((0..3).map(|_| timed(&app, Some(&bob.token), PAGE))).await;
    let refused = answers.iter().filter(|(status, ..)| *status == 429).count();
    assert!(refused > 0, "{answers:?}");
    for (status, retry_after, body, took) in &answers {
        if *status == 429 {
            assert_eq!(code(body), "RATE_LIMITED", "{body}");
            assert_eq!(body["data"], Value::Null, "{body}");
            assert!(retry_after.is_some(), "429 without Retry-After");
            assert!(*took >= Duration::from_secs(2), "refused after {took:?}");
        } else {
            assert_eq!(*status, 200, "{body}");
            assert!(body["data"]["tasks"].is_object(), "{body}");
        }
    }

    // Refused documents spend 100 each: of eleven at once, ten fit the burst and the last to
    // come waits its turn (a second), and each keeps its own refusal.
    let mal = app.user("worker", "mal").await;
    // Unknown, unparsable, and over the complexity limit (4 × 151 > 500).
    let page = PAGE
        .strip_prefix("{ ")
        .and_then(|page| page.strip_suffix(" }"))
        .expect("a page in braces");
    let too_complex = format!("{{ a: {page} b: {page} c: {page} d: {page} }}");
    let (_, _, body, _) = timed(&app, Some(&eve.token), &too_complex).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("complex")),
        "{body}"
    );
    let refusals = ["{ nope }", "{ me { id ", too_complex.as_str()];
    let answers = join_all(
        refusals
            .iter()
            .cycle()
            .take(11)
            .map(|query| timed(&app, Some(&mal.token), query)),
    )
    .await;
    for (status, _, body, _) in &answers {
        assert_ne!(*status, 429, "{body}");
        assert!(body["errors"].is_array(), "{body}");
        assert_ne!(code(body), "RATE_LIMITED", "{body}");
    }
    let slowest = slowest_of(&answers);
    assert!(
        slowest >= Duration::from_millis(500),
        "no refusal waited past the budget: {slowest:?}"
    );
}

async fn strangers_wait_their_pace_and_popugs_never_do(database: TestDatabase) {
    let app = TestApp::start_with(database, |config| {
        config.limits.anonymous_per_second = 10;
    })
    .await;
    let bob = app.user("worker", "bob").await;
    let anonymous = "{ today }";

    // The burst at once.
    let answers = join_all((0..10).map(|_| timed(&app, None, anonymous))).await;
    for (status, _, body, _) in &answers {
        assert_ne!(*status, 429, "{body}");
    }
    // Ten more wait their turns, a tenth of a second apart; bob meanwhile does not wait.
    let strangers = join_all((0..10).map(|_| timed(&app, None, anonymous)));
    let popug = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        timed(&app, Some(&bob.token), "{ me { id } }").await
    };
    let (answers, (status, _, body, took)) = tokio::join!(strangers, popug);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["me"]["id"], bob.id.as_str(), "{body}");
    assert!(
        took < Duration::from_millis(700),
        "bob waited {took:?} on strangers"
    );
    let slowest = slowest_of(&answers);
    assert!(
        answers.iter().all(|(status, ..)| *status != 429),
        "{answers:?}"
    );
    assert!(
        slowest >= Duration::from_millis(300),
        "the strangers did not wait: {slowest:?}"
    );

    // Thirty at once queue past a second: those past it are refused after a second's pause,
    // with 429 RATE_LIMITED, the JSON body and Retry-After. A token that does not verify is no
    // way around the pace.
    let answers =
        join_all((0..30).map(|i| timed(&app, (i % 2 == 0).then_some("not-a-token"), anonymous)))
            .await;
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == 429)
        .collect();
    // About ten of the thirty fit the second's queue; were the bad tokens let through, only
    // the fifteen without one would queue, and about five of them be refused.
    assert!(
        refused.len() >= 12,
        "{} refused: {answers:?}",
        refused.len()
    );
    for (_, retry_after, body, took) in refused {
        assert_eq!(code(body), "RATE_LIMITED", "{body}");
        assert!(retry_after.is_some(), "429 without Retry-After");
        assert!(*took >= Duration::from_secs(1), "refused after {took:?}");
    }
}
