//! The ledger: applies task events to prices, accounts and the audit log, once each.

use std::collections::HashMap;

use ates_db::{Db, to_micros};
use ates_events::Contract;
use ates_events::outbox::{self, StoredEvent};
use ates_events::task::{TaskAssigned, TaskCompleted, TaskCreated};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::AnyConnection;

use crate::audit_log::{COLUMNS, LogRow};
use crate::{AccountingError, EntryKind, LogEntry, LogFilter, LogPage, Prices};

/// The name under which accounting records its progress through the outbox.
pub const CONSUMER: &str = "accounting";

/// Events read from the outbox per round trip while catching up.
const BATCH: i64 = 500;

#[derive(Clone)]
pub struct Ledger {
    db: Db,
}

impl Ledger {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Handles every outbox event past this consumer's offset, in outbox order, and returns how
    /// many it applied. Stops at the first event it cannot handle, leaving it for a retry.
    pub async fn catch_up(&self) -> Result<usize, AccountingError> {
        let mut applied = 0;
        loop {
            let offset = self.offset().await?;
            let mut conn = self.db.pool().acquire().await?;
            let events = outbox::read_after(&mut conn, offset, BATCH).await?;
            drop(conn);
            if events.is_empty() {
                return Ok(applied);
            }
            // Events accounting does not consume (its own payouts among them) only move the
            // offset, once per batch rather than a transaction each.
            let mut passed = None;
            for event in &events {
                if consumes(&event.event_type) {
                    if self.handle(event).await? {
                        applied += 1;
                    }
                } else {
                    passed = Some(event.seq);
                }
            }
            if let Some(seq) = passed {
                let mut conn = self.db.pool().acquire().await?;
                advance(&mut conn, seq).await?;
            }
        }
    }

    /// How far through the outbox this consumer is.
    pub async fn offset(&self) -> Result<i64, AccountingError> {
        Ok(outbox::offset(self.db.pool(), CONSUMER).await?)
    }

    /// Applies one event, unless it was applied before; returns whether it applied it. The
    /// record of handling, the effect and the offset commit together or not at all.
    pub async fn handle(&self, event: &StoredEvent) -> Result<bool, AccountingError> {
        let mut tx = self.db.begin_write().await?;
        let fresh = sqlx::query(
            "INSERT INTO handled_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(CONSUMER)
        .bind(event.id.clone())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if fresh {
            apply(&mut tx, event, self.db.now()).await?;
        }
        advance(&mut tx, event.seq).await?;
        tx.commit().await?;
        Ok(fresh)
    }

    /// Prices of the tasks that have them.
    pub async fn prices(
        &self,
        task_ids: &[String],
    ) -> Result<HashMap<String, Prices>, AccountingError> {
        let rows: Vec<(String, i64, i64)> = ates_db::fetch_in(
            self.db.pool(),
            "SELECT task_id, assign_fee, reward FROM task_prices WHERE task_id IN",
            task_ids,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|(task, assign_fee, reward)| (task, Prices { assign_fee, reward }))
            .collect())
    }

    /// A popug's balance; zero before its first movement.
    pub async fn balance(&self, popug_id: &str) -> Result<i64, AccountingError> {
        let mut conn = self.db.pool().acquire().await?;
        balance(&mut conn, popug_id).await
    }

    /// A page of the audit log, newest first unless asked otherwise.
    pub async fn log(
        &self,
        filter: &LogFilter,
        page: &LogPage,
    ) -> Result<(Vec<LogEntry>, bool), AccountingError> {
        let mut params = Params::default();
        let mut conditions: Vec<String> = Vec::new();
        if let Some(popug) = &filter.popug_id {
            conditions.push(format!("popug_id = {}", params.text(popug)));
        }
        if let Some(task) = &filter.task_id {
            conditions.push(format!("task_id = {}", params.text(task)));
        }
        if !filter.kinds.is_empty() {
            let kinds: Vec<String> = filter
                .kinds
                .iter()
                .map(|k| params.text(k.as_str()))
                .collect();
            conditions.push(format!("kind IN ({})", kinds.join(", ")));
        }
        if let Some(from) = filter.from {
            conditions.push(format!("logged_at >= {}", params.int(to_micros(from))));
        }
        if let Some(to) = filter.to {
            conditions.push(format!("logged_at < {}", params.int(to_micros(to))));
        }
        let (direction, beyond) = if page.oldest_first {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        };
        if let Some(after) = page.after {
            conditions.push(format!("seq {beyond} {}", params.int(after)));
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let limit = params.int(page.first as i64 + 1);
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log {filter_sql} ORDER BY seq {direction} LIMIT {limit}"
        );
        let mut query = sqlx::query_as::<_, LogRow>(sqlx::AssertSqlSafe(sql));
        for param in params.0 {
            query = match param {
                Param::Text(text) => query.bind(text),
                Param::Int(int) => query.bind(int),
            };
        }
        let mut rows: Vec<LogEntry> = query
            .fetch_all(self.db.pool())
            .await?
            .into_iter()
            .map(LogEntry::from)
            .collect();
        let has_next = rows.len() > page.first;
        rows.truncate(page.first);
        Ok((rows, has_next))
    }
}

enum Param {
    Text(String),
    Int(i64),
}

/// Parameters of a query built from optional conditions, numbered as they are added.
#[derive(Default)]
struct Params(Vec<Param>);

impl Params {
    fn push(&mut self, param: Param) -> String {
        self.0.push(param);
        format!("${}", self.0.len())
    }

    fn text(&mut self, value: &str) -> String {
        self.push(Param::Text(value.to_owned()))
    }

    fn int(&mut self, value: i64) -> String {
        self.push(Param::Int(value))
    }
}

async fn apply(
    conn: &mut AnyConnection,
    event: &StoredEvent,
    now: DateTime<Utc>,
) -> Result<(), AccountingError> {
    match event.event_type.as_str() {
        TaskCreated::TYPE => {
            let created: TaskCreated = read(event, TaskCreated::VERSION)?;
            let prices = Prices::draw(&mut rand::rng());
            sqlx::query(
                "INSERT INTO task_prices (task_id, assign_fee, reward, priced_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (task_id) DO NOTHING",
            )
            .bind(created.task_id.clone())
            .bind(prices.assign_fee)
            .bind(prices.reward)
            .bind(to_micros(now))
            .execute(&mut *conn)
            .await?;
            let balance = balance(conn, &created.created_by).await?;
            let entry = NewEntry {
                event_id: &event.id,
                kind: EntryKind::TaskCreated,
                amount: 0,
                balance_after: balance,
                task_id: &created.task_id,
                popug_id: &created.created_by,
            };
            entry.append(conn, now).await
        }
        TaskAssigned::TYPE => {
            let assigned: TaskAssigned = read(event, TaskAssigned::VERSION)?;
            let prices = prices_of(conn, &assigned.task_id).await?;
            let balance = move_money(conn, &assigned.assignee_id, -prices.assign_fee).await?;
            NewEntry {
                event_id: &event.id,
                kind: EntryKind::TaskAssigned,
                amount: -prices.assign_fee,
                balance_after: balance,
                task_id: &assigned.task_id,
                popug_id: &assigned.assignee_id,
            }
            .append(conn, now)
            .await
        }
        TaskCompleted::TYPE => {
            let completed: TaskCompleted = read(event, TaskCompleted::VERSION)?;
            let prices = prices_of(conn, &completed.task_id).await?;
            let balance = move_money(conn, &completed.completer_id, prices.reward).await?;
            NewEntry {
                event_id: &event.id,
                kind: EntryKind::TaskCompleted,
                amount: prices.reward,
                balance_after: balance,
                task_id: &completed.task_id,
                popug_id: &completed.completer_id,
            }
            .append(conn, now)
            .await
        }
        // Not an event accounting consumes.
        _ => Ok(()),
    }
}

/// Whether accounting does anything with events of this type.
fn consumes(event_type: &str) -> bool {
    [TaskCreated::TYPE, TaskAssigned::TYPE, TaskCompleted::TYPE].contains(&event_type)
}

/// Moves this consumer's offset forward to `seq`; never back.
async fn advance(conn: &mut AnyConnection, seq: i64) -> Result<(), AccountingError> {
    Ok(outbox::advance(&mut *conn, CONSUMER, seq).await?)
}

fn read<T: serde::de::DeserializeOwned>(
    event: &StoredEvent,
    version: i64,
) -> Result<T, AccountingError> {
    let unreadable = |reason: String| AccountingError::Unreadable {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        version: event.version,
        reason,
    };
    if event.version != version {
        return Err(unreadable(format!("only version {version} is understood")));
    }
    serde_json::from_value(Value::clone(&event.payload)).map_err(|e| unreadable(e.to_string()))
}

async fn prices_of(conn: &mut AnyConnection, task_id: &str) -> Result<Prices, AccountingError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT assign_fee, reward FROM task_prices WHERE task_id = $1")
            .bind(task_id.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
    let (assign_fee, reward) = row.ok_or_else(|| AccountingError::Unpriced(task_id.to_owned()))?;
    Ok(Prices { assign_fee, reward })
}

async fn balance(conn: &mut AnyConnection, popug_id: &str) -> Result<i64, AccountingError> {
    let balance: Option<i64> =
        sqlx::query_scalar("SELECT balance FROM accounts WHERE popug_id = $1")
            .bind(popug_id.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(balance.unwrap_or(0))
}

/// Adds `amount` (signed) to the popug's account, opening it on first use; the new balance.
async fn move_money(
    conn: &mut AnyConnection,
    popug_id: &str,
    amount: i64,
) -> Result<i64, AccountingError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO accounts (popug_id, balance) VALUES ($1, $2) \
         ON CONFLICT (popug_id) DO UPDATE SET balance = accounts.balance + excluded.balance \
         RETURNING balance",
    )
    .bind(popug_id.to_owned())
    .bind(amount)
    .fetch_one(&mut *conn)
    .await?)
}

struct NewEntry<'a> {
    event_id: &'a str,
    kind: EntryKind,
    amount: i64,
    balance_after: i64,
    task_id: &'a str,
    popug_id: &'a str,
}

impl NewEntry<'_> {
    async fn append(
        self,
        conn: &mut AnyConnection,
        logged_at: DateTime<Utc>,
    ) -> Result<(), AccountingError> {
        sqlx::query(
            "INSERT INTO audit_log (event_id, kind, amount, balance_after, task_id, popug_id, logged_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(self.event_id.to_owned())
        .bind(self.kind.as_str())
        .bind(self.amount)
        .bind(self.balance_after)
        .bind(self.task_id.to_owned())
        .bind(self.popug_id.to_owned())
        .bind(to_micros(logged_at))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
