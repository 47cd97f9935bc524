//! One query or mutation run to its answer, by either transport: the answer's status, the codes
//! of its errors and its body, serialized once; and the deadline it runs by.

use async_graphql::parser::types::Selection;
use axum::http::StatusCode;

use crate::api::shape;

use crate::refusal::{
    self, PARSE_FAILED, RATE_LIMITED, SERVICE_UNAVAILABLE, TIMEOUT, VALIDATION_FAILED,
};
use crate::state::AppState;

/// A GraphQL answer: its status, the codes of its errors, and its body, serialized once.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) codes: Vec<String>,
    pub(crate) body: Vec<u8>,
    /// The document failed before it could run (parse, validation, variables): its status
    /// depends on the media type.
    pub(crate) request_error: bool,
}

/// The body of a request that failed before it ran: errors only, no `data` key.
#[derive(serde::Serialize)]
struct Unrun<'a> {
    errors: &'a [async_graphql::ServerError],
}

impl Answer {
    /// A request that could not run, as a parse or validation failure: its status depends
    /// on the media type.
    pub(crate) fn request_error(code: &str, message: &str) -> Self {
        Self {
            request_error: true,
            ..Self::refused(StatusCode::BAD_REQUEST, code, message)
        }
    }

    /// A request refused before it ran: a GraphQL error body with a code.
    pub(crate) fn refused(status: StatusCode, code: &str, message: &str) -> Self {
        Self {
            status,
            codes: vec![code.to_owned()],
            body: refusal::body(code, message),
            request_error: false,
        }
    }
}

/// The answer to a request stopped at its deadline.
pub(crate) fn timed_out(app: &AppState) -> Answer {
    tracing::warn!(timeout = ?app.limits.request_timeout, "request timed out");
    Answer::refused(
        StatusCode::SERVICE_UNAVAILABLE,
        TIMEOUT,
        "the request took too long and was stopped",
    )
}

/// Executes a request that carries its session and loaders, by `deadline`.
pub(crate) async fn run_by(
    app: &AppState,
    request: async_graphql::Request,
    deadline: tokio::time::Instant,
) -> Answer {
    let Ok(response) = tokio::time::timeout_at(deadline, app.schema.execute(request)).await else {
        return timed_out(app);
    };
    let codes: Vec<String> = response
        .errors
        .iter()
        .map(
            |e| match e.extensions.as_ref().and_then(|x| x.get("code")) {
                Some(async_graphql::Value::String(code)) => code.clone(),
                _ => "UNKNOWN".to_owned(),
            },
        )
        .collect();
    let has = |code: &str| codes.iter().any(|c| c == code);
    let request_error = has(PARSE_FAILED) || has(VALIDATION_FAILED);
    let status = if request_error {
        StatusCode::BAD_REQUEST
    } else if response.data == async_graphql::Value::Null && has(SERVICE_UNAVAILABLE) {
        StatusCode::SERVICE_UNAVAILABLE
    } else if response.data == async_graphql::Value::Null && has(RATE_LIMITED) {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    };
    // Straight from the response to bytes: the keys keep the selection's order, as the
    // specification asks, and nothing is copied on the way.
    let body = if request_error {
        serde_json::to_vec(&Unrun {
            errors: &response.errors,
        })
    } else {
        serde_json::to_vec(&response)
    };
    Answer {
        status,
        codes,
        body: body.unwrap_or_else(|_| b"{}".to_vec()),
        request_error,
    }
}

/// The fields at the root of the operation the request would run; `None` when the document
/// does not parse, or its root spreads a fragment.
pub(crate) fn root_fields(request: &mut async_graphql::Request) -> Option<Vec<String>> {
    let name = request.operation_name.clone();
    shape::operation(request.parsed_query().ok()?, name.as_deref())?
        .selection_set
        .node
        .items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => Some(field.node.name.node.to_string()),
            _ => None,
        })
        .collect()
}
