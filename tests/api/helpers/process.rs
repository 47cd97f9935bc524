//! Real processes: the gateway's own binary, started as an operator would, and the
//! npm packages of the JavaScript clients.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{EVENTS_SECRET, SECRET, TestDatabase};

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
            .env("DATABASE_URL", &database.url)
            .env("ATES_LISTEN", "127.0.0.1:0")
            .env("ATES_DATA_DIR", database.folder())
            .env("ATES_JWT_SECRET", SECRET)
            .env("ATES_AUTH_EVENTS_SECRET", EVENTS_SECRET)
            .env("ATES_MUTATIONS_PER_SECOND", "0")
            .env("RUST_LOG", "error")
            // The caller's variables win over the defaults above.
            .envs(env.iter().copied())
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

/// One of the gateway's subcommands run as the real binary, with `env` as its only database
/// settings (the caller's `DATABASE_URL` is not passed on): whether it succeeded, and what it
/// printed on stdout then stderr.
pub fn run_gateway(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .expect("run the gateway");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// A GraphQL request to a gateway started as a process (`url` is its `/graphql`); the whole
/// answer.
pub async fn post_graphql(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
) -> serde_json::Value {
    client
        .post(url)
        .bearer_auth(token)
        .json(&serde_json::json!({ "query": query }))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("a JSON body")
}

/// `tests/js`, its npm packages installed (once per test process).
pub fn js_dir() -> PathBuf {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/js");
    INSTALLED.get_or_init(|| {
        let wanted = [
            "graphql",
            "graphql-http",
            "graphql-ws",
            "ws",
            "playwright-core",
            "axe-core",
        ];
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
