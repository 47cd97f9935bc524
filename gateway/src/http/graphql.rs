//! GraphQL over HTTP, as the specification (graphql.github.io/graphql-over-http) describes it.
//!
//! - `POST /graphql` with `Content-Type: application/json` (else 415) and a JSON object body;
//!   a JSON array (a batch) only when batching is enabled.
//! - `GET /graphql?query=…&variables=…&operationName=…` for queries; a mutation over GET is 405.
//! - The response is `application/graphql-response+json` when the client asks for it first,
//!   `application/json` when it asks for that, for anything (`*/*`) or says nothing, and 406
//!   when it accepts neither.
//! - A request that cannot be parsed, validated or have its variables coerced gets an error
//!   body without `data` (`GRAPHQL_PARSE_FAILED`, `GRAPHQL_VALIDATION_FAILED`), never plain
//!   text: with status 400 in `application/graphql-response+json`, and 200 in
//!   `application/json`, as the specification recommends for clients that predate it.
//! - Too many mutations from one popug get 429 (`RATE_LIMITED`); a request over its time, or
//!   one that found no free database connection, gets 503.
//! - A mutation sent with an `Idempotency-Key` runs at most once for its popug and key
//!   ([`super::keyed`]).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::{Loaders, shape};
use crate::body;
use crate::media::{Media, negotiate};
use crate::nesting;

mod request;

use crate::refusal::{self, BAD_REQUEST, RATE_LIMITED, RATE_LIMITED_MESSAGE};
use crate::session::Session;
use crate::state::AppState;
use request::graphql_request;

use super::answer::{Answer, run_by, timed_out};
use super::keyed;

fn respond_bytes(media: Media, status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.content_type()),
    );
    response
}

/// A request refused before it ran: a GraphQL error body with a code.
pub fn refuse(media: Media, status: StatusCode, code: &str, message: &str) -> Response {
    respond_bytes(media, status, refusal::body(code, message))
}

/// The longest a request without credentials waits for the strangers' pace; one that would wait
/// longer is refused after this pause.
const STRANGER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Requests without credentials share one pace ([`AppState::strangers`]) before any other work:
/// a flood of them, nesting bombs or not, waits its turn instead of taking the processor from
/// popugs, whose requests never wait on it. A token that does not verify is no credential (the
/// signature check costs microseconds; the popug replica is not read here). A client sending
/// back to back is held to the pace by its own waits, and refused (429) only after the longest
/// one. WebSocket upgrades and the GraphiQL page are not GraphQL requests, and sockets are
/// paced by the popug they sign in as.
pub async fn strangers_pace(
    State(app): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let asks = !headers.contains_key(header::UPGRADE)
        && (request.method() == axum::http::Method::POST || request.uri().query().is_some());
    let stranger = asks
        && match crate::session::bearer_token(headers) {
            Some(token) => app.sessions.verify(token).await.is_none(),
            None => true,
        };
    if stranger {
        match app.strangers.reserve("", 1.0, STRANGER_WAIT) {
            Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
            Some(_) => {}
            None => {
                tokio::time::sleep(STRANGER_WAIT).await;
                let media = negotiate(request.headers()).unwrap_or(Media::Json);
                return refuse(
                    media,
                    StatusCode::TOO_MANY_REQUESTS,
                    RATE_LIMITED,
                    "too many requests without credentials reach this gateway; sign in, or try again in a moment",
                );
            }
        }
    }
    next.run(request).await
}

/// `POST /graphql`.
pub async fn post(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return refuse(
            media,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BAD_REQUEST,
            "send the request as Content-Type: application/json",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let (status, message) = body::unread(&rejection, app.limits.max_body_bytes);
            return refuse(media, status, BAD_REQUEST, &message);
        }
    };
    if let Err(too_deep) = nesting::check(&body, nesting::MAX_NESTING) {
        return refuse(
            media,
            StatusCode::BAD_REQUEST,
            BAD_REQUEST,
            &too_deep.to_string(),
        );
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(_) => {
            return refuse(
                media,
                StatusCode::BAD_REQUEST,
                BAD_REQUEST,
                "the request body is not JSON",
            );
        }
    };
    let requests: Vec<Value> = match value {
        Value::Array(batch) if app.limits.allow_batch => {
            if batch.is_empty() || batch.len() > 20 {
                return refuse(
                    media,
                    StatusCode::BAD_REQUEST,
                    BAD_REQUEST,
                    "a batch holds 1 to 20 requests",
                );
            }
            batch
        }
        Value::Array(_) => {
            return refuse(
                media,
                StatusCode::BAD_REQUEST,
                BAD_REQUEST,
                "batched requests (a JSON array) are not accepted here: send one request per POST",
            );
        }
        single => {
            return match graphql_request(&app.persisted, single) {
                Ok(request) => execute(&app, &headers, media, request, false).await,
                Err(answer) => respond(media, answer),
            };
        }
    };
    let mut body = b"[".to_vec();
    for (i, value) in requests.into_iter().enumerate() {
        let answer = match graphql_request(&app.persisted, value) {
            Ok(request) => run(&app, &headers, request, false).await,
            Err(answer) => answer,
        };
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&answer.body);
    }
    body.push(b']');
    respond_bytes(media, StatusCode::OK, body)
}

/// `GET /graphql?query=…`.
pub async fn get(app: AppState, headers: HeaderMap, params: HashMap<String, String>) -> Response {
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let mut value = json!({});
    if let Some(query) = params.get("query") {
        value["query"] = json!(query);
    }
    if let Some(name) = params.get("operationName") {
        value["operationName"] = json!(name);
    }
    for key in ["variables", "extensions"] {
        if let Some(text) = params.get(key) {
            if let Err(too_deep) = nesting::check(text, nesting::MAX_NESTING) {
                return refuse(
                    media,
                    StatusCode::BAD_REQUEST,
                    BAD_REQUEST,
                    &too_deep.to_string(),
                );
            }
            match serde_json::from_str::<Value>(text) {
                Ok(parsed) => value[key] = parsed,
                Err(_) => {
                    return refuse(
                        media,
                        StatusCode::BAD_REQUEST,
                        BAD_REQUEST,
                        &format!("{key} is not JSON"),
                    );
                }
            }
        }
    }
    match graphql_request(&app.persisted, value) {
        Ok(request) => execute(&app, &headers, media, request, true).await,
        Err(answer) => respond(media, answer),
    }
}

fn not_acceptable() -> Response {
    refuse(
        Media::Json,
        StatusCode::NOT_ACCEPTABLE,
        BAD_REQUEST,
        "accept application/graphql-response+json or application/json",
    )
}

async fn execute(
    app: &AppState,
    headers: &HeaderMap,
    media: Media,
    request: async_graphql::Request,
    over_get: bool,
) -> Response {
    respond(media, run(app, headers, request, over_get).await)
}

/// The response of an answer in `media`.
fn respond(media: Media, answer: Answer) -> Response {
    let status = match media {
        Media::Json if answer.request_error => StatusCode::OK,
        _ => answer.status,
    };
    let mut response = respond_bytes(media, status, answer.body);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// Runs one request, recorded in the metrics and the request's span.
async fn run(
    app: &AppState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    over_get: bool,
) -> Answer {
    let started = std::time::Instant::now();
    let operation = request
        .operation_name
        .clone()
        .or_else(|| crate::metrics::leading_operation_name(&request.query).map(str::to_owned));
    if let Some(name) = &operation {
        tracing::Span::current().record("operation", name.as_str());
    }
    let answer = answer(app, headers, request, over_get).await;
    if app.metrics {
        crate::metrics::record_request(
            operation.as_deref(),
            answer.status,
            &answer.codes,
            started.elapsed(),
        );
    }
    answer
}

async fn answer(
    app: &AppState,
    headers: &HeaderMap,
    mut request: async_graphql::Request,
    over_get: bool,
) -> Answer {
    let refused = Answer::refused;
    let mutations = shape::mutation_fields(&mut request, app.limits.max_query_bytes);
    let mutation = mutations.is_some();
    if over_get && mutation {
        return refused(
            StatusCode::METHOD_NOT_ALLOWED,
            BAD_REQUEST,
            "mutations are sent with POST",
        );
    }
    // The time limit covers everything from here: reading the popug replica included.
    let deadline = tokio::time::Instant::now() + app.limits.request_timeout;
    let Ok(session) = tokio::time::timeout_at(deadline, app.sessions.of(headers)).await else {
        return timed_out(app);
    };
    if let Session::Popug(popug) = &session {
        tracing::Span::current().record("popug", popug.id.0.as_str());
    }
    if let (Some(count), Session::Popug(popug)) = (mutations, &session)
        && !app.rate_limiter.allow(&popug.id.0, count)
    {
        return refused(
            StatusCode::TOO_MANY_REQUESTS,
            RATE_LIMITED,
            RATE_LIMITED_MESSAGE,
        );
    }
    let key = match keyed::idempotency_key(headers) {
        Ok(key) => key,
        Err(message) => return refused(StatusCode::BAD_REQUEST, BAD_REQUEST, message),
    };
    let keyed_by = match (&session, key) {
        (Session::Popug(popug), Some(key)) if mutation => Some((popug.id.0.clone(), key)),
        _ => None,
    };
    // One popug's requests take their turns by cost once validated (`api::turns`), within the
    // deadline.
    let request = request.data(session).data(Loaders::new(&app.services));
    match keyed_by {
        Some((popug, key)) => keyed::run(app, &popug, &key, request, deadline).await,
        None => run_by(app, request, deadline).await,
    }
}
