//! Reading a GraphQL request: the request object the specification describes, its persisted
//! query when it sends a hash instead of a text.

use axum::http::StatusCode;
use serde_json::Value;

use super::Answer;
use crate::nesting;
use crate::persisted::{PersistedQueries, Unpersisted};
use crate::refusal::{
    BAD_REQUEST, PARSE_FAILED, PERSISTED_QUERY_NOT_FOUND, PERSISTED_QUERY_NOT_SUPPORTED,
};

/// A request object as the specification has it: `query` a string; `variables`,
/// `operationName` and `extensions` optional. With a `persistedQuery` extension the query may
/// be left out, and is taken from the persisted ones by its hash.
pub(super) fn graphql_request(
    persisted: &PersistedQueries,
    value: Value,
) -> Result<async_graphql::Request, Answer> {
    let malformed = |message: &str| Answer::refused(StatusCode::BAD_REQUEST, BAD_REQUEST, message);
    let Value::Object(mut object) = value else {
        return Err(malformed("a request is a JSON object with a query"));
    };
    if let Some(extension) = object
        .get("extensions")
        .and_then(|extensions| extensions.get("persistedQuery"))
    {
        let query = match object.get("query") {
            None | Some(Value::Null) => None,
            Some(Value::String(query)) => Some(query.as_str()),
            Some(_) => return Err(malformed("the query must be a string")),
        };
        let text = persisted.resolve(extension, query).map_err(|unpersisted| {
            match unpersisted {
                // The protocol's own words, which the clients look for.
                Unpersisted::NotFound => {
                    Answer::request_error(PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound")
                }
                Unpersisted::NotSupported => Answer::request_error(
                    PERSISTED_QUERY_NOT_SUPPORTED,
                    "PersistedQueryNotSupported",
                ),
                Unpersisted::Refused(message) => malformed(&message),
            }
        })?;
        object.insert("query".into(), Value::String(text.to_string()));
    }
    match object.get("query") {
        // Measured before anything parses it: a parser would follow its nesting down the stack.
        Some(Value::String(query)) => {
            if let Err(too_deep) = nesting::check(query, nesting::MAX_NESTING) {
                return Err(Answer::request_error(PARSE_FAILED, &too_deep.to_string()));
            }
        }
        _ => return Err(malformed("the request has no query string")),
    }
    if !matches!(
        object.get("variables"),
        None | Some(Value::Null | Value::Object(_))
    ) {
        return Err(malformed("variables must be an object"));
    }
    if !matches!(
        object.get("operationName"),
        None | Some(Value::Null | Value::String(_))
    ) {
        return Err(malformed("operationName must be a string"));
    }
    serde_json::from_value(Value::Object(object)).map_err(|_| malformed("the request is malformed"))
}
