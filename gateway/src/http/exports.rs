//! `GET /exports/audit-log.csv` and `GET /exports/daily-summaries.csv`: the audit log and the
//! company's days for spreadsheets, with the bearer token and the visibility of GraphQL.
//!
//! Both are RFC 4180 CSV with a header row and CRLF line ends. Amounts are bare integers;
//! every text field is quoted, and one that begins with `=`, `+`, `-`, `@`, a tab or a carriage
//! return is prefixed with `'`, so that a spreadsheet shows it instead of running it as a
//! formula. Times are RFC 3339 in UTC, beside the business day they fall in.
//!
//! The audit log goes out as the database sends it: one query, read a chunk at a time, each
//! chunk's task titles looked up in one more, so a year of the log never sits in memory. A
//! failure halfway aborts the response (the chunked body never ends), so a client cannot take
//! a cut-off file for a whole one.

use std::borrow::Cow;
use std::collections::HashMap;

use accounting_domain::{Calendar, DayFigures, DayRange, EntryKind, LogEntry, LogFilter};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, SecondsFormat};
use futures::{StreamExt as _, TryStreamExt as _};
use task_domain::{Permission, Popug, PopugId, TaskId};
use tokio::sync::OwnedSemaphorePermit;

use crate::api::ids::{Kind, key_of};
use crate::api::{ApiError, actor_of, may, money_scope};
use crate::refusal::Refusal;
use crate::state::AppState;

/// Log entries read, titled and written per chunk of the body.
const CHUNK: usize = 1000;

type Params = Vec<(String, String)>;

/// `GET /exports/audit-log.csv?from=…&to=…[&popugId=…][&kinds=…]`: the entries logged during
/// the business days `from` to `to`, oldest first; the caller's own, or anyone's (everyone's
/// without `popugId`) for admins and accountants. `kinds` is a comma-separated list, or repeated.
pub async fn audit_log(
    State(app): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    let start = async {
        let actor = signed_in(&app, &headers).await?;
        let params = Request::read(params, &["from", "to", "popugId", "kinds"])?;
        let range = params.range()?;
        let requested = match params.one("popugId") {
            Some(id) => Some(PopugId(key_of(Kind::Popug, id)?)),
            None => None,
        };
        let popug_id = money_scope(&actor, requested, "export another popug's log")?;
        let kinds = params.kinds()?;
        let permit = exporting(&app)?;
        let calendar = *app.services.payday.calendar();
        let filter = LogFilter {
            popug_id,
            task_id: None,
            kinds,
            from: Some(calendar.bounds(range.from()).0),
            to: Some(calendar.bounds(range.to()).1),
        };
        Ok::<_, ApiError>((range, filter, calendar, permit))
    };
    let (range, filter, calendar, permit) = match start.await {
        Ok(started) => started,
        Err(error) => return refuse(&error),
    };
    let entries = app.services.accounting.ledger().export(&filter);
    let tracker = app.services.tracker.clone();
    // While one chunk's titles are looked up, the next chunk is read: the log's query never
    // waits on the titles' round trip.
    let rows = entries
        .try_chunks(CHUNK)
        .map_err(|cut| ExportError::from(cut.1))
        .map_ok(move |chunk| {
            let tracker = tracker.clone();
            async move {
                let tasks = titles(&tracker, &chunk).await?;
                encode(|csv| {
                    chunk
                        .iter()
                        .try_for_each(|entry| write_entry(csv, entry, &calendar, &tasks))
                })
            }
        })
        .try_buffered(2);
    let body = futures::stream::once(async { Ok(header(&LOG_COLUMNS)) })
        .chain(rows)
        // Held until the body is sent or dropped: exports hold a connection while they run.
        .map(move |bytes| {
            let _held = &permit;
            bytes
        });
    let body = body.inspect_err(|error: &ExportError| {
        tracing::error!(error = %error, "audit log export cut short");
    });
    csv_response(
        &format!("audit-log-{}-{}.csv", range.from(), range.to()),
        Body::from_stream(body),
    )
}

/// `GET /exports/daily-summaries.csv?from=…&to=…`: the company's money per business day, for
/// admins and accountants.
pub async fn daily_summaries(
    State(app): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    let summaries = async {
        let actor = signed_in(&app, &headers).await?;
        may(&actor, Permission::KeepBooks, "export the daily figures")?;
        let range = Request::read(params, &["from", "to"])?.range()?;
        let days = app.services.figures.days(range).await?;
        Ok::<_, ApiError>((range, days))
    };
    let (range, days) = match summaries.await {
        Ok(found) => found,
        Err(error) => return refuse(&error),
    };
    match encode(|csv| days.iter().try_for_each(|day| write_day(csv, day))) {
        Ok(rows) => csv_response(
            &format!("daily-summaries-{}-{}.csv", range.from(), range.to()),
            Body::from([header(&DAY_COLUMNS), rows].concat()),
        ),
        Err(error) => refuse(&ApiError::internal(error)),
    }
}

const LOG_COLUMNS: [&str; 11] = [
    "seq",
    "logged_at",
    "business_day",
    "kind",
    "amount",
    "balance_after",
    "popug_id",
    "task_id",
    "task_key",
    "task_title",
    "event_id",
];

const DAY_COLUMNS: [&str; 8] = [
    "business_day",
    "closed",
    "fees_debited",
    "rewards_credited",
    "management_earnings",
    "payout_count",
    "paid_total",
    "negative_balance_count",
];

type Csv = csv::Writer<Vec<u8>>;

/// What stops an export once its body has begun.
type ExportError = Box<dyn std::error::Error + Send + Sync>;

/// The header row: plain names, which need no quotes.
fn header(columns: &[&str]) -> Bytes {
    Bytes::from(columns.join(",") + "\r\n")
}

/// Bytes of CSV written by `write`: numbers bare, text quoted.
fn encode(write: impl FnOnce(&mut Csv) -> csv::Result<()>) -> Result<Bytes, ExportError> {
    let mut csv = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::NonNumeric)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    write(&mut csv)?;
    Ok(Bytes::from(csv.into_inner().map_err(|e| e.into_error())?))
}

fn write_entry(
    csv: &mut Csv,
    entry: &LogEntry,
    calendar: &Calendar,
    tasks: &HashMap<TaskId, (Option<String>, String)>,
) -> csv::Result<()> {
    let task = entry.task_id.as_ref().and_then(|id| tasks.get(id));
    csv.write_record([
        entry.seq.to_string().as_str(),
        &entry.logged_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        &calendar.day_of(entry.logged_at).to_string(),
        entry.kind.as_str(),
        &entry.amount.to_string(),
        &entry.balance_after.to_string(),
        &text(&entry.popug_id.0),
        &text(entry.task_id.as_ref().map_or("", |id| id.0.as_str())),
        &text(task.and_then(|(key, _)| key.as_deref()).unwrap_or("")),
        &text(task.map_or("", |(_, title)| title.as_str())),
        &text(&entry.event_id),
    ])
}

fn write_day(csv: &mut Csv, day: &DayFigures) -> csv::Result<()> {
    csv.write_record([
        day.day.to_string(),
        day.closed.to_string(),
        day.moved.fees_debited.to_string(),
        day.moved.rewards_credited.to_string(),
        day.moved.management_earnings().to_string(),
        day.payout_count.to_string(),
        day.paid_total.to_string(),
        day.negative_count.to_string(),
    ])
}

/// A text field as a spreadsheet may safely read it: one that would start a formula gets a
/// leading `'`, which spreadsheets take as "this is text" (the field is quoted as well).
fn text(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// The tracker key and title of each task of `entries`, read in one query.
async fn titles(
    tracker: &task_domain::Tracker,
    entries: &[LogEntry],
) -> Result<HashMap<TaskId, (Option<String>, String)>, ExportError> {
    let mut ids: Vec<TaskId> = entries
        .iter()
        .filter_map(|entry| entry.task_id.clone())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(tracker
        .titles(&ids)
        .await?
        .into_iter()
        .map(|(id, key, title)| (id, (key, title)))
        .collect())
}

fn csv_response(filename: &str, body: Body) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// The popug of the request's bearer token.
async fn signed_in(app: &AppState, headers: &HeaderMap) -> Result<Popug, ApiError> {
    let session = app.sessions.of(headers).await;
    actor_of(Some(&session)).cloned()
}

/// A turn to export, if one is free: each running export holds a database connection.
fn exporting(app: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    app.exports
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable)
}

/// An export's query string: each name known, dates where dates belong.
struct Request(Params);

impl Request {
    fn read(
        params: Result<Query<Params>, QueryRejection>,
        known: &[&str],
    ) -> Result<Self, ApiError> {
        let Query(params) =
            params.map_err(|_| bad("the query string is not valid URL encoding"))?;
        if let Some((name, _)) = params
            .iter()
            .find(|(name, _)| !known.contains(&name.as_str()))
        {
            return Err(bad(format!(
                "unknown parameter {name}: an export takes {}",
                known.join(", ")
            )));
        }
        Ok(Self(params))
    }

    fn all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.all(name).last()
    }

    fn date(&self, name: &str) -> Result<NaiveDate, ApiError> {
        let value = self
            .one(name)
            .ok_or_else(|| bad(format!("{name} is required: a business day, YYYY-MM-DD")))?;
        value
            .parse()
            .map_err(|_| bad(format!("{name} is not a date (YYYY-MM-DD): {value}")))
    }

    /// `from` to `to`, both required, at most [`DayRange::MAX_DAYS`].
    fn range(&self) -> Result<DayRange, ApiError> {
        Ok(DayRange::new(self.date("from")?, self.date("to")?)?)
    }

    /// The kinds asked for; every kind when none is.
    fn kinds(&self) -> Result<Vec<EntryKind>, ApiError> {
        self.all("kinds")
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                EntryKind::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = EntryKind::ALL.iter().map(|k| k.as_str()).collect();
                    bad(format!("unknown kind {name}: one of {}", known.join(", ")))
                })
            })
            .collect()
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadUserInput(message.into())
}

/// A refusal in the usual JSON shape, with the status its code calls for.
fn refuse(error: &ApiError) -> Response {
    if let ApiError::Internal(cause) = error {
        tracing::error!(error = %cause, "export failed");
    }
    let status = match error {
        ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
        ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        ApiError::BadUserInput(_) => StatusCode::BAD_REQUEST,
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::Conflict(_) => StatusCode::CONFLICT,
        ApiError::Unavailable | ApiError::AccountingPending => StatusCode::SERVICE_UNAVAILABLE,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Refusal::new(status, error.code(), error.message()).into_response()
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn a_field_that_would_start_a_formula_is_defused() {
        for risky in ["=1+2", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"] {
            assert_eq!(text(risky), format!("'{risky}"));
        }
        for plain in ["POP-12", "Fix the nest", "", "a=b", "'quoted"] {
            assert_eq!(text(plain), plain);
        }
    }
}
