//! A bounded fuzz run over the request path (parse, validate, limits, execute): documents from
//! a small grammar of our schema's words with hostile twists, and byte-level damage to valid
//! ones, sent to the real gateway. No input may crash it, answer 5xx, leak internals, or take
//! long.
//!
//! It runs `ATES_FUZZ_SECS` seconds (15 by default; `.ci/run` gives it 60), from the seed in
//! `ATES_FUZZ_SEED` or a fresh one it prints, so a failure can be replayed:
//! `ATES_FUZZ_SEED=… ATES_FUZZ_SECS=600 cargo test -p gateway --test api fuzz -- --nocapture`

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::helpers::TestApp;

const WORDS: &[&str] = &[
    "me",
    "id",
    "name",
    "email",
    "role",
    "active",
    "tasks",
    "myTasks",
    "task",
    "edges",
    "node",
    "cursor",
    "pageInfo",
    "hasNextPage",
    "title",
    "status",
    "assignee",
    "createdBy",
    "assignFee",
    "reward",
    "account",
    "balance",
    "log",
    "auditLog",
    "kind",
    "amount",
    "popug",
    "popugs",
    "payouts",
    "mailbox",
    "analytics",
    "dailySummaries",
    "__typename",
    "__schema",
    "types",
    "fields",
    "ofType",
    "createTask",
    "completeTask",
    "shuffleTasks",
    "closeDay",
    "nope",
];

const SEEDS: &[&str] = &[
    "{ me { id name role } }",
    "query Q($n: Int) { tasks(first: $n) { edges { node { id title assignee { name } } } } }",
    "mutation { createTask(input: {title: \"fuzz\"}) { id assignFee reward } }",
    "{ auditLog(filter: {kinds: [PAYOUT]}, first: 5) { edges { node { amount balanceAfter } } } }",
    "{ analytics { mostExpensiveTasks(period: WEEK, from: \"2026-01-01\", to: \"2026-02-01\") { from task { reward } } } }",
    "{ ...F } fragment F on Query { me { ...G } } fragment G on Popug { id name }",
    "{ dailySummaries(from: \"2026-03-01\", to: \"2026-03-03\") { day feesDebited } }",
];

const LEAKS: &[&str] = &[
    "sqlx",
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "panicked",
    ".rs:",
    "/src/",
    "database error",
    "SQLITE",
    "postgres",
];

fn literal(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0 => rng.random::<i64>().to_string(),
        1 => format!("{}", rng.random::<f64>()),
        2 => "\"\\u0000\\uD800 \u{1F99C}\"".into(),
        3 => format!("\"{}\"", "x".repeat(rng.random_range(0..5000))),
        4 => "[1, [2, [3, [4]]]]".into(),
        5 => "{ a: { b: { c: null } } }".into(),
        6 => "null".into(),
        7 => "$v".into(),
        8 => "WEEK".into(),
        _ => "\"2026-02-30\"".into(),
    }
}

fn selection(rng: &mut StdRng, depth: usize) -> String {
    let count = rng.random_range(1..6);
    let mut items = Vec::new();
    for _ in 0..count {
        let word = WORDS.choose(rng).copied().unwrap_or("id");
        let mut item = String::new();
        if rng.random_bool(0.2) {
            item.push_str(&format!("a{}: ", rng.random_range(0..50)));
        }
        item.push_str(word);
        if rng.random_bool(0.3) {
            let arg = [
                "first", "after", "id", "day", "from", "to", "filter", "input", "x",
            ]
            .choose(rng)
            .copied()
            .unwrap_or("x");
            item.push_str(&format!("({arg}: {})", literal(rng)));
        }
        if rng.random_bool(0.1) {
            item.push_str(" @skip(if: false)");
        }
        if rng.random_bool(0.1) {
            item.push_str(" @nope");
        }
        if depth < 20 && rng.random_bool(0.5) {
            item.push_str(&format!(" {{ {} }}", selection(rng, depth + 1)));
        }
        if rng.random_bool(0.1) {
            item = format!("...F{}", rng.random_range(0..4));
        }
        items.push(item);
    }
    items.join(" ")
}

fn generated(rng: &mut StdRng) -> String {
    let operation = [
        "",
        "query ",
        "mutation ",
        "subscription ",
        "query Q($v: Int) ",
    ]
    .choose(rng)
    .copied()
    .unwrap_or("");
    let mut document = format!("{operation}{{ {} }}", selection(rng, 0));
    for i in 0..rng.random_range(0..4) {
        let on = ["Query", "Popug", "Task", "Nope"]
            .choose(rng)
            .copied()
            .unwrap_or("Query");
        document.push_str(&format!(
            "\nfragment F{i} on {on} {{ {} }}",
            selection(rng, 10)
        ));
    }
    document
}

fn damaged(rng: &mut StdRng) -> String {
    let mut bytes = SEEDS
        .choose(rng)
        .copied()
        .unwrap_or("{}")
        .as_bytes()
        .to_vec();
    for _ in 0..rng.random_range(1..8) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.random_range(0..bytes.len());
        match rng.random_range(0..4) {
            0 => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, *b"{}()[]:$@!.\"\\#,".choose(rng).unwrap_or(&b'{')),
            2 => {
                let end = (at + rng.random_range(1..20)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => bytes[at] = rng.random(),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_documents_never_hurt_the_gateway() {
    let seconds: u64 = std::env::var("ATES_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let seed: u64 = std::env::var("ATES_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fuzzing for {seconds} s with ATES_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let app = TestApp::sqlite().await;
    let admin = app.user("admin", "fuzz").await;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut sent, mut slowest, mut slowest_doc) = (0u64, Duration::ZERO, String::new());
    while Instant::now() < deadline {
        let document = if rng.random_bool(0.5) {
            generated(&mut rng)
        } else {
            damaged(&mut rng)
        };
        let variables = match rng.random_range(0..4) {
            0 => json!({ "v": rng.random::<i64>() }),
            1 => json!({ "v": [[[[{}]]]] }),
            2 => json!("not an object"),
            _ => Value::Null,
        };
        let mut request = client
            .post(app.url("/graphql"))
            .json(&json!({ "query": document, "variables": variables }));
        if rng.random_bool(0.8) {
            request = request.bearer_auth(&admin.token);
        }
        let started = Instant::now();
        // A kept-alive connection the server has just closed fails on write (a client-side
        // race of HTTP keep-alive, not an answer): such a request is sent once more.
        let retry = request.try_clone().expect("a plain body can be cloned");
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_request() || error.is_connect() => {
                eprintln!("resending after {error}");
                retry.send().await.expect("the gateway answers")
            }
            Err(error) => panic!("the gateway did not answer: {error}"),
        };
        let status = response.status();
        let text = response.text().await.expect("a body");
        let took = started.elapsed();
        sent += 1;
        if took > Duration::from_millis(100) && std::env::var("ATES_FUZZ_DEBUG").is_ok() {
            eprintln!(
                "SLOW {took:?} {status}: {}",
                &document.chars().take(200).collect::<String>()
            );
        }
        if took > slowest {
            slowest = took;
            slowest_doc = document.clone();
        }
        assert!(
            status.is_success() || status.is_client_error(),
            "{status} for {document:?}: {text}"
        );
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("not JSON for {document:?}: {text}"));
        assert!(
            body.get("data").is_some() || body["errors"].is_array(),
            "{document:?}: {text}"
        );
        for leak in LEAKS {
            assert!(
                !text.contains(leak),
                "{leak:?} leaked for {document:?}: {text}"
            );
        }
        // A bound against a stall, loose enough for a debug build on a busy machine.
        assert!(took < Duration::from_secs(2), "{took:?} for {document:?}");
    }
    eprintln!("{sent} documents; slowest {slowest:?}: {slowest_doc:?}");
    // Still serving.
    let me = app.ok(&admin, "{ me { id } }", json!({})).await;
    assert_eq!(me["me"]["id"], admin.id.as_str());
}
