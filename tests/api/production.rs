//! `ATES_ENV=production` means production: no development secret, no sign-in links, no clock
//! file, no GraphiQL unless asked for; and data files only their owner can read.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, TestDatabase};
use crate::on_both_backends;

on_both_backends!(
    production_refuses_to_start_unfit_and_says_why,
    graphiql_is_served_in_production_only_when_asked_for
);

async fn production_refuses_to_start_unfit_and_says_why(database: TestDatabase) {
    let clock = database.set_clock("2026-03-01T12:00:00Z");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("DATABASE_URL", &database.url)
        .env("ATES_LISTEN", "127.0.0.1:0")
        .env("ATES_DATA_DIR", database.folder())
        .env("ATES_ENV", "production")
        .env("ATES_CLOCK_FILE", &clock)
        .env_remove("ATES_JWT_SECRET")
        .env_remove("ATES_JWT_PUBLIC_KEY")
        .env_remove("ATES_JWKS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the gateway kept running in production without a key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = child.wait_with_output().expect("its output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!status.success(), "{stderr}");
    // Each reason on a line of its own.
    let reasons: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .collect();
    assert_eq!(reasons.len(), 2, "{stderr}");
    assert!(reasons[0].contains("ATES_JWT_SECRET"), "{stderr}");
    assert!(reasons[1].contains("ATES_CLOCK_FILE"), "{stderr}");
    // Nothing was signed, printed or generated.
    assert!(!stdout.contains("#token="), "{stdout}");
    assert!(!database.folder().join("dev-jwt-secret").exists());
}

async fn graphiql_is_served_in_production_only_when_asked_for(database: TestDatabase) {
    let sibling = database.sibling().await;
    let production = TestApp::start_with(database, |config| {
        config.server.env = gateway::config::Environment::Production;
    })
    .await;
    let browser = |app: &TestApp, path: &str| {
        app.client
            .get(app.url(path))
            .header("accept", "text/html")
            .send()
    };
    let page = browser(&production, "/graphql").await.unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    let body: Value = page.json().await.expect("a JSON error body");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );
    let asset = browser(&production, "/graphiql/assets/ates-graphiql.js")
        .await
        .unwrap();
    assert_eq!(asset.status(), StatusCode::NOT_FOUND);
    // The web app and queries in the URL still work.
    assert_eq!(
        browser(&production, "/").await.unwrap().status(),
        StatusCode::OK
    );

    let asked = TestApp::start_with(sibling, |config| {
        config.server.env = gateway::config::Environment::Production;
        config.server.graphiql = Some(true);
    })
    .await;
    let page = browser(&asked, "/graphql").await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("GraphiQL"));
}

/// The SQLite file, and the development secret beside it, are readable by their owner only.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt as _;

    let database = TestDatabase::sqlite();
    let folder = database.folder().join("fresh");
    let app = TestApp::start_with(database, |config| {
        config.database.database_url = None;
        config.auth.jwt_secret = None;
        config.server.data_dir = folder.clone();
    })
    .await;
    // Written to, so that SQLite made its log beside the file.
    let user = crate::helpers::User::new("worker", "bob");
    let _ = app
        .gql(Some(&user.token), "{ me { id } }", serde_json::json!({}))
        .await;
    let mode = |name: &str| {
        std::fs::metadata(folder.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("ates.db"), 0o600);
    assert_eq!(mode("ates.db-wal"), 0o600);
    assert_eq!(mode("dev-jwt-secret"), 0o600);
    let folder_mode = std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
    assert_eq!(folder_mode, 0o700);
}
