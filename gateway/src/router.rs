//! The route table and the layers around it: every URL the gateway answers, in one place.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the popugs' web app |
//! | `GET /app/{digest}/{*path}` | its scripts, styles and GraphQL documents |
//! | `GET /graphql` | a WebSocket upgrade, a query in the URL, or GraphiQL for a browser (unless off) |
//! | `POST /graphql` | GraphQL over HTTP |
//! | `GET /graphql/ws` | GraphQL over WebSocket |
//! | `GET /graphiql/assets/{name}` | GraphiQL's scripts and styles, when it is served |
//! | `POST /auth/events` | Popug Data Updated from the auth service |
//! | `GET /exports/audit-log.csv` | the audit log as CSV, streamed |
//! | `GET /exports/daily-summaries.csv` | the company's days as CSV |
//! | `GET /healthz`, `GET /readyz` | liveness, readiness |
//! | `GET /metrics` | Prometheus text, for the bearer of the metrics token |
//!
//! Around them, from the outside in: the request id, the trace span, CORS for the origins
//! configured (preflights are answered there), compression for clients that accept it, the
//! body limit, the browser's security headers (a content security policy on every page), and
//! `Retry-After` on every 429 and 503.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate as _, SizeAbove};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::body;
use crate::http::{auth_events, exports, graphiql, graphql, ops, web, ws};
use crate::refusal::{self, Refusal};
use crate::state::AppState;

/// The header carrying a request's id: the client's, or one made up here.
pub const REQUEST_ID: &str = "x-request-id";

pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/", get(web::page))
        .route("/app/{digest}/{*path}", get(web::asset))
        .route(
            "/graphql",
            get(graphql_get)
                .post(graphql::post)
                .route_layer(from_fn_with_state(state.clone(), graphql::strangers_pace)),
        )
        .route("/graphql/ws", get(ws::upgrade))
        .route("/auth/events", post(auth_events::receive))
        .route("/exports/audit-log.csv", get(exports::audit_log))
        .route(
            "/exports/daily-summaries.csv",
            get(exports::daily_summaries),
        )
        .route("/healthz", get(ops::healthy))
        .route("/readyz", get(ops::ready));
    if state.graphiql {
        router = router.route("/graphiql/assets/{name}", get(graphiql::asset));
    }
    if state.metrics && state.metrics_token.is_some() {
        router = router.route("/metrics", get(ops::metrics));
    }
    let request_id = HeaderName::from_static(REQUEST_ID);
    let max_body_bytes = state.limits.max_body_bytes;
    let body_timeout = state.limits.body_timeout;
    let cors = cors(&state.cors_origins);
    router
        .with_state(state)
        .fallback(not_found)
        .layer(map_response(json_errors))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(map_response(retry_after))
        .layer(map_response(security_headers))
        // A body announced or found larger than this is refused before it is read whole.
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // And it must arrive by a deadline, however slowly it trickles in.
        .layer(from_fn_with_state(body_timeout, body::deadline))
        // Small answers cost more to compress than they save.
        .layer(
            CompressionLayer::new()
                .compress_when(DefaultPredicate::new().and(SizeAbove::new(1024))),
        )
        .layer(cors)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(
                    DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
        // Outermost: the id is there for the span and for the handlers.
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// A path no route takes.
async fn not_found() -> Response {
    let (code, message) = refusal::of_status(StatusCode::NOT_FOUND);
    Refusal::new(StatusCode::NOT_FOUND, code, message).into_response()
}

/// A panic in one request answers that request with 500 and leaves every other one be.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request panicked");
    let (code, message) = refusal::of_status(StatusCode::INTERNAL_SERVER_ERROR);
    Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, code, message).into_response()
}

/// Every error answer has the JSON error body, also those made before a handler ran (405 from
/// the router, 413 and 400 from an extractor, 415): their plain text or empty body is replaced.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let typed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if !(status.is_client_error() || status.is_server_error()) || typed {
        return response;
    }
    let (code, message) = refusal::of_status(status);
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut answer = Refusal::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// Cross-origin requests from the web apps of `origins` only: exact origins, never a wildcard.
/// A preflight from any other origin is answered without the headers a browser needs to go on.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([HeaderName::from_static(REQUEST_ID), header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

/// What a page of ours may load and do: scripts, styles and fonts from the gateway only (no
/// inline script), requests and sockets to the gateway only, and no page may frame it.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Every answer tells the browser not to guess media types and not to send our URLs on as a
/// referrer; every page also gets the content security policy and refuses to be framed.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let page = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if page {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// Every 429 (rate limited) and 503 (busy, timed out, shutting down) says when to try again:
/// the mutation budget refills each second, and a busy pool or a restart is a matter of
/// seconds too.
async fn retry_after(mut response: Response) -> Response {
    if matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        response
            .headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from_static("1"));
    }
    response
}

/// `GET /graphql`: a WebSocket for a client that asks to upgrade, a query in the URL (its text
/// or its persisted hash), or GraphiQL for a browser.
async fn graphql_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => ws::upgrade(State(state), headers, upgrade).await,
        // A query in the URL, or one persisted, sent by its hash.
        Err(_) if params.contains_key("query") || params.contains_key("extensions") => {
            graphql::get(state, headers, params).await
        }
        Err(_) if state.graphiql => graphiql::page(),
        Err(_) => Refusal::new(
            StatusCode::NOT_FOUND,
            refusal::NOT_FOUND,
            "GraphiQL is not served here (ATES_GRAPHIQL): send queries with POST, or GET with ?query=",
        )
        .into_response(),
    }
}

/// The span of one HTTP request: its id, method and path (never the query string, which may
/// hold a query's variables), and, filled in later, the operation and the popug.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        operation = tracing::field::Empty,
        popug = tracing::field::Empty,
    )
}
