//! What `GET /metrics` shows: Prometheus text, rendered by `metrics-exporter-prometheus`.
//!
//! Request counters, latency histograms, error codes and socket gauges are recorded as things
//! happen; the figures that live in the database (the outbox backlog, the accounting lag,
//! payouts by status) and the pool's use are read when Prometheus scrapes.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::http::StatusCode;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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

/// What the database holds, read when Prometheus scrapes.
pub struct DatabaseFigures<'a> {
    /// Connections of the pool, and how many of them are idle.
    pub pool: (u32, usize),
    /// Per consumer of the outbox: events waiting, and the age of the oldest.
    pub backlogs: Vec<(&'a str, i64, Duration)>,
    /// Payouts per status.
    pub payouts: Vec<(&'static str, i64)>,
}

/// Sets `ates_ledger_invariant_violations` after a check of the ledger: 0 while it holds.
pub fn record_ledger_check(violations: i64) {
    gauge!("ates_ledger_invariant_violations").set(violations as f64);
}

/// Sets the gauges of the database: its figures, or `ates_database_up` 0 when it did not
/// answer.
pub fn record_database(figures: Option<&DatabaseFigures<'_>>) {
    gauge!("ates_database_up").set(if figures.is_some() { 1.0 } else { 0.0 });
    let Some(figures) = figures else {
        return;
    };
    let (size, idle) = figures.pool;
    gauge!("ates_db_pool_connections").set(f64::from(size));
    gauge!("ates_db_pool_idle_connections").set(idle as f64);
    for (consumer, waiting, age) in &figures.backlogs {
        let consumer = (*consumer).to_owned();
        gauge!("ates_outbox_waiting_events", "consumer" => consumer.clone()).set(*waiting as f64);
        gauge!("ates_outbox_oldest_waiting_seconds", "consumer" => consumer).set(age.as_secs_f64());
    }
    for (status, count) in &figures.payouts {
        gauge!("ates_payouts", "status" => *status).set(*count as f64);
    }
}

/// The text Prometheus scrapes.
pub fn render() -> String {
    handle().render()
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
