//! The popugs' web app at `/`, in Debian's Chromium driven by Playwright (`tests/js/app.mjs`),
//! against the real gateway binary on each store: signing in, a live board that follows a
//! manager's creation within a second, completing, a refused title, axe-core, the keyboard, and
//! a restart of the gateway that the board rides out.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Gateway, TestDatabase, User, js_dir, post_graphql, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_board_works_in_a_browser() {
    the_board_works_in_a_browser(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_board_works_in_a_browser() {
    if let Some(database) = TestDatabase::postgres().await {
        the_board_works_in_a_browser(database).await;
    }
}

/// The page and its assets: no-cache for the page, for good for assets named by their digest,
/// and the browser's security headers on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_is_served_with_its_assets_named_by_digest() {
    let database = TestDatabase::sqlite();
    let gateway = Gateway::start(&database);
    let client = reqwest::Client::new();
    let page = client.get(gateway.base() + "/").send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    let script = html
        .split("src=\"")
        .filter_map(|rest| rest.split('"').next())
        .find(|src| src.ends_with("/app.js"))
        .unwrap_or_else(|| panic!("the page loads app.js: {html}"))
        .to_owned();
    assert!(!html.contains("<script>"), "no inline script: {html}");
    let asset = client.get(gateway.base() + &script).send().await.unwrap();
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(
        asset.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    // An asset under another digest is another build's, not this one's.
    let stale = script.replacen("/app/", "/app/0", 1);
    let stale = client.get(gateway.base() + &stale).send().await.unwrap();
    assert_eq!(stale.status(), 404);
}

async fn the_board_works_in_a_browser(database: TestDatabase) {
    // A business clock the test moves past midnight, so that a day can be closed.
    let clock = database.set_clock("2026-03-01T10:00:00Z");
    let clock = clock.to_str().expect("a UTF-8 path").to_owned();
    // A payment system that cannot be reached, tried twice: the day's payout fails, and an
    // admin retries it.
    let settings = [
        ("ATES_CLOCK_FILE", clock.as_str()),
        ("ATES_PAYMENT_URL", "http://127.0.0.1:9/payments"),
        ("ATES_DELIVERY_MAX_ATTEMPTS", "2"),
        ("ATES_DELIVERY_BACKOFF_MS", "50"),
    ];
    let gateway = Gateway::start_with(&database, &settings);
    let base = gateway.base();
    let listen = base.trim_start_matches("http://").to_owned();
    let manager = User::new("manager", "Mia");
    let worker = User::new("worker", "Bob");
    // Known to the gateway only once they sign in, past midnight: until then Bob is the only
    // popug a task can land on.
    let carl = User::new("worker", "Carl");
    let accountant = User::new("accountant", "Ada");
    let admin = User::new("admin", "Alice");
    let now = chrono::Utc::now().timestamp();
    let expired = token(&json!({
        "sub": uuid::Uuid::new_v4().to_string(), "name": "Old", "role": "worker",
        "iat": now - 7200, "exp": now - 3600,
    }));

    let js = js_dir();
    let mut node = Command::new("node")
        .arg(js.join("app.mjs"))
        .arg(&base)
        .arg(&manager.token)
        .arg(&worker.token)
        .env("EXPIRED_TOKEN", &expired)
        .env("CARL_TOKEN", &carl.token)
        .env("ADMIN_TOKEN", &admin.token)
        .env("ACCOUNTANT_TOKEN", &accountant.token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed");
    let mut to_browser = node.stdin.take().expect("stdin");
    let (steps, rx) = std::sync::mpsc::channel::<Value>();
    let stdout = node.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let step: Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("a JSON line from app.mjs: {line}"));
            if steps.send(step).is_err() {
                return;
            }
        }
    });
    let rx = std::sync::Mutex::new(rx);
    let next = |name: &str| -> Value {
        let step = rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the browser run ended before `{name}`"));
        // Shown with `--nocapture`: what each step saw, the board's latency among it.
        eprintln!("browser: {step}");
        assert_eq!(step["step"], name, "{step}");
        step
    };

    let signin = next("sign-in page");
    assert!(signin["axeViolations"].is_array(), "{signin}");
    let signing = next("signing in and out");
    assert!(
        signing["expired"].as_str().unwrap().contains("expired"),
        "{signing}"
    );
    assert_eq!(signing["kept"], 0, "signing out forgets the token");
    let live = next("worker live");
    assert!(!live["url"].as_str().unwrap().contains("token"), "{live}");

    let shown = next("assigned shown");
    let ms = shown["ms"].as_u64().expect("milliseconds");
    assert!(
        ms < 1000,
        "the worker's board showed the task after {ms} ms"
    );

    let completed = next("completed");
    let (start, charged, after) = (
        completed["start"].as_i64().unwrap(),
        completed["charged"].as_i64().unwrap(),
        completed["after"].as_i64().unwrap(),
    );
    let fee = start - charged;
    assert!((10..=20).contains(&fee), "{completed}");
    assert!((20..=40).contains(&(after - charged)), "{completed}");
    let rows: Vec<String> = serde_json::from_value(completed["rows"].clone()).unwrap();
    assert!(
        rows.iter()
            .any(|r| r.contains("Assigned (fee)") && r.contains("Feed the parrots"))
            && rows.iter().any(|r| r.contains("Completed (reward)")),
        "{rows:?}"
    );

    let refused = next("refused title");
    assert_eq!(refused["title"], "Fix [the] perch");
    assert_eq!(refused["description"], "It wobbles");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains('['), "the refusal says why: {error}");
    assert!(refused["rule"].as_str().unwrap().contains("No [ or ]"));

    let keyboard = next("keyboard");
    assert!(keyboard["reached"].as_u64() >= keyboard["controls"].as_u64());
    next("board");

    // The gateway stops; the board says it is reconnecting. A task is assigned to the worker
    // right after the gateway is back, before the board's next try, and the board shows it.
    next("ready for restart");
    gateway.terminate();
    let mut gateway = gateway;
    assert!(gateway.exit_status(Duration::from_secs(20)).is_some());
    writeln!(to_browser, "stopped").unwrap();
    next("reconnecting shown");
    let mut again = settings.to_vec();
    again.push(("ATES_LISTEN", listen.as_str()));
    let gateway = Gateway::start_with(&database, &again);
    let created = post_graphql(
        &reqwest::Client::new(),
        &gateway.url,
        &manager.token,
        "mutation { createTask(input: { title: \"Assigned while we were away\" }) { assignee { name } } }",
    )
    .await;
    assert_eq!(
        created["data"]["createTask"]["assignee"]["name"], "Bob",
        "{created}"
    );
    writeln!(to_browser, "started").unwrap();
    next("reconnected");

    let refused = next("worker refused");
    for page in ["tracker", "dashboard"] {
        assert_eq!(refused[page]["code"], "FORBIDDEN", "{refused}");
        let said = refused[page]["said"].as_str().unwrap();
        assert!(said.contains("only") && said.contains("worker"), "{said}");
    }

    next("ready for midnight");
    database.set_clock("2026-03-02T10:00:00Z");
    writeln!(to_browser, "midnight").unwrap();
    let tracker = next("tracker");
    assert!(tracker["axeViolations"].is_array(), "{tracker}");
    let shuffled = next("shuffled");
    let shuffles = shuffled["shuffles"].as_array().unwrap();
    let last = shuffles.last().expect("a shuffle");
    assert_ne!(
        last["before"], last["after"],
        "ten shuffles never moved it: {shuffled}"
    );
    for shuffle in shuffles {
        let report = shuffle["report"].as_str().unwrap();
        assert!(report.starts_with("Shuffled: 1 reassigned"), "{report}");
    }

    let closed = next("closed");
    assert_eq!(
        closed["day"], "2026-03-01",
        "the default is the business yesterday"
    );
    let report = closed["report"].as_str().unwrap();
    assert!(report.starts_with("2026-03-01 is closed: "), "{report}");
    assert!(
        closed["row"].as_str().unwrap().contains("closed"),
        "{closed}"
    );
    let payouts: Vec<String> = serde_json::from_value(closed["payouts"].clone()).unwrap();
    assert!(
        payouts.iter().any(|p| p.starts_with("2026-03-01Bob")),
        "{payouts:?}"
    );
    let admin = next("admin");
    let top = admin["top"].as_str().unwrap();
    assert!(
        top.contains("Bob"),
        "the day's most expensive task, completed by Bob: {top}"
    );
    assert!(
        admin["failed"].as_str().unwrap().contains("failed"),
        "{admin}"
    );
    assert!(
        admin["retried"].as_str().unwrap().contains("Bob"),
        "{admin}"
    );
    next("done");
    let status = tokio::task::spawn_blocking(move || node.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the browser run failed");
}

/// With the development secret (no `ATES_JWT_SECRET`), the start-up banner prints a sign-in
/// link for an admin and one for a worker, whose tokens this gateway accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_prints_ready_sign_in_links_on_the_development_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_remove("ATES_JWT_SECRET")
        .env_remove("DATABASE_URL")
        .env("ATES_DATA_DIR", dir.path())
        .env("ATES_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the gateway");
    let stdout = child.stdout.take().expect("stdout");
    let links = tokio::task::spawn_blocking(move || {
        let mut links = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(link) = line.trim().strip_prefix("sign in as ") {
                links.push(link.to_owned());
                if links.len() == 2 {
                    break;
                }
            }
        }
        links
    })
    .await
    .unwrap();
    assert_eq!(links.len(), 2, "{links:?}");
    let client = reqwest::Client::new();
    for (link, role) in links.iter().zip(["ADMIN", "WORKER"]) {
        let url = link.split(": ").nth(1).expect("a link");
        let (page, token) = url.split_once("/#token=").expect("a token in the fragment");
        let me = post_graphql(
            &client,
            &format!("{page}/graphql"),
            token,
            "{ me { role } }",
        )
        .await;
        assert_eq!(me["data"]["me"]["role"], role, "{link}: {me}");
    }
    let _ = child.kill();
    let _ = child.wait();
}
