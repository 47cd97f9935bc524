//! `GET /metrics`: Prometheus text, rendered by `metrics-exporter-prometheus`.
//!
//! Request counters, latency histograms, error codes and socket gauges are recorded as things
//! happen; the figures that live in the database (the outbox backlog, the accounting lag,
//! payouts by status) and the pool's use are read when Prometheus scrapes.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ates_db::Db;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::app::AppState;

pub const REQUESTS: &str = "ates_graphql_requests_total";
pub const DURATION: &str = "ates_graphql_request_duration_seconds";
pub const ERRORS: &str = "ates_graphql_errors_total";
pub const SOCKETS: &str = "ates_websockets_open";
pub const SUBSCRIPTIONS: &str = "ates_subscriptions_active";

/// Distinct operation names kept as labels; later ones count as `other`, so a client sending
/// made-up names cannot grow the series without bound.
const MAX_OPERATIONS: usize = 200;
const MAX_OPERATION_CHARS: usize = 64;

/// The process's recorder: one per process, shared by every gateway in it (tests run many).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(DURATION.to_owned()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ],
            )
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder installed first (an embedding program's) keeps its place; ours
        // then renders what it records, which is nothing.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// The label of an operation name: as sent when short and plain, else `other`.
fn operation_label(name: Option<&str>) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let Some(name) = name else {
        return "anonymous".into();
    };
    let plain = !name.is_empty()
        && name.len() <= MAX_OPERATION_CHARS
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return "other".into();
    }
    let mut seen = SEEN
        .get_or_init(Mutex::default)
        .lock()
        .expect("the set of names is never poisoned");
    if seen.contains(name) || seen.len() < MAX_OPERATIONS {
        seen.insert(name.to_owned());
        name.to_owned()
    } else {
        "other".into()
    }
}

/// The name of a document's first operation, read from its text without parsing it (for
/// requests that name their operation in the query only): `query MyTasks { … }` → `MyTasks`.
pub fn leading_operation_name(query: &str) -> Option<&str> {
    let mut rest = query.trim_start();
    while let Some(comment) = rest.strip_prefix('#') {
        rest = comment
            .split_once('\n')
            .map_or("", |(_, after)| after)
            .trim_start();
    }
    let rest = ["query", "mutation", "subscription"]
        .iter()
        .find_map(|keyword| rest.strip_prefix(keyword))?;
    let name = rest.trim_start();
    if name.len() == rest.len() {
        return None; // `queryX`: not a keyword
    }
    let end = name
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(name.len());
    (end > 0).then(|| &name[..end])
}

/// Records one GraphQL request over HTTP from its answer.
pub fn record_request(
    operation: Option<&str>,
    status: StatusCode,
    codes: &[String],
    took: Duration,
) {
    let operation = operation_label(operation);
    let outcome = if !status.is_success() {
        "refused"
    } else if codes.is_empty() {
        "ok"
    } else {
        "error"
    };
    counter!(REQUESTS, "operation" => operation.clone(), "outcome" => outcome).increment(1);
    histogram!(DURATION, "operation" => operation).record(took.as_secs_f64());
    for code in codes {
        counter!(ERRORS, "code" => code.clone()).increment(1);
    }
}

/// Counts one thing (a socket, a subscription) in a gauge for as long as it lives.
pub struct Held(&'static str);

impl Held {
    pub fn new(gauge: &'static str) -> Self {
        gauge!(gauge).increment(1.0);
        Self(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        gauge!(self.0).decrement(1.0);
    }
}

/// Sets the gauges read from the database. A consumer's backlog is the outbox past its offset,
/// and its age that of the oldest event it has not handled.
async fn read_database(db: &Db, relay: bool) -> Result<(), sqlx::Error> {
    let pool = db.pool();
    gauge!("ates_db_pool_connections").set(f64::from(pool.size()));
    gauge!("ates_db_pool_idle_connections").set(pool.num_idle() as f64);
    let mut consumers = vec!["accounting"];
    if relay {
        consumers.push(crate::nats::RELAY);
    }
    let now = db.now();
    for consumer in consumers {
        let offset = ates_events::outbox::offset(pool, consumer).await?;
        let (waiting, oldest) =
            ates_events::outbox::backlog(&mut *pool.acquire().await?, offset).await?;
        let age = oldest.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        gauge!("ates_outbox_waiting_events", "consumer" => consumer).set(waiting as f64);
        gauge!("ates_outbox_oldest_waiting_seconds", "consumer" => consumer).set(age);
    }
    let payouts: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM payouts GROUP BY status")
            .fetch_all(pool)
            .await?;
    for status in ["PENDING", "PAID", "FAILED"] {
        let count = payouts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        gauge!("ates_payouts", "status" => status).set(count as f64);
    }
    Ok(())
}

/// `GET /metrics`.
pub async fn scrape(State(app): State<AppState>) -> Response {
    let up = match read_database(app.db(), app.relays()).await {
        Ok(()) => 1.0,
        Err(error) => {
            tracing::warn!(%error, "metrics: the database does not answer");
            0.0
        }
    };
    gauge!("ates_database_up").set(up);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle().render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_read_from_the_text() {
        assert_eq!(
            leading_operation_name("query MyTasks { me { id } }"),
            Some("MyTasks")
        );
        assert_eq!(
            leading_operation_name("# hi\n mutation Go($a: ID) { x }"),
            Some("Go")
        );
        assert_eq!(leading_operation_name("{ me { id } }"), None);
        assert_eq!(leading_operation_name("query { me { id } }"), None);
        assert_eq!(leading_operation_name("queryX { a }"), None);
    }

    #[test]
    fn operation_labels_are_bounded() {
        assert_eq!(operation_label(None), "anonymous");
        assert_eq!(operation_label(Some("MyTasks")), "MyTasks");
        assert_eq!(operation_label(Some("bad name\n")), "other");
        assert_eq!(operation_label(Some(&"x".repeat(65))), "other");
        for i in 0..MAX_OPERATIONS + 10 {
            operation_label(Some(&format!("op{i}")));
        }
        assert_eq!(operation_label(Some("a_new_one_after_the_cap")), "other");
        assert_eq!(operation_label(Some("MyTasks")), "MyTasks");
    }
}
