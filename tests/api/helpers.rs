use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use ates_db::Db;
use chrono::Utc;
use gateway::{App, Config};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::Row as _;

pub const SECRET: &str = "test-secret-shared-with-the-auth-service";

/// What the auth service signs the events it posts with.
pub const EVENTS_SECRET: &str = "test-secret-of-auth-events";

/// Generates, for each named scenario `async fn name(app: TestApp)`, one test per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::TestApp::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::helpers::TestApp::postgres().await {
                        super::$name(app).await
                    }
                }
            )*
        }
    };
}

/// One test per backend for each `async fn name(database: TestDatabase)`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::TestDatabase::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(database) = $crate::helpers::TestDatabase::postgres().await {
                        super::$name(database).await
                    }
                }
            )*
        }
    };
}

/// A gateway running for one test, and a direct connection to its database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: Db,
    pub database: TestDatabase,
    client: reqwest::Client,
}

/// A popug the gateway has seen, with a token to act as it.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// A fresh, empty database of one backend; the temp dir holds a SQLite file.
pub struct TestDatabase {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestDatabase {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("ates.db").display());
        Self { url, dir }
    }

    /// `None` (the test is skipped, loudly) when no PostgreSQL is configured.
    pub async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL run of this test");
            return None;
        };
        let name = format!("ates_test_{}", uuid::Uuid::new_v4().simple());
        let url = ates_db::create_database(&admin_url, &name)
            .await
            .expect("TEST_DATABASE_URL answers and may create databases");
        let dir = tempfile::tempdir().expect("temp dir");
        Some(Self { url, dir })
    }

    /// Another fresh database on the same backend.
    pub async fn sibling(&self) -> Self {
        if self.url.starts_with("sqlite:") {
            Self::sqlite().await
        } else {
            Self::postgres().await.expect("PostgreSQL is configured")
        }
    }

    /// Sets the clock file of gateways on this database to `at` (RFC 3339); its path.
    pub fn set_clock(&self, at: &str) -> PathBuf {
        let path = self.dir.path().join("clock");
        std::fs::write(&path, at).expect("write the clock file");
        path
    }

    /// Connects and migrates.
    pub async fn connect(&self) -> Db {
        let db = Db::connect(&self.url, 8).await.expect("connect");
        db.migrate().await.expect("migrate");
        db
    }
}

impl TestApp {
    pub async fn sqlite() -> Self {
        Self::start(TestDatabase::sqlite().await).await
    }

    /// `None` (the test is skipped, loudly) when no PostgreSQL is configured.
    pub async fn postgres() -> Option<Self> {
        Some(Self::start(TestDatabase::postgres().await?).await)
    }

    async fn start(database: TestDatabase) -> Self {
        Self::start_with(database, |_| {}).await
    }

    /// Starts the gateway with a configuration adjusted for the test.
    pub async fn start_with(database: TestDatabase, adjust: impl FnOnce(&mut Config)) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let mut config = config(
            Some(database.url.clone()),
            database.dir.path().to_path_buf(),
        );
        adjust(&mut config);
        let app = App::build(&config).await.expect("the gateway starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let router = app.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let db = Db::connect(&database.url, 4)
            .await
            .expect("test connection");
        Self {
            addr,
            db,
            database,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Posts a GraphQL request and returns the whole response body.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the gateway answers");
        response.json().await.expect("a JSON body")
    }

    /// The `data` of a request that must succeed.
    pub async fn ok(&self, user: &User, query: &str, variables: Value) -> Value {
        let body = self.gql(Some(&user.token), query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// The `extensions.code` of a request that must fail.
    pub async fn error_code(&self, token: Option<&str>, query: &str, variables: Value) -> String {
        let body = self.gql(token, query, variables).await;
        let error = &body["errors"][0];
        assert!(error.is_object(), "expected an error: {body}");
        error["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error without a code: {body}"))
            .to_owned()
    }

    /// A new popug with this role, made known to the gateway by one `me`.
    pub async fn user(&self, role: &str, name: &str) -> User {
        let id = uuid::Uuid::new_v4().to_string();
        let token = token(&json!({
            "sub": id, "name": name, "role": role, "email": format!("{name}@uberpopug.test"),
            "iat": Utc::now().timestamp(), "exp": Utc::now().timestamp() + 3600,
        }));
        let user = User { id, token };
        let me = self.ok(&user, "{ me { id } }", json!({})).await;
        assert_eq!(me["me"]["id"], user.id.as_str());
        user
    }

    pub async fn create_task(&self, user: &User, title: &str) -> Value {
        let data = self
            .ok(
                user,
                "mutation($input: CreateTaskInput!) { createTask(input: $input) { id status assignee { id } } }",
                json!({ "input": { "title": title } }),
            )
            .await;
        data["createTask"].clone()
    }

    /// Every task and outbox row and every popug, to show that a refused call changed nothing.
    pub async fn snapshot(&self) -> Snapshot {
        let tasks = sqlx::query("SELECT id, status, assignee_id FROM tasks ORDER BY id")
            .fetch_all(self.db.pool())
            .await
            .expect("read tasks")
            .into_iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    format!("{} {}", r.get::<String, _>(1), r.get::<String, _>(2)),
                )
            })
            .collect();
        let popugs = sqlx::query("SELECT id, name, role FROM popugs ORDER BY id")
            .fetch_all(self.db.pool())
            .await
            .expect("read popugs")
            .into_iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    format!("{} {}", r.get::<String, _>(1), r.get::<String, _>(2)),
                )
            })
            .collect();
        Snapshot {
            tasks,
            popugs,
            events: self.events().await.len(),
        }
    }

    /// The outbox, oldest first: (type, payload).
    pub async fn events(&self) -> Vec<(String, Value)> {
        sqlx::query("SELECT event_type, payload FROM outbox ORDER BY seq")
            .fetch_all(self.db.pool())
            .await
            .expect("read the outbox")
            .into_iter()
            .map(|r| {
                let payload: String = r.get(1);
                (
                    r.get(0),
                    serde_json::from_str(&payload).expect("payload is JSON"),
                )
            })
            .collect()
    }

    pub async fn events_of(&self, event_type: &str) -> Vec<Value> {
        self.events()
            .await
            .into_iter()
            .filter(|(t, _)| t == event_type)
            .map(|(_, p)| p)
            .collect()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    tasks: BTreeMap<String, String>,
    popugs: BTreeMap<String, String>,
    events: usize,
}

/// An HS256 token over arbitrary claims, signed with the test secret.
pub fn token(claims: &Value) -> String {
    token_with(claims, SECRET.as_bytes())
}

pub fn token_with(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

pub fn config(database_url: Option<String>, data_dir: PathBuf) -> Config {
    let mut config = Config::defaults().expect("defaults");
    config.database_url = database_url;
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.data_dir = data_dir;
    config.jwt_secret = Some(SECRET.into());
    config.auth_events_secret = Some(EVENTS_SECRET.into());
    // Tests send bursts of mutations; the rate limit has its own test.
    config.mutations_per_second = 0;
    config
}

/// Every event in the outbox matches the JSON Schema of its type and version.
pub async fn assert_events_match_their_schemas(app: &TestApp) {
    use sqlx::Row as _;
    let rows = sqlx::query("SELECT event_type, version, payload FROM outbox ORDER BY seq")
        .fetch_all(app.db.pool())
        .await
        .expect("read the outbox");
    assert!(!rows.is_empty());
    let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/schemas");
    for row in rows {
        let (kind, version, payload): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
        let file = schemas.join(format!("{kind}.v{version}.json"));
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(&file)
                .unwrap_or_else(|_| panic!("no schema {}", file.display())),
        )
        .expect("schema is JSON");
        let validator = jsonschema::validator_for(&schema).expect("a valid schema");
        let payload: Value = serde_json::from_str(&payload).expect("payload is JSON");
        let errors: Vec<String> = validator
            .iter_errors(&payload)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{kind} v{version} {payload} breaks its schema: {errors:?}"
        );
    }
}

/// Waits until accounting is past every event in the outbox (bounded).
pub async fn settled(db: &Db) {
    for _ in 0..200 {
        let backlog = ates_events::outbox::backlog(db, "accounting")
            .await
            .expect("count events");
        if backlog.waiting == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("accounting did not handle every event within 10 s");
}

/// The rules of the money, checked against the database:
/// - each task event has exactly one log entry, with the amount its prices say;
/// - at most one reward per task;
/// - every balance is the sum of its log amounts;
/// - fees debited − rewards credited, from the events and prices, = −(sum of all task money);
/// - each payout has its PAYOUT entry, and a popug is paid at most once a day.
pub async fn assert_ledger_invariants(db: &Db) {
    settled(db).await;
    let rows = sqlx::query(
        "SELECT o.event_type, o.payload, p.assign_fee, p.reward, \
         (SELECT COUNT(*) FROM audit_log l WHERE l.event_id = o.id), \
         (SELECT MIN(l.amount) FROM audit_log l WHERE l.event_id = o.id) \
         FROM outbox o LEFT JOIN task_prices p ON p.task_id = o.aggregate_id ORDER BY o.seq",
    )
    .fetch_all(db.pool())
    .await
    .expect("read events and entries");
    let (mut fees, mut rewards) = (0i64, 0i64);
    let mut rewarded = std::collections::HashSet::new();
    let mut payouts = std::collections::HashSet::new();
    for row in &rows {
        let kind: String = row.get(0);
        let payload: String = row.get(1);
        let fee: Option<i64> = row.get(2);
        let reward: Option<i64> = row.get(3);
        let entries: i64 = row.get(4);
        let amount: Option<i64> = row.get(5);
        assert_eq!(entries, 1, "{kind} {payload} has {entries} log entries");
        let task: Value = serde_json::from_str(&payload).unwrap();
        let priced = || {
            let (fee, reward) = (
                fee.expect("every task is priced"),
                reward.expect("every task is priced"),
            );
            assert!((10..=20).contains(&fee) && (20..=40).contains(&reward));
            (fee, reward)
        };
        match kind.as_str() {
            "task.created" => assert_eq!(amount, Some(0)),
            "task.assigned" => {
                let (fee, _) = priced();
                assert_eq!(amount, Some(-fee), "{payload}");
                fees += fee;
            }
            "task.completed" => {
                let (_, reward) = priced();
                assert_eq!(amount, Some(reward), "{payload}");
                rewards += reward;
                assert!(
                    rewarded.insert(task["taskId"].to_string()),
                    "a task rewarded twice"
                );
            }
            "payout.made" => {
                let paid = task["amount"].as_i64().expect("an amount");
                assert!(paid > 0, "{payload}");
                assert_eq!(amount, Some(-paid), "{payload}");
                assert!(
                    payouts.insert((task["popugId"].to_string(), task["day"].to_string())),
                    "a popug paid twice for one day: {payload}"
                );
            }
            other => panic!("unexpected event {other}"),
        }
    }
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(entries as usize, rows.len(), "log entries without an event");

    let mismatched: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT a.popug_id, a.balance, CAST(COALESCE((SELECT SUM(l.amount) FROM audit_log l WHERE l.popug_id = a.popug_id), 0) AS BIGINT) \
         FROM accounts a",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
    .into_iter()
    .filter(|(_, balance, sum): &(String, i64, i64)| balance != sum)
    .collect();
    assert!(
        mismatched.is_empty(),
        "balances that are not the sum of their log: {mismatched:?}"
    );

    let task_money: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM audit_log WHERE kind IN ('TASK_ASSIGNED', 'TASK_COMPLETED')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        fees - rewards,
        -task_money,
        "management earnings disagree with the log"
    );
}

/// The real binary, on a port of its choosing.
pub struct Gateway {
    child: Child,
    /// `http://…/graphql`
    pub url: String,
    /// What it wrote to stderr, line by line (when `RUST_LOG` is among its variables).
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Gateway {
    pub fn start(database: &TestDatabase) -> Self {
        Self::start_with(database, &[])
    }

    /// Started with extra `ATES_*` variables.
    pub fn start_with(database: &TestDatabase, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .envs(env.iter().copied())
            .env("DATABASE_URL", &database.url)
            .env("ATES_LISTEN", "127.0.0.1:0")
            .env("ATES_DATA_DIR", database.dir.path())
            .env("ATES_JWT_SECRET", SECRET)
            .env("ATES_AUTH_EVENTS_SECRET", EVENTS_SECRET)
            .env("ATES_MUTATIONS_PER_SECOND", "0")
            .env("RUST_LOG", "error")
            .envs(env.iter().copied().filter(|(key, _)| *key == "RUST_LOG"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let kept = std::sync::Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("the gateway prints its address")
                .expect("read stdout");
            if let Some(address) = line.strip_prefix("aTES gateway on ") {
                break format!("{address}/graphql");
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, url, logs }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(self) {
        drop(self);
    }

    /// SIGTERM: the orderly stop an operator (or systemd) asks for.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM was delivered");
    }

    /// Waits (polling, at most `within`) for the process to exit; its status.
    pub fn exit_status(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// `http://host:port` of the gateway.
    pub fn base(&self) -> String {
        self.url.trim_end_matches("/graphql").to_owned()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/js`, its npm packages installed (once per test process).
pub fn js_dir() -> PathBuf {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/js");
    INSTALLED.get_or_init(|| {
        let wanted = ["graphql-ws", "ws", "playwright-core"];
        if wanted
            .iter()
            .any(|p| !js.join("node_modules").join(p).exists())
        {
            let installed = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&js)
                .status()
                .expect("npm is installed");
            assert!(installed.success(), "npm ci in tests/js failed");
        }
    });
    js
}
