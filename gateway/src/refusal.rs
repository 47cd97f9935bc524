//! The one shape in which the gateway says no: a GraphQL error body,
//! `{"errors":[{"message":…,"extensions":{"code":…}}]}`, and the codes it carries.
//!
//! GraphQL answers, refusals before execution, the auth-event endpoint and the WebSocket's
//! per-operation errors all build their bodies here, so a client parses one shape everywhere.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The request itself is malformed (not JSON, no query, a mutation over GET).
pub const BAD_REQUEST: &str = "BAD_REQUEST";
pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
pub const FORBIDDEN: &str = "FORBIDDEN";
pub const NOT_FOUND: &str = "NOT_FOUND";
pub const CONFLICT: &str = "CONFLICT";
/// An `Idempotency-Key` sent again with another request than the one it was first sent with.
pub const IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";
pub const RATE_LIMITED: &str = "RATE_LIMITED";
/// What a popug over its mutation budget is told, over HTTP and over a socket alike.
pub const RATE_LIMITED_MESSAGE: &str = "too many mutations (each mutation field counts, aliases too): \
     slow down and try again in a moment";
/// The request ran out of time and was stopped.
pub const TIMEOUT: &str = "TIMEOUT";
/// No database connection came free in time, or the gateway is stopping.
pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";
pub const ACCOUNTING_PENDING: &str = "ACCOUNTING_PENDING";
pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";
/// An auth event that can never be applied, however often it is sent.
pub const BAD_EVENT: &str = "BAD_EVENT";
pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
/// Automatic persisted queries: the hash is not known here, so send the query's text along.
pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
/// Automatic persisted queries are switched off here.
pub const PERSISTED_QUERY_NOT_SUPPORTED: &str = "PERSISTED_QUERY_NOT_SUPPORTED";

/// The `errors` list of a refusal: one error with its message and code.
pub fn errors(code: &str, message: &str) -> Value {
    json!([{ "message": message, "extensions": { "code": code } }])
}

/// A whole refusal body, serialized.
pub fn body(code: &str, message: &str) -> Vec<u8> {
    let body = json!({ "errors": errors(code, message) });
    serde_json::to_vec(&body).expect("a JSON value serializes")
}

/// A refusal outside GraphQL's media negotiation (the auth-event endpoint): `application/json`.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status, body(self.code, &self.message)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// The code and message of an answer with `status` that was made without one (a route that is
/// not there, a method it does not take, a panic caught): every error has the one body.
pub fn of_status(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::NOT_FOUND => (NOT_FOUND, "nothing is served at this address"),
        StatusCode::METHOD_NOT_ALLOWED => (BAD_REQUEST, "this address does not take that method"),
        StatusCode::PAYLOAD_TOO_LARGE => (BAD_REQUEST, "the request body is too large"),
        StatusCode::REQUEST_TIMEOUT => (BAD_REQUEST, "the request did not arrive in time"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (BAD_REQUEST, "this address does not take that media type")
        }
        StatusCode::UNAUTHORIZED => (UNAUTHENTICATED, "sign in first"),
        StatusCode::FORBIDDEN => (FORBIDDEN, "this is not yours to do"),
        StatusCode::TOO_MANY_REQUESTS => (RATE_LIMITED, "too many requests: slow down"),
        StatusCode::SERVICE_UNAVAILABLE => (SERVICE_UNAVAILABLE, "busy: try again in a moment"),
        status if status.is_server_error() => (INTERNAL_SERVER_ERROR, "something went wrong here"),
        _ => (BAD_REQUEST, "the request could not be understood"),
    }
}
