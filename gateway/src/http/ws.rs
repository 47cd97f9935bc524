//! GraphQL over WebSocket: the `graphql-transport-ws` protocol (the `graphql-ws` library's),
//! and the legacy `graphql-ws` subprotocol of `subscriptions-transport-ws`.
//!
//! Written here rather than taken from async-graphql-axum so the socket can be held to our
//! rules: the token in `connection_init` (or the upgrade's header) or 4403; `connection_init`
//! within a bound or 4408; a duplicate subscription id closes with 4409; a cap on
//! subscriptions per socket; and the socket closes (4403) when its token expires, or when the
//! auth service deactivates its popug or changes its role.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::futures_util::StreamExt as _;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use async_graphql::parser::types::OperationType;

use super::answer::Answer;
use super::keyed;
use crate::api::{Driven, Loaders, shape};
use crate::metrics::{self, Held};
use crate::nesting;
use crate::refusal::{
    self, BAD_REQUEST, BAD_USER_INPUT, FORBIDDEN, PARSE_FAILED, RATE_LIMITED, RATE_LIMITED_MESSAGE,
    SERVICE_UNAVAILABLE, TIMEOUT,
};
use crate::session::{Session, bearer, bearer_token};
use crate::state::AppState;

/// Messages a socket buffers for its client before its subscriptions wait.
const OUTGOING: usize = 64;
/// What a socket reads into at first. Clients send small messages (`connection_init`,
/// `subscribe`, `ping`); a larger one grows the buffer up to the message limit. tungstenite's
/// default, 128 KiB allocated up front, was most of the memory of 10,000 idle sockets.
const READ_BUFFER: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `graphql-transport-ws`.
    TransportWs,
    /// `graphql-ws` (subscriptions-transport-ws).
    Legacy,
}

impl Protocol {
    fn next(self) -> &'static str {
        match self {
            Self::TransportWs => "next",
            Self::Legacy => "data",
        }
    }
}

/// What the socket's subscriptions hand to it.
enum Outgoing {
    Message(String),
    /// The subscription's stream ended.
    Finished(String),
    /// The operation failed (it ran out of time): its `error` message, which ends it.
    Failed(String, String),
}

pub async fn upgrade(
    State(app): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // A page on another site must not open a socket that a popug's browser authenticates.
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if !app.admits_origin(header(header::ORIGIN), header(header::HOST)) {
        return refusal::Refusal::new(
            StatusCode::FORBIDDEN,
            FORBIDDEN,
            "this origin may not open a socket here (see ATES_CORS_ORIGINS)",
        )
        .into_response();
    }
    let ws = ws
        .protocols(["graphql-transport-ws", "graphql-ws"])
        .max_message_size(app.limits.max_ws_message)
        .read_buffer_size(READ_BUFFER);
    let protocol = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some("graphql-ws") => Protocol::Legacy,
        _ => Protocol::TransportWs,
    };
    let header_token = bearer_token(&headers).map(str::to_owned);
    ws.on_upgrade(move |socket| serve(app, socket, protocol, header_token))
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Ends operation `id` with an error of `code`; false when the socket is gone.
async fn refuse(socket: &mut WebSocket, id: &str, code: &str, message: &str) -> bool {
    let error = refusal::errors(code, message);
    send(
        socket,
        json!({ "type": "error", "id": id, "payload": error }),
    )
    .await
}

async fn send(socket: &mut WebSocket, message: Value) -> bool {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .is_ok()
}

/// The next protocol message, or `None` when the client went away. Anything that is not a
/// JSON object with a `type` is `Some(Err)`.
async fn receive(socket: &mut WebSocket) -> Option<Result<Value, ()>> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(text)) => {
                if nesting::check(text.as_str(), nesting::MAX_NESTING).is_err() {
                    return Some(Err(()));
                }
                let parsed: Result<Value, _> = serde_json::from_str(text.as_str());
                return Some(match parsed {
                    Ok(value) if value.get("type").and_then(Value::as_str).is_some() => Ok(value),
                    _ => Err(()),
                });
            }
            Ok(Message::Binary(_)) => return Some(Err(())),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}

async fn serve(
    app: AppState,
    mut socket: WebSocket,
    protocol: Protocol,
    header_token: Option<String>,
) {
    let init = tokio::time::timeout(app.limits.ws_init_timeout, receive(&mut socket)).await;
    let payload = match init {
        Err(_) => return close(&mut socket, 4408, "Connection initialisation timeout").await,
        Ok(None) => return,
        Ok(Some(Err(()))) => return close(&mut socket, 4400, "Invalid message").await,
        Ok(Some(Ok(message))) if message["type"] == "connection_init" => message["payload"].clone(),
        Ok(Some(Ok(_))) => return close(&mut socket, 4401, "Unauthorized").await,
    };
    let token = ["Authorization", "authorization"]
        .iter()
        .find_map(|key| payload.get(key).and_then(Value::as_str))
        .and_then(bearer)
        .map(str::to_owned)
        .or(header_token);
    // Listening before the session is read, so a revocation cannot slip in between.
    let mut revocations = app.revocations.subscribe();
    // Boxed, like every await here that reads the database, so that the socket's future keeps
    // only what its loop needs while it waits (10,000 open sockets are 10,000 such futures).
    let (session, expires) = Box::pin(app.sessions.authenticate(token.as_deref())).await;
    let (Session::Popug(popug), Some(expires)) = (&session, expires) else {
        return close(&mut socket, 4403, "Forbidden").await;
    };
    let popug = popug.clone();
    let _open = app.metrics.then(|| Held::new(metrics::SOCKETS));
    let mut shutdown = app.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        return close(&mut socket, 1001, "the server is going away: reconnect").await;
    }
    if !send(&mut socket, json!({ "type": "connection_ack" })).await {
        return;
    }

    let until_expiry = (expires - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let expiry = tokio::time::sleep(until_expiry);
    tokio::pin!(expiry);
    let (outgoing, mut results) = mpsc::channel::<Outgoing>(OUTGOING);
    let mut subscriptions: HashMap<String, AbortHandle> = HashMap::new();
    loop {
        tokio::select! {
            incoming = receive(&mut socket) => {
                let Some(Ok(message)) = incoming else {
                    if incoming.is_some() {
                        close(&mut socket, 4400, "Invalid message").await;
                    }
                    break;
                };
                let id = message["id"].as_str().map(str::to_owned);
                match (message["type"].as_str().unwrap_or_default(), id) {
                    ("subscribe" | "start", Some(id)) => {
                        if subscriptions.contains_key(&id) {
                            close(&mut socket, 4409, &format!("Subscriber for {id} already exists")).await;
                            break;
                        }
                        if subscriptions.len() >= app.limits.max_subscriptions {
                            let most = format!("at most {} subscriptions per connection", app.limits.max_subscriptions);
                            if !refuse(&mut socket, &id, BAD_USER_INPUT, &most).await {
                                break;
                            }
                            continue;
                        }
                        let mut request = match serde_json::from_value::<async_graphql::Request>(message["payload"].clone()) {
                            Ok(request) => request,
                            Err(_) => {
                                close(&mut socket, 4400, "Invalid subscribe payload").await;
                                break;
                            }
                        };
                        // Refused before anything parses it, as over HTTP; the socket stays.
                        if let Err(too_deep) = nesting::check(&request.query, nesting::MAX_NESTING) {
                            if !refuse(&mut socket, &id, PARSE_FAILED, &too_deep.to_string()).await {
                                break;
                            }
                            continue;
                        }
                        let key = match keyed::idempotency_key_of(&message["payload"]) {
                            Ok(key) => key,
                            Err(bad) => {
                                if !refuse(&mut socket, &id, BAD_REQUEST, bad).await {
                                    break;
                                }
                                continue;
                            }
                        };
                        // Each operation runs as the popug is now, not as it was when the
                        // socket opened: a role changed since (by a fresher token, an auth
                        // event or the database) ends the socket, as does deactivation.
                        let current = Box::pin(app.services.popugs.get(&popug.id)).await;
                        match current {
                            Ok(Some(now)) if now.active && now.role == popug.role => {}
                            Ok(_) => {
                                close(&mut socket, 4403, "Forbidden: the popug was deactivated or its role changed").await;
                                break;
                            }
                            Err(_) => {
                                if !refuse(&mut socket, &id, SERVICE_UNAVAILABLE, "the service is busy: try again in a moment").await {
                                    break;
                                }
                                continue;
                            }
                        }
                        // Mutations take from the popug's one budget, field by field, as over HTTP.
                        let mutations = shape::mutation_fields(&mut request, app.limits.max_query_bytes);
                        if let Some(count) = mutations
                            && !app.rate_limiter.allow(&popug.id.0, count)
                        {
                            if !refuse(&mut socket, &id, RATE_LIMITED, RATE_LIMITED_MESSAGE).await {
                                break;
                            }
                            continue;
                        }
                        // A query or mutation answers once, within the request timeout; a
                        // subscription runs until it ends or is stopped.
                        let once = mutations.is_some() || !is_subscription(&mut request);
                        let operation = Operation {
                            id: id.clone(),
                            request,
                            deadline: once.then_some(app.limits.request_timeout),
                            key: key.filter(|_| mutations.is_some()),
                        };
                        let handle = start(&app, &session, protocol, operation, outgoing.clone());
                        subscriptions.insert(id, handle);
                    }
                    ("complete" | "stop", Some(id)) => {
                        if let Some(handle) = subscriptions.remove(&id) {
                            handle.abort();
                        }
                    }
                    ("ping", _) if protocol == Protocol::TransportWs => {
                        if !send(&mut socket, json!({ "type": "pong" })).await {
                            break;
                        }
                    }
                    ("pong", _) => {}
                    ("connection_terminate", _) if protocol == Protocol::Legacy => break,
                    ("connection_init", _) => {
                        close(&mut socket, 4429, "Too many initialisation requests").await;
                        break;
                    }
                    _ => {
                        close(&mut socket, 4400, "Invalid message").await;
                        break;
                    }
                }
            }
            Some(result) = results.recv() => {
                let message = match result {
                    Outgoing::Message(text) => text,
                    Outgoing::Finished(id) => {
                        if subscriptions.remove(&id).is_none() {
                            continue;
                        }
                        json!({ "type": "complete", "id": id }).to_string()
                    }
                    Outgoing::Failed(id, error) => {
                        if subscriptions.remove(&id).is_none() {
                            continue;
                        }
                        error
                    }
                };
                if socket.send(Message::Text(message.into())).await.is_err() {
                    break;
                }
            }
            () = &mut expiry => {
                close(&mut socket, 4403, "Forbidden: the token expired").await;
                break;
            }
            Ok(()) = shutdown.changed() => {
                let stopping = *shutdown.borrow_and_update();
                if stopping {
                    close(&mut socket, 1001, "the server is going away: reconnect").await;
                    break;
                }
            }
            revoked = revocations.recv() => {
                let ended = match revoked {
                    Ok(id) => *id == *popug.id.0,
                    // Too many revocations to tell whose: ask the replica.
                    Err(_) => !matches!(
                        Box::pin(app.services.popugs.get(&popug.id)).await,
                        Ok(Some(now)) if now.active && now.role == popug.role
                    ),
                };
                if ended {
                    close(&mut socket, 4403, "Forbidden: the popug was deactivated or its role changed").await;
                    break;
                }
            }
        }
    }
    for handle in subscriptions.into_values() {
        handle.abort();
    }
}

/// Whether the request would run a subscription (one that does not parse is not).
fn is_subscription(request: &mut async_graphql::Request) -> bool {
    let name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    shape::operation(document, name.as_deref()).is_some_and(|o| o.ty == OperationType::Subscription)
}

/// One operation a socket asked for.
struct Operation {
    id: String,
    request: async_graphql::Request,
    /// When a query or mutation must have answered; a subscription has none.
    deadline: Option<Duration>,
    /// The idempotency key of a mutation that sent one.
    key: Option<String>,
}

/// Runs one operation and forwards its results to the socket until it ends or is stopped; one
/// with a deadline is stopped then with `TIMEOUT`. A mutation with an idempotency key runs at
/// most once for its popug and key, as over HTTP, and is answered again when sent again.
fn start(
    app: &AppState,
    session: &Session,
    protocol: Protocol,
    operation: Operation,
    outgoing: mpsc::Sender<Outgoing>,
) -> AbortHandle {
    let Operation {
        id,
        request,
        deadline,
        key,
    } = operation;
    let loaders = Loaders::new(&app.services);
    // A subscription's events are resolved as passes of its loaders, as queries are by
    // `api::Passes`.
    let pass = Arc::clone(loaders.pass());
    let request = request.data(session.clone()).data(loaders);
    let popug = match session {
        Session::Popug(popug) => Some(popug.id.0.clone()),
        _ => None,
    };
    let app = app.clone();
    tokio::spawn(async move {
        let _running = app.metrics.then(|| Held::new(metrics::SUBSCRIPTIONS));
        let deadline = deadline.map(|d| tokio::time::Instant::now() + d);
        let timed_out = |id: String| {
            let error = refusal::errors(TIMEOUT, "the request took too long and was stopped");
            let message = json!({ "type": "error", "id": id, "payload": error });
            Outgoing::Failed(id, message.to_string())
        };
        // A query or mutation takes its popug's turns by cost once validated
        // (`api::turns`), as over HTTP, within the deadline.
        if let (Some(popug), Some(key), Some(deadline)) = (&popug, &key, deadline) {
            let answer = keyed::run(&app, popug, key, request, deadline).await;
            for message in answered(protocol, id, &answer) {
                if outgoing.send(message).await.is_err() {
                    return;
                }
            }
            return;
        }
        let stream = Driven::new(&pass, app.schema.execute_stream(request));
        tokio::pin!(stream);
        loop {
            let next = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        let _ = outgoing.send(timed_out(id)).await;
                        return;
                    }
                },
                None => stream.next().await,
            };
            let Some(response) = next else { break };
            let message = json!({ "type": protocol.next(), "id": id, "payload": response });
            if outgoing
                .send(Outgoing::Message(message.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = outgoing.send(Outgoing::Finished(id)).await;
    })
    .abort_handle()
}

/// The messages that carry an answer given under an idempotency key: its result and the end
/// of the operation, or, for a refusal (the key still running, or sent with another request),
/// the error that ends it.
fn answered(protocol: Protocol, id: String, answer: &Answer) -> Vec<Outgoing> {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    if body.get("data").is_some() {
        let message = json!({ "type": protocol.next(), "id": id, "payload": body });
        return vec![
            Outgoing::Message(message.to_string()),
            Outgoing::Finished(id),
        ];
    }
    let message = json!({ "type": "error", "id": id, "payload": body["errors"] });
    vec![Outgoing::Failed(id, message.to_string())]
}
