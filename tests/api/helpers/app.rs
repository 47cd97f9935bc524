//! The harness: a fresh database per test, the gateway served in-process on 127.0.0.1:0, and
//! popugs with tokens to act as.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use ates_db::Db;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use gateway::{App, Config};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::Row as _;

use super::fakes::{PaymentSystem, SmtpServer};
use super::{EVENTS_SECRET, METRICS_TOKEN, SECRET};

/// The global id the API gives the object of type `kind` whose own key is `key`: the type and
/// the key, `Task:0193…`, in unpadded URL-safe base64.
pub fn global_id(kind: &str, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{key}"))
}

/// The own key behind a global id of the API, as the database stores it.
pub fn key_of(id: &Value) -> String {
    let id = id.as_str().unwrap_or_else(|| panic!("not an id: {id}"));
    let decoded = URL_SAFE_NO_PAD
        .decode(id)
        .unwrap_or_else(|_| panic!("not a global id: {id}"));
    let decoded = String::from_utf8(decoded).expect("a global id is text");
    let (_, key) = decoded.split_once(':').expect("a global id is `Type:key`");
    key.to_owned()
}

/// A gateway running for one test, and a direct connection to its database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: Db,
    pub database: TestDatabase,
    /// The fakes this gateway talks to, when it was started with them.
    pub fakes: Fakes,
    pub client: reqwest::Client,
}

/// Fakes of the systems the gateway talks to, owned by the app that uses them.
#[derive(Default)]
pub struct Fakes {
    pub payments: Option<PaymentSystem>,
    pub smtp: Option<SmtpServer>,
}

/// Which fakes to start with a gateway.
#[derive(Debug, Clone, Copy, Default)]
pub struct WantedFakes {
    /// A payment system that fails its first this many requests.
    pub payments_failing_first: Option<usize>,
    pub smtp: bool,
}

/// A popug the gateway has seen, with a token to act as it.
#[derive(Debug, Clone)]
pub struct User {
    /// The global id the API shows for this popug.
    pub id: String,
    /// The popug's own key: the auth service's subject, as the database stores it.
    pub key: String,
    pub token: String,
}

impl User {
    /// A new popug with this role, and a token for it valid for an hour; not yet seen by any
    /// gateway.
    pub fn new(role: &str, name: &str) -> Self {
        let key = uuid::Uuid::new_v4().to_string();
        let token = token(&json!({
            "sub": key, "name": name, "role": role, "email": format!("{name}@uberpopug.test"),
            "iat": Utc::now().timestamp(), "exp": Utc::now().timestamp() + 3600,
        }));
        Self::signed(&key, token)
    }

    /// The popug whose own key is `key`, acting with `token`.
    pub fn signed(key: &str, token: String) -> Self {
        Self {
            id: global_id("Popug", key),
            key: key.to_owned(),
            token,
        }
    }
}

/// A fresh, empty database of one backend, with a folder for the gateway's data.
pub type TestDatabase = ates_db::testing::Scratch;

impl TestApp {
    pub async fn sqlite() -> Self {
        Self::start(TestDatabase::sqlite()).await
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
        let mut config = config(Some(database.url.clone()), database.folder().to_path_buf());
        adjust(&mut config);
        let app = App::build(&config).await.expect("the gateway starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let router = app.router();
        let connections = app.connections;
        tokio::spawn(gateway::serve(
            listener,
            router,
            connections,
            std::future::pending(),
        ));
        let db = Db::connect(&database.url, 4)
            .await
            .expect("test connection");
        Self {
            addr,
            db,
            database,
            fakes: Fakes::default(),
            client: reqwest::Client::new(),
        }
    }

    /// Starts the gateway wired to the fakes asked for, which it then owns.
    pub async fn start_with_fakes(
        database: TestDatabase,
        wanted: WantedFakes,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let payments = match wanted.payments_failing_first {
            Some(fail_first) => Some(PaymentSystem::start(fail_first).await),
            None => None,
        };
        let smtp = match wanted.smtp {
            true => Some(SmtpServer::start().await),
            false => None,
        };
        let payment_url = payments.as_ref().map(|p| p.url.clone());
        let smtp_address = smtp.as_ref().map(|s| s.address.clone());
        let mut app = Self::start_with(database, |config| {
            config.payday.payment_url = payment_url;
            config.payday.smtp = smtp_address;
            // The fake SMTP server speaks plain SMTP unless started with TLS.
            config.payday.smtp_tls = gateway::config::SmtpTls::None;
            adjust(config);
        })
        .await;
        app.fakes = Fakes { payments, smtp };
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET /metrics` as Prometheus scrapes it, with the metrics token.
    pub async fn scrape(&self) -> reqwest::Response {
        self.client
            .get(self.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("the gateway answers")
    }

    /// The text of `/metrics` once `line` is in it: the database's figures are read on an
    /// interval of their own, not by the scrape.
    pub async fn scrape_until(&self, line: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = self.scrape().await.text().await.expect("text");
            if text.lines().any(|l| l == line) || std::time::Instant::now() > deadline {
                assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
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
        let user = User::new(role, name);
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
    config.database.database_url = database_url;
    config.server.listen = "127.0.0.1:0".parse().expect("address");
    config.server.data_dir = data_dir;
    config.auth.jwt_secret = Some(SECRET.into());
    config.auth.auth_events_secret = Some(EVENTS_SECRET.into());
    config.server.metrics_token = Some(METRICS_TOKEN.into());
    // Tests send bursts of mutations; the rate limit has its own test.
    config.limits.mutations_per_second = 0;
    config
}
