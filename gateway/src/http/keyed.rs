//! Mutations sent with an `Idempotency-Key`: run at most once per popug and key, and answered
//! again, byte for byte, when sent again. The model is Stripe's.
//!
//! - The key is claimed before the mutation runs, so a second request with it waits for
//!   nothing: while the first runs it gets 409 `CONFLICT`, afterwards the first answer.
//! - The same key with another request (document, operation name or variables) gets 422
//!   `IDEMPOTENCY_KEY_REUSED` and changes nothing.
//! - A run that died before its answer was kept (a crash, a timeout) holds the key until its
//!   lease ends; a retry then runs again where that cannot make a second effect: `createTask`
//!   finds the task the first run made (its id is the key's), and completing, closing a day,
//!   retrying a payout and replaying a dead letter cannot take effect twice. A shuffle is never
//!   run again under its key.
//! - Answers that say "try again" (503: busy, timed out) are not kept, so a retry runs.
//! - Keys are kept for `ATES_IDEMPOTENCY_KEEP_SECS` (24 h), then swept.
//! - Over HTTP the key is the `Idempotency-Key` header; over a WebSocket, the operation's
//!   `extensions.idempotencyKey`. Both share one store: a retry may come by either.

use ates_db::idempotency::{self, Claimed, Key, Terms};
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest as _, Sha256};

use super::answer::{Answer, root_fields, run_by};
use crate::api::Keyed;
use crate::refusal::{
    CONFLICT, IDEMPOTENCY_KEY_REUSED, INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE,
};
use crate::state::AppState;

/// The header, as Stripe and the IETF draft name it.
pub(super) const HEADER: &str = "idempotency-key";

/// Mutations a retry may run again after a run that died: each either finds the first run's
/// effect or cannot take effect twice.
const RESUMABLE: &[&str] = &[
    "createTask",
    "completeTask",
    "closeDay",
    "retryPayout",
    "replayDeadLetter",
];

/// The request's `Idempotency-Key`, if it sent one: 1 to 255 printable ASCII characters.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    checked(value.to_str().map_err(|_| BAD_KEY)?).map(Some)
}

/// The key a WebSocket operation carries as its `extensions.idempotencyKey`, held to the rule
/// of the header.
pub(super) fn idempotency_key_of(
    payload: &serde_json::Value,
) -> Result<Option<String>, &'static str> {
    match payload.get("extensions").and_then(|e| e.get(EXTENSION)) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(key)) => checked(key).map(Some),
        Some(_) => Err(BAD_KEY),
    }
}

/// Where a WebSocket operation carries its key.
const EXTENSION: &str = "idempotencyKey";

const BAD_KEY: &str = "an Idempotency-Key is 1 to 255 printable ASCII characters";

fn checked(key: &str) -> Result<String, &'static str> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(BAD_KEY);
    }
    Ok(key.to_owned())
}

/// Runs a mutation under `key` of `popug`'s, or answers for the run that holds the key.
pub(super) async fn run(
    app: &AppState,
    popug: &str,
    key: &str,
    mut request: async_graphql::Request,
    deadline: tokio::time::Instant,
) -> Answer {
    let fingerprint = fingerprint(&request);
    let may_resume = root_fields(&mut request)
        .is_some_and(|fields| fields.iter().all(|f| RESUMABLE.contains(&f.as_str())));
    let key = Key {
        popug,
        key,
        fingerprint: &fingerprint,
    };
    let terms = Terms {
        keep: chrono::Duration::from_std(app.limits.idempotency_keep).unwrap_or_default(),
        // No run lasts longer than the request timeout; a little more covers keeping its answer.
        lease: chrono::Duration::from_std(app.limits.request_timeout).unwrap_or_default()
            + chrono::Duration::seconds(5),
        may_resume,
    };
    let claimed = match idempotency::claim(&app.db, key, app.db.now(), terms).await {
        Ok(claimed) => claimed,
        Err(error) => return unavailable(&error),
    };
    match claimed {
        Claimed::Reused => Answer::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was sent before with another request (document, operation \
             name or variables): send a new key with a new request",
        ),
        Claimed::Running => Answer::refused(
            StatusCode::CONFLICT,
            CONFLICT,
            "a request with this Idempotency-Key is still running: wait for its answer, then \
             send it again",
        ),
        Claimed::Answered {
            status,
            body,
            request_error,
        } => Answer {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            codes: codes_of(&body),
            body: body.into_bytes(),
            request_error,
        },
        Claimed::Run {
            claimed_at,
            resumed,
        } => {
            if resumed {
                tracing::info!("an earlier run under this idempotency key died: running it again");
            }
            let keyed = Keyed {
                key: key.key.to_owned(),
                claimed_at,
            };
            let answer = run_by(app, request.data(keyed), deadline).await;
            let kept = if answer.status == StatusCode::SERVICE_UNAVAILABLE {
                idempotency::abandon(&app.db, key).await
            } else {
                let body = String::from_utf8_lossy(&answer.body);
                idempotency::answer(
                    &app.db,
                    key,
                    answer.status.as_u16(),
                    &body,
                    answer.request_error,
                )
                .await
            };
            if let Err(error) = kept {
                // The client still gets its answer; the key stays running until its lease
                // ends, and a retry then finds the effect.
                tracing::error!(%error, "the answer of an idempotent request was not kept");
            }
            answer
        }
    }
}

/// What makes two requests the same request: the document, the operation name and the
/// variables.
fn fingerprint(request: &async_graphql::Request) -> String {
    let variables = serde_json::to_string(&request.variables).unwrap_or_default();
    let mut hash = Sha256::new();
    for part in [
        request.query.as_str(),
        request.operation_name.as_deref().unwrap_or(""),
        &variables,
    ] {
        hash.update(part.len().to_be_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// The codes of a kept answer's errors, for the metrics.
fn codes_of(body: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    value["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["extensions"]["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn unavailable(error: &ates_db::SqlError) -> Answer {
    if ates_db::is_busy(error) {
        Answer::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVICE_UNAVAILABLE,
            "the service is busy: try again in a moment",
        )
    } else {
        tracing::error!(%error, "an idempotency key could not be read");
        Answer::refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        )
    }
}
