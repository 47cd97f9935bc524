//! A fuzzer over every way in: GraphQL over POST, GET and batches, raw bodies, WebSocket frames
//! and signed auth events, sent to the real gateway on both stores. No input may crash it,
//! answer 5xx, answer anything but a JSON body, leak internals, close a socket as a server
//! error, or take longer than [`ANSWER_BOUND`].
//!
//! Inputs are structured: [`Attempt`] and its parts implement `arbitrary::Arbitrary`, so seeded
//! random bytes become documents from the schema's own shapes with their argument slots filled
//! by typical values, known ids or hostile ones; documents built from the schema's words; nesting
//! of every kind far past the bound; strings with NUL, control characters, lone surrogates,
//! emoji and 100,000 characters; and a quarter of them damaged byte by byte.
//!
//! It runs `ATES_FUZZ_SECS` seconds per store (15 by default), from the seed in
//! `ATES_FUZZ_SEED` or a fresh one it prints, so that a failure can be replayed:
//! `ATES_FUZZ_SEED=… ATES_FUZZ_SECS=1800 cargo test -p gateway --test api fuzz -- --nocapture`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use futures::{SinkExt as _, StreamExt as _};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::helpers::{EVENTS_SECRET, TestApp, TestDatabase, User};
use crate::on_both_backends;

on_both_backends!(hostile_input_never_hurts_the_gateway);

/// The longest any answer may take: a bound against a stall, loose enough for a debug build on
/// a busy machine.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

/// The gateway's bound on request heads (`gateway::serve::MAX_HEAD_BYTES` is 64 KiB): a GET
/// whose URL passes half of it may be refused with 431 or cut.
const LONG_URL: usize = 32 * 1024;

/// Text that must never reach a client.
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

/// Documents of the schema's shapes; each `@` is an argument slot.
const TEMPLATES: &[&str] = &[
    "{ me { id name role email active } }",
    "query { tasks(first: @, after: @, status: @, search: @) { edges { cursor node { id title status assignFee reward assignee { name email } history(last: @) { move fee reward loggedAt assignee { name } } } } pageInfo { hasNextPage endCursor } } }",
    "{ myTasks(status: @, last: @, before: @) { nodes { id title createdAt } } }",
    "{ task(id: @) { id title description jiraId createdBy { name } } }",
    "{ node(id: @) { id ... on Task { title } ... on Popug { name email } ... on Payout { amount } } }",
    "{ nodes(ids: @) { id __typename } }",
    "{ popugs(role: @, first: @) { nodes { id name role } } }",
    "{ account(popugId: @) { balance } }",
    "{ auditLog(filter: @, first: @, after: @) { edges { node { kind amount balanceAfter } } } }",
    "{ auditLog(filter: {popugId: @, taskId: @, kinds: @, from: @, to: @, oldestFirst: @}) { totalCount } }",
    "{ statement(popugId: @, day: @) { day } }",
    "{ dailySummaries(from: @, to: @) { day feesDebited } }",
    "{ analytics { managementEarnings(day: @) negativeBalanceCount(day: @) mostExpensiveTasks(period: @, from: @, to: @) { from task { reward } } } }",
    "{ payouts(filter: @, first: @) { nodes { id amount } } mailbox(popugId: @) { nodes { id } } }",
    "{ ledgerCheck(maxBacklogSecs: @) { holds } today }",
    "mutation { createTask(input: @) { id assignFee reward assignee { name } } }",
    "mutation { createTask(input: {title: @, jiraId: @, description: @}) { id } }",
    "mutation { a: createTask(input: {title: @}) { id } b: createTask(input: {title: @}) { id } }",
    "mutation { completeTask(id: @) { id status } }",
    "mutation { closeDay(day: @) { day } retryPayout(id: @) { id } replayDeadLetter(id: @) { id } }",
    "query Q($v: Int, $s: String) { tasks(first: $v, search: $s) { nodes { id } } }",
    "mutation M($input: CreateTaskInput!) { createTask(input: $input) { id } }",
    "subscription { taskAssigned(assigneeId: @, after: @) { seq task { id } fee } }",
    "{ __type(name: @) { name fields { name args { name } } } }",
    "{ ...F } fragment F on Query { me { ...G } } fragment G on Popug { id name }",
];

/// Words of the schema and of GraphQL, for documents built from scratch.
const WORDS: &[&str] = &[
    "me",
    "id",
    "name",
    "email",
    "role",
    "tasks",
    "myTasks",
    "task",
    "node",
    "nodes",
    "edges",
    "cursor",
    "pageInfo",
    "title",
    "status",
    "assignee",
    "createdBy",
    "assignFee",
    "reward",
    "history",
    "account",
    "balance",
    "auditLog",
    "popugs",
    "payouts",
    "mailbox",
    "analytics",
    "dailySummaries",
    "today",
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

/// What goes into an argument slot.
const TYPICAL: &[&str] = &[
    "10",
    "0",
    "-1",
    "51",
    "100000",
    "\"2026-03-01\"",
    "\"2026-02-30\"",
    "WEEK",
    "MONTH",
    "OPEN",
    "DONE",
    "WORKER",
    "PAYOUT",
    "[PAYOUT, TASK_ASSIGNED]",
    "true",
    "null",
    "{title: \"fuzz\"}",
    "{title: \"\"}",
    "\"Task\"",
    "$v",
];

/// One thing a stranger or a popug may send.
#[derive(Debug, Arbitrary)]
enum Attempt {
    Post {
        document: Document,
        variables: Json,
        signed_in: bool,
    },
    Get {
        document: Document,
        variables: Json,
        signed_in: bool,
    },
    Batch {
        documents: Vec<Document>,
        signed_in: bool,
    },
    RawBody {
        body: Raw,
        content_type: ContentType,
        signed_in: bool,
    },
    Socket {
        frames: Vec<Frame>,
        signed_in: bool,
    },
    AuthEvent {
        body: Json,
        signed: bool,
    },
}

#[derive(Debug, Arbitrary)]
enum ContentType {
    Json,
    GraphqlResponse,
    Form,
    Text,
    None,
}

/// A graphql-transport-ws message, or something that only looks like one.
#[derive(Debug, Arbitrary)]
enum Frame {
    Init {
        payload: Json,
    },
    Subscribe {
        id: Text,
        document: Document,
        variables: Json,
    },
    Complete {
        id: Text,
    },
    Ping,
    Raw(Raw),
    Binary(Vec<u8>),
}

/// A GraphQL document.
struct Document(String);

/// JSON text: variables, an init payload, an auth event.
struct Json(String);

/// A string, hostile or plain.
struct Text(String);

/// Bytes sent as they are.
struct Raw(String);

/// How many ids the gateway knows ([`Fuzzer::known`]); a generated input names the n-th of them
/// as `⟦n⟧`, replaced before it is sent.
const KNOWN: u8 = 4;

fn known(u: &mut Unstructured) -> arbitrary::Result<String> {
    Ok(format!("\"⟦{}⟧\"", u.int_in_range(0..=KNOWN - 1)?))
}

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let text = match u.int_in_range(0..=9)? {
            0 => "\0".to_owned(),
            1 => format!("a\0b{}", char::from(u.int_in_range(1..=31u8)?)),
            2 => "\u{1F99C}\u{202E}e\u{301}\u{FEFF}".to_owned(),
            3 => "x".repeat(u.int_in_range(1000..=100_000)?),
            4 => "\u{10FFFF}".repeat(u.int_in_range(1..=5000)?),
            5 => "'; DROP TABLE tasks; --".to_owned(),
            6 => "=HYPERLINK(\"http://evil\")".to_owned(),
            7 => String::new(),
            _ => String::arbitrary(u)?,
        };
        Ok(Text(text))
    }
}

impl Text {
    /// As a GraphQL or JSON string literal (both escape alike).
    fn literal(&self) -> String {
        serde_json::to_string(&self.0).expect("a string serializes")
    }
}

/// Brackets opened `depth` times around `inner`, and closed (or, when `cut`, left open).
fn nested(open: &str, inner: &str, close: &str, depth: usize, cut: bool) -> String {
    let mut text = open.repeat(depth);
    text.push_str(inner);
    if !cut {
        text.push_str(&close.repeat(depth));
    }
    text
}

/// How deep a nesting attempt goes: at the bound, just past it, and far past it.
fn depth(u: &mut Unstructured) -> arbitrary::Result<usize> {
    Ok(*u.choose(&[8usize, 63, 64, 65, 100, 1_500, 20_000, 200_000])?)
}

/// A GraphQL value for an argument slot.
fn value(u: &mut Unstructured, level: usize) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=11)? {
        0..=3 => u.choose(TYPICAL)?.to_string(),
        4 => known(u)?,
        5 => Text::arbitrary(u)?.literal(),
        6 => i64::arbitrary(u)?.to_string(),
        7 => format!("{:e}", f64::arbitrary(u)?),
        8 if level < 4 => {
            let mut items = Vec::new();
            for _ in 0..u.int_in_range(0..=4)? {
                items.push(value(u, level + 1)?);
            }
            format!("[{}]", items.join(", "))
        }
        9 if level < 4 => {
            let mut fields = Vec::new();
            for _ in 0..u.int_in_range(0..=4)? {
                let key = u.choose(&["title", "jiraId", "description", "popugId", "a"])?;
                fields.push(format!("{key}: {}", value(u, level + 1)?));
            }
            format!("{{{}}}", fields.join(", "))
        }
        10 => {
            let (open, close) = *u.choose(&[("[", "]"), ("{a: ", "}")])?;
            nested(open, "1", close, depth(u)?, bool::arbitrary(u)?)
        }
        _ => "\"\\uD800\\u0000\"".to_owned(),
    })
}

/// A selection set from the schema's words: aliases, arguments, directives, fragments.
fn selection(u: &mut Unstructured, level: usize) -> arbitrary::Result<String> {
    let mut items = Vec::new();
    for _ in 0..u.int_in_range(1..=5)? {
        let mut item = String::new();
        if u.ratio(1, 5)? {
            item.push_str(&format!("a{}: ", u.int_in_range(0..=50)?));
        }
        item.push_str(u.choose(WORDS)?);
        if u.ratio(1, 3)? {
            let argument = u.choose(&["first", "last", "after", "id", "day", "input", "x"])?;
            item.push_str(&format!("({argument}: {})", value(u, 0)?));
        }
        if u.ratio(1, 10)? {
            item.push_str(u.choose(&[" @skip(if: false)", " @include(if: $v)", " @nope"])?);
        }
        if level < 12 && u.ratio(1, 2)? {
            item.push_str(&format!(" {{ {} }}", selection(u, level + 1)?));
        }
        if u.ratio(1, 10)? {
            item = format!("...F{}", u.int_in_range(0..=3)?);
        }
        items.push(item);
    }
    Ok(items.join(" "))
}

/// Byte-level damage: removals, insertions of syntax, repeats and random bytes.
fn damage(u: &mut Unstructured, text: String) -> arbitrary::Result<String> {
    let mut bytes = text.into_bytes();
    for _ in 0..u.int_in_range(1..=8)? {
        if bytes.is_empty() {
            break;
        }
        let at = u.choose_index(bytes.len())?;
        match u.int_in_range(0..=3)? {
            0 => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, *u.choose(b"{}()[]:$@!.\"\\#,")?),
            2 => {
                let end = (at + u.int_in_range(1..=20)?).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => bytes[at] = u8::arbitrary(u)?,
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl<'a> Arbitrary<'a> for Document {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let document = match u.int_in_range(0..=9)? {
            0..=4 => {
                let template = u.choose(TEMPLATES)?;
                let mut filled = String::new();
                for (i, part) in template.split('@').enumerate() {
                    if i > 0 {
                        filled.push_str(&value(u, 0)?);
                    }
                    filled.push_str(part);
                }
                filled
            }
            5 | 6 => {
                let operation = u.choose(&[
                    "",
                    "query ",
                    "mutation ",
                    "subscription ",
                    "query Q($v: Int) ",
                ])?;
                let mut document = format!("{operation}{{ {} }}", selection(u, 0)?);
                for i in 0..u.int_in_range(0..=3)? {
                    let on = u.choose(&["Query", "Popug", "Task", "Nope"])?;
                    document.push_str(&format!(
                        " fragment F{i} on {on} {{ {} }}",
                        selection(u, 8)?
                    ));
                }
                document
            }
            7 => {
                // Nesting of every kind the parsers recurse on.
                let (open, inner, close) = *u.choose(&[
                    ("{ me ", "{ id }", "}"),
                    ("{ a ", "", "}"),
                    ("(", "", ")"),
                    ("[", "1", "]"),
                    ("{a: ", "1", "}"),
                ])?;
                let depth = depth(u)?;
                let cut = bool::arbitrary(u)?;
                match open {
                    "[" | "{a: " => {
                        format!("{{ today(x: {}) }}", nested(open, inner, close, depth, cut))
                    }
                    _ => nested(open, inner, close, depth, cut),
                }
            }
            8 => Text::arbitrary(u)?.0,
            _ => String::arbitrary(u)?,
        };
        let document = if u.ratio(1, 4)? {
            damage(u, document)?
        } else {
            document
        };
        Ok(Document(document))
    }
}

/// A JSON value as text, so that nesting far past any parser's recursion can be written.
fn json_value(u: &mut Unstructured, level: usize) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=9)? {
        0 => i64::arbitrary(u)?.to_string(),
        1 => u
            .choose(&["1e400", "-0", "0.1", "9007199254740993", "true", "null"])?
            .to_string(),
        2 | 3 => Text::arbitrary(u)?.literal(),
        4 => "\"\\ud800\\u0000\"".to_owned(),
        5 if level < 4 => {
            let mut items = Vec::new();
            for _ in 0..u.int_in_range(0..=4)? {
                items.push(json_value(u, level + 1)?);
            }
            format!("[{}]", items.join(","))
        }
        6 | 7 if level < 4 => json_object(u, level + 1)?,
        8 => {
            let (open, close) = *u.choose(&[("[", "]"), ("{\"a\":", "}")])?;
            nested(open, "1", close, depth(u)?, bool::arbitrary(u)?)
        }
        _ => known(u)?,
    })
}

fn json_object(u: &mut Unstructured, level: usize) -> arbitrary::Result<String> {
    let mut fields = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let key = u.choose(&[
            "v",
            "s",
            "input",
            "title",
            "id",
            "type",
            "popug",
            "authorization",
        ])?;
        fields.push(format!("\"{key}\":{}", json_value(u, level)?));
    }
    Ok(format!("{{{}}}", fields.join(",")))
}

impl<'a> Arbitrary<'a> for Json {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let json = if u.ratio(3, 4)? {
            json_object(u, 0)?
        } else {
            json_value(u, 0)?
        };
        Ok(Json(json))
    }
}

impl<'a> Arbitrary<'a> for Raw {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let raw = match u.int_in_range(0..=4)? {
            0 => Json::arbitrary(u)?.0,
            1 => format!(
                "{{\"query\":{},\"variables\":{}}}",
                Text(Document::arbitrary(u)?.0).literal(),
                Json::arbitrary(u)?.0
            ),
            2 => {
                let json = format!(
                    "{{\"query\":\"{{ me {{ id }} }}\",\"extensions\":{}}}",
                    Json::arbitrary(u)?.0
                );
                damage(u, json)?
            }
            3 => Text::arbitrary(u)?.0,
            _ => String::arbitrary(u)?,
        };
        Ok(Raw(raw))
    }
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Document({})", shown(&self.0))
    }
}

impl std::fmt::Debug for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Json({})", shown(&self.0))
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Text({})", shown(&self.0))
    }
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Raw({})", shown(&self.0))
    }
}

/// A long input as its start, its length and its end.
fn shown(text: &str) -> String {
    let chars = text.chars().count();
    if chars <= 300 {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(200).collect();
    let tail: String = text.chars().skip(chars - 60).collect();
    format!("{head:?} … ({chars} characters) … {tail:?}")
}

/// What happened to one attempt, for the tally.
struct Outcome {
    transport: &'static str,
    status: String,
    code: String,
}

/// The run's state: the gateway, who sends, what was seen.
struct Fuzzer<'a> {
    app: &'a TestApp,
    user: User,
    /// The ids of three popugs and a task.
    known: Vec<String>,
    tally: BTreeMap<String, u64>,
    slowest: (Duration, String),
}

impl Fuzzer<'_> {
    /// Sends one attempt and checks its answer; panics with the attempt on a finding.
    async fn attempt(&mut self, attempt: &Attempt) {
        let started = Instant::now();
        let outcome = match attempt {
            Attempt::Post {
                document,
                variables,
                signed_in,
            } => {
                let body = self.fill(&format!(
                    "{{\"query\":{},\"variables\":{}}}",
                    Text(document.0.clone()).literal(),
                    variables.0
                ));
                self.http("POST", self.post_json(body, *signed_in), attempt)
                    .await
            }
            Attempt::Get {
                document,
                variables,
                signed_in,
            } => {
                let mut url = reqwest::Url::parse(&self.app.url("/graphql")).expect("a URL");
                url.query_pairs_mut()
                    .append_pair("query", &self.fill(&document.0))
                    .append_pair("variables", &self.fill(&variables.0));
                let long = url.as_str().len() > LONG_URL;
                let request = self.signed(self.app.client.get(url), *signed_in);
                if long {
                    self.refused_head(request, attempt).await
                } else {
                    self.http("GET", request, attempt).await
                }
            }
            Attempt::Batch {
                documents,
                signed_in,
            } => {
                let operations: Vec<String> = documents
                    .iter()
                    .take(12)
                    .map(|d| format!("{{\"query\":{}}}", Text(d.0.clone()).literal()))
                    .collect();
                let body = self.fill(&format!("[{}]", operations.join(",")));
                self.http("batch", self.post_json(body, *signed_in), attempt)
                    .await
            }
            Attempt::RawBody {
                body,
                content_type,
                signed_in,
            } => {
                let mut request = self
                    .app
                    .client
                    .post(self.app.url("/graphql"))
                    .body(self.fill(&body.0));
                let media = match content_type {
                    ContentType::Json => Some("application/json"),
                    ContentType::GraphqlResponse => Some("application/graphql-response+json"),
                    ContentType::Form => Some("application/x-www-form-urlencoded"),
                    ContentType::Text => Some("text/plain; charset=utf-16"),
                    ContentType::None => None,
                };
                if let Some(media) = media {
                    request = request.header("content-type", media);
                }
                self.http("raw", self.signed(request, *signed_in), attempt)
                    .await
            }
            Attempt::AuthEvent { body, signed } => {
                let body = self.fill(&body.0);
                let signature = if *signed {
                    sign(body.as_bytes())
                } else {
                    sign(b"something else")
                };
                let request = self
                    .app
                    .client
                    .post(self.app.url("/auth/events"))
                    .header("content-type", "application/json")
                    .header("x-ates-signature", format!("sha256={signature}"))
                    .body(body);
                self.http("auth event", request, attempt).await
            }
            Attempt::Socket { frames, signed_in } => self.socket(frames, *signed_in, attempt).await,
        };
        let took = started.elapsed();
        assert!(took < ANSWER_BOUND, "{took:?} for {attempt:?}");
        if took > self.slowest.0 {
            self.slowest = (took, format!("{attempt:?}"));
        }
        *self
            .tally
            .entry(format!(
                "{} {} {}",
                outcome.transport, outcome.status, outcome.code
            ))
            .or_default() += 1;
    }

    /// The input with the known ids in their places.
    fn fill(&self, text: &str) -> String {
        let mut filled = text.to_owned();
        for (n, id) in self.known.iter().enumerate() {
            filled = filled.replace(&format!("⟦{n}⟧"), id);
        }
        filled
    }

    /// `POST /graphql` of a JSON body.
    fn post_json(&self, body: String, signed_in: bool) -> reqwest::RequestBuilder {
        let request = self
            .app
            .client
            .post(self.app.url("/graphql"))
            .header("content-type", "application/json")
            .body(body);
        self.signed(request, signed_in)
    }

    fn signed(&self, request: reqwest::RequestBuilder, signed_in: bool) -> reqwest::RequestBuilder {
        if signed_in {
            request.bearer_auth(&self.user.token)
        } else {
            request
        }
    }

    /// Sends over HTTP and checks the answer: no 5xx, a JSON body of the documented shapes, no
    /// internals.
    async fn http(
        &self,
        transport: &'static str,
        request: reqwest::RequestBuilder,
        attempt: &Attempt,
    ) -> Outcome {
        // A kept-alive connection the server has just closed fails on write (a client-side race
        // of HTTP keep-alive, not an answer): such a request is sent once more.
        let retry = request.try_clone().expect("a plain body can be cloned");
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_request() || error.is_connect() => retry
                .send()
                .await
                .unwrap_or_else(|e| panic!("no answer to {attempt:?}: {e}")),
            Err(error) => panic!("no answer to {attempt:?}: {error}"),
        };
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert!(
            !status.is_server_error(),
            "{status} for {attempt:?}: {}",
            shown(&text)
        );
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("not JSON ({status}) for {attempt:?}: {}", shown(&text)));
        let answers: Vec<&Value> = match &body {
            Value::Array(answers) => answers.iter().collect(),
            answer => vec![answer],
        };
        for answer in &answers {
            assert!(
                answer.get("data").is_some()
                    || answer["errors"].is_array()
                    || answer.get("error").is_some()
                    || answer.get("outcome").is_some(),
                "{status} for {attempt:?}: {}",
                shown(&text)
            );
        }
        no_leaks(&text, attempt);
        Outcome {
            transport,
            status: status.as_u16().to_string(),
            code: first_code(&body),
        }
    }

    /// A request whose head may pass the gateway's bound: 431, a cut connection, or any proper
    /// answer.
    async fn refused_head(&self, request: reqwest::RequestBuilder, attempt: &Attempt) -> Outcome {
        match request.send().await {
            Ok(response) if response.status() == 431 => Outcome {
                transport: "GET",
                status: "431".into(),
                code: String::new(),
            },
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                assert!(!status.is_server_error(), "{status} for {attempt:?}");
                let body: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("not JSON ({status}) for {attempt:?}"));
                no_leaks(&text, attempt);
                Outcome {
                    transport: "GET",
                    status: status.as_u16().to_string(),
                    code: first_code(&body),
                }
            }
            Err(_) => Outcome {
                transport: "GET",
                status: "cut".into(),
                code: String::new(),
            },
        }
    }

    /// Opens a socket, sends the frames and reads what the server says until it falls silent
    /// or closes: every message JSON without internals, never the server-error close (1011).
    async fn socket(&self, frames: &[Frame], signed_in: bool, attempt: &Attempt) -> Outcome {
        let url = self.app.url("/graphql").replacen("http", "ws", 1);
        let mut request = url.into_client_request().expect("a request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().expect("a header"),
        );
        let (mut stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("no upgrade for {attempt:?}: {e}"));
        let mut outgoing = Vec::new();
        if signed_in {
            outgoing.push(Message::Text(
                json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", self.user.token) } })
                    .to_string()
                    .into(),
            ));
        }
        for frame in frames.iter().take(6) {
            outgoing.push(match frame {
                Frame::Init { payload } => Message::Text(
                    format!("{{\"type\":\"connection_init\",\"payload\":{}}}", payload.0).into(),
                ),
                Frame::Subscribe { id, document, variables } => Message::Text(
                    format!(
                        "{{\"id\":{},\"type\":\"subscribe\",\"payload\":{{\"query\":{},\"variables\":{}}}}}",
                        id.literal(),
                        Text(document.0.clone()).literal(),
                        variables.0
                    )
                    .into(),
                ),
                Frame::Complete { id } => Message::Text(
                    format!("{{\"id\":{},\"type\":\"complete\"}}", id.literal()).into(),
                ),
                Frame::Ping => Message::Text("{\"type\":\"ping\"}".into()),
                Frame::Raw(raw) => Message::Text(raw.0.clone().into()),
                Frame::Binary(bytes) => Message::Binary(bytes.clone().into()),
            });
        }
        for message in outgoing {
            let message = match message {
                Message::Text(text) => Message::Text(self.fill(text.as_str()).into()),
                other => other,
            };
            // The server may close the socket on a bad frame: the rest then has nowhere to go.
            if stream.send(message).await.is_err() {
                break;
            }
        }
        let mut outcome = Outcome {
            transport: "socket",
            status: "silent".into(),
            code: String::new(),
        };
        loop {
            match tokio::time::timeout(Duration::from_millis(150), stream.next()).await {
                Err(_) => break,
                Ok(None) | Ok(Some(Err(_))) => {
                    outcome.status = "gone".into();
                    break;
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    assert_ne!(code, Some(1011), "a server error closed {attempt:?}");
                    outcome.status = format!("closed {}", code.unwrap_or(0));
                    break;
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    let message: Value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|_| panic!("not JSON for {attempt:?}: {}", shown(&text)));
                    no_leaks(&text, attempt);
                    outcome.status = message["type"].as_str().unwrap_or("?").to_owned();
                    let code = first_code(&message["payload"]);
                    if !code.is_empty() {
                        outcome.code = code;
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
        let _ = stream.close(None).await;
        outcome
    }
}

fn no_leaks(text: &str, attempt: &Attempt) {
    for leak in LEAKS {
        assert!(
            !text.contains(leak),
            "{leak:?} leaked for {attempt:?}: {}",
            shown(text)
        );
    }
}

/// The first `extensions.code` (or `error.code`) of an answer or a socket payload.
fn first_code(body: &Value) -> String {
    let errors = match body {
        Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    errors["errors"][0]["extensions"]["code"]
        .as_str()
        .or(errors[0]["extensions"]["code"].as_str())
        .or(errors["error"]["code"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn sign(body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(EVENTS_SECRET.as_bytes()).expect("any key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn hostile_input_never_hurts_the_gateway(database: TestDatabase) {
    let seconds: u64 = std::env::var("ATES_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let seed: u64 = std::env::var("ATES_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let store = database.url.split(':').next().unwrap_or("?").to_owned();
    eprintln!("fuzzing {store} for {seconds} s with ATES_FUZZ_SEED={seed}");
    let app = TestApp::start_with(database, |config| {
        config.limits.allow_batch = true;
        // The paces hold a client back by design (tests/api/pace.rs); here every answer is
        // held to the bound on work.
        config.limits.complexity_per_second = 0;
        config.limits.anonymous_per_second = 0;
    })
    .await;
    let admin = app.user("admin", "fuzz").await;
    let manager = app.user("manager", "mia").await;
    let worker = app.user("worker", "wes").await;
    let task = app.create_task(&manager, "A task to aim at").await;
    let known = vec![
        admin.id.clone(),
        manager.id.clone(),
        worker.id.clone(),
        task["id"].as_str().expect("an id").to_owned(),
    ];
    assert_eq!(known.len(), usize::from(KNOWN));

    let mut rng = StdRng::seed_from_u64(seed);
    let users = [admin, manager, worker];
    let mut fuzzer = Fuzzer {
        app: &app,
        user: users[0].clone(),
        known,
        tally: BTreeMap::new(),
        slowest: (Duration::ZERO, String::new()),
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut inputs = 0u64;
    let mut bytes = Vec::new();
    while Instant::now() < deadline {
        bytes.resize(rng.random_range(16..2048), 0);
        rng.fill(&mut bytes[..]);
        let mut u = Unstructured::new(&bytes);
        let Ok(attempt) = Attempt::arbitrary(&mut u) else {
            continue;
        };
        fuzzer.user = users[rng.random_range(0..users.len())].clone();
        fuzzer.attempt(&attempt).await;
        inputs += 1;
        if inputs.is_multiple_of(200) {
            let me = app.ok(&users[0], "{ me { id } }", json!({})).await;
            assert_eq!(me["me"]["id"], users[0].id.as_str(), "still serving");
        }
    }
    eprintln!(
        "{store}: {inputs} inputs in {seconds} s (seed {seed}); slowest {:?}: {}",
        fuzzer.slowest.0,
        shown(&fuzzer.slowest.1)
    );
    for (outcome, count) in &fuzzer.tally {
        eprintln!("  {count:>7}  {outcome}");
    }
    let me = app.ok(&users[0], "{ me { id } }", json!({})).await;
    assert_eq!(me["me"]["id"], users[0].id.as_str(), "still serving");
}
