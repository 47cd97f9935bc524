//! Posting task events to the ledger, many at once: a few statements per batch, whatever its
//! size.
//!
//! A batch is applied in one transaction, in event order:
//! 1. one multi-row insert into `handled_events` tells which events are new (the others were
//!    applied before, by this consumer or by a producer that posted its own events);
//! 2. the new tasks of the batch are priced at once, and the prices of the other tasks the
//!    batch names are read in one query (none when each was created in the batch, as with
//!    `createTask`'s own events);
//! 3. the accounts touched are read (and locked) once, the running balance of each popug is
//!    carried through the events in order, and the log rows are written in one insert;
//! 4. each account touched is written once.

use std::collections::{HashMap, HashSet};

use ates_db::{Backend, Value, list_placeholders, to_micros};
use ates_events::Contract;
use ates_events::outbox::StoredEvent;
use ates_events::task::{TaskAssigned, TaskCompleted, TaskCreated};
use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use crate::{AccountingError, EntryKind, Prices};

/// The name under which accounting records what it handled and how far it is.
pub const CONSUMER: &str = "accounting";

/// Ids per `IN (…)` list: far below either backend's limit on parameters.
const IN_CHUNK: usize = 4_000;

/// What a task event asks of the ledger.
enum Movement {
    /// Price the task; log the creation (no money) against its creator.
    Created { task: String, creator: String },
    /// Debit the assignee the task's fee.
    Assigned { task: String, assignee: String },
    /// Credit the completer the task's reward.
    Completed { task: String, completer: String },
}

impl Movement {
    fn task(&self) -> &str {
        match self {
            Self::Created { task, .. }
            | Self::Assigned { task, .. }
            | Self::Completed { task, .. } => task,
        }
    }
}

/// An event, and what it asks of the ledger.
type Read<'a> = (&'a StoredEvent, Movement);

/// Whether accounting does anything with events of this type.
pub(crate) fn consumes(event_type: &str) -> bool {
    [TaskCreated::TYPE, TaskAssigned::TYPE, TaskCompleted::TYPE].contains(&event_type)
}

/// The movements of `events` that accounting consumes, in order, and how many of `events`
/// they cover: reading stops before the first event accounting cannot read. That event is
/// the error when nothing precedes it, so a consumer applies everything before a broken event
/// and then stops at it, rather than skip money.
fn movements(events: &[StoredEvent]) -> Result<(Vec<Read<'_>>, usize), AccountingError> {
    let mut read = Vec::new();
    let mut seen = HashSet::new();
    for (at, event) in events.iter().enumerate() {
        if !consumes(&event.event_type) || !seen.insert(event.id.as_str()) {
            continue;
        }
        let movement = match event.event_type.as_str() {
            TaskCreated::TYPE => decode::<TaskCreated>(event).map(|c| Movement::Created {
                task: c.task_id,
                creator: c.created_by,
            }),
            TaskAssigned::TYPE => decode::<TaskAssigned>(event).map(|a| Movement::Assigned {
                task: a.task_id,
                assignee: a.assignee_id,
            }),
            _ => decode::<TaskCompleted>(event).map(|c| Movement::Completed {
                task: c.task_id,
                completer: c.completer_id,
            }),
        };
        match movement {
            Ok(movement) => read.push((event, movement)),
            Err(error) if read.is_empty() => return Err(error),
            Err(_) => return Ok((read, at)),
        }
    }
    Ok((read, events.len()))
}

fn decode<C: Contract + serde::de::DeserializeOwned>(
    event: &StoredEvent,
) -> Result<C, AccountingError> {
    let unreadable = |reason: String| AccountingError::Unreadable {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        version: event.version,
        reason,
    };
    if event.version != C::VERSION {
        return Err(unreadable(format!(
            "only version {} is understood",
            C::VERSION
        )));
    }
    C::deserialize(&event.payload).map_err(|e| unreadable(e.to_string()))
}

/// Applies the events of `events` not applied before, in their order, inside the caller's
/// transaction; how many it applied. On PostgreSQL the caller holds the ledger lock.
///
/// Returns how many events it read as well: fewer than given when it stopped before an event
/// it cannot read.
pub(crate) async fn post(
    conn: &mut AnyConnection,
    events: &[StoredEvent],
    now: DateTime<Utc>,
    lock_rows: &str,
) -> Result<Posted, AccountingError> {
    let (movements, through) = movements(events)?;
    if movements.is_empty() {
        return Ok(Posted {
            applied: 0,
            through,
        });
    }

    // 1. Which events are new.
    let ids: Vec<Value> = movements
        .iter()
        .flat_map(|(event, _)| [Value::from(CONSUMER), Value::from(event.id.as_str())])
        .collect();
    let fresh: HashSet<String> = ates_db::insert_rows_returning(
        conn,
        "INSERT INTO handled_events (consumer, event_id) VALUES",
        "ON CONFLICT DO NOTHING RETURNING event_id",
        2,
        ids,
    )
    .await?
    .into_iter()
    .collect();
    let fresh: Vec<(&StoredEvent, &Movement)> = movements
        .iter()
        .filter(|(event, _)| fresh.contains(&event.id))
        .map(|(event, movement)| (*event, movement))
        .collect();
    if fresh.is_empty() {
        return Ok(Posted {
            applied: 0,
            through,
        });
    }

    // 2. Prices: drawn for the new tasks, read for every other task named.
    let at = to_micros(now);
    let mut prices: HashMap<String, Prices> = HashMap::new();
    let drawn: Vec<(&str, Prices)> = {
        let mut rng = rand::rng();
        fresh
            .iter()
            .filter(|(_, m)| matches!(m, Movement::Created { .. }))
            .map(|(_, m)| (m.task(), Prices::draw(&mut rng)))
            .collect()
    };
    if !drawn.is_empty() {
        let rows: Vec<Value> = drawn
            .iter()
            .flat_map(|(task, p)| {
                [
                    Value::from(*task),
                    p.assign_fee.into(),
                    p.reward.into(),
                    at.into(),
                ]
            })
            .collect();
        // The tasks priced now; one priced before keeps its prices, read below.
        let priced_now: HashSet<String> = ates_db::insert_rows_returning(
            conn,
            "INSERT INTO task_prices (task_id, assign_fee, reward, priced_at) VALUES",
            "ON CONFLICT (task_id) DO NOTHING RETURNING task_id",
            4,
            rows,
        )
        .await?
        .into_iter()
        .collect();
        prices.extend(
            drawn
                .into_iter()
                .filter(|(task, _)| priced_now.contains(*task))
                .map(|(task, p)| (task.to_owned(), p)),
        );
    }
    let unknown: Vec<&str> = fresh
        .iter()
        .filter(|(_, m)| !matches!(m, Movement::Created { .. }))
        .map(|(_, m)| m.task())
        .filter(|task| !prices.contains_key(*task))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    prices.extend(prices_in(conn, &unknown).await?);

    // 3. The accounts touched, read once and locked until commit, then carried through.
    let popugs: Vec<&str> = fresh
        .iter()
        .map(|(_, m)| match m {
            Movement::Created { creator, .. } => creator.as_str(),
            Movement::Assigned { assignee, .. } => assignee.as_str(),
            Movement::Completed { completer, .. } => completer.as_str(),
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut balances = balances_in(conn, &popugs, lock_rows).await?;
    let mut moved: HashMap<&str, i64> = HashMap::new();
    let mut entries = Vec::with_capacity(fresh.len() * 7);
    for (event, movement) in &fresh {
        let (kind, popug, amount) = match movement {
            Movement::Created { creator, .. } => (EntryKind::TaskCreated, creator, 0),
            Movement::Assigned { task, assignee } => {
                let fee = prices
                    .get(task.as_str())
                    .ok_or_else(|| AccountingError::Unpriced(task.clone()))?
                    .assign_fee;
                (EntryKind::TaskAssigned, assignee, -fee)
            }
            Movement::Completed { task, completer } => {
                let reward = prices
                    .get(task.as_str())
                    .ok_or_else(|| AccountingError::Unpriced(task.clone()))?
                    .reward;
                (EntryKind::TaskCompleted, completer, reward)
            }
        };
        let balance = balances.entry(popug.clone()).or_insert(0);
        *balance += amount;
        if kind != EntryKind::TaskCreated {
            *moved.entry(popug.as_str()).or_insert(0) += amount;
        }
        entries.extend([
            Value::from(event.id.as_str()),
            kind.as_str().into(),
            amount.into(),
            (*balance).into(),
            movement.task().into(),
            popug.as_str().into(),
            at.into(),
        ]);
    }
    crate::audit_log::append(conn, entries).await?;

    // 4. Each account moved, written once (by its change: a payout may not have run between
    // the read and here, since the rows are locked, but adding keeps it right regardless).
    let mut moves: Vec<(&str, i64)> = moved.into_iter().collect();
    moves.sort_unstable();
    let moves: Vec<Value> = moves
        .into_iter()
        .flat_map(|(popug, amount)| [Value::from(popug), amount.into()])
        .collect();
    move_balances(conn, moves).await?;
    Ok(Posted {
        applied: fresh.len(),
        through,
    })
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Posted {
    /// Events applied now (not before).
    pub applied: usize,
    /// How many of the given events are done with: all, unless one could not be read.
    pub through: usize,
}

/// The prices of these tasks, those that have them.
async fn prices_in(
    conn: &mut AnyConnection,
    tasks: &[&str],
) -> Result<HashMap<String, Prices>, AccountingError> {
    let mut found = HashMap::with_capacity(tasks.len());
    for chunk in tasks.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT task_id, assign_fee, reward FROM task_prices WHERE task_id IN ({})",
            list_placeholders(Backend::of(conn), chunk.len())
        );
        let rows: Vec<(String, i64, i64)> = ates_db::bind_all_as(
            sqlx::query_as(sqlx::AssertSqlSafe(sql)),
            chunk.iter().map(|t| Value::from(*t)),
        )
        .fetch_all(&mut *conn)
        .await?;
        found.extend(
            rows.into_iter()
                .map(|(task, assign_fee, reward)| (task, Prices { assign_fee, reward })),
        );
    }
    Ok(found)
}

/// The balances of these popugs (absent: no account yet), locked in id order where the
/// backend has row locks, so that two writers of accounts never wait for each other in a
/// circle.
async fn balances_in(
    conn: &mut AnyConnection,
    popugs: &[&str],
    lock_rows: &str,
) -> Result<HashMap<String, i64>, AccountingError> {
    let mut sorted = popugs.to_vec();
    sorted.sort_unstable();
    let mut found = HashMap::with_capacity(sorted.len());
    for chunk in sorted.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT popug_id, balance FROM accounts WHERE popug_id IN ({}) ORDER BY popug_id{lock_rows}",
            list_placeholders(Backend::of(conn), chunk.len())
        );
        let rows: Vec<(String, i64)> = ates_db::bind_all_as(
            sqlx::query_as(sqlx::AssertSqlSafe(sql)),
            chunk.iter().map(|p| Value::from(*p)),
        )
        .fetch_all(&mut *conn)
        .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Adds to balances, two values each (popug id, amount), opening the accounts not seen yet.
/// The one way a balance changes.
pub(crate) async fn move_balances(
    conn: &mut AnyConnection,
    moves: Vec<Value>,
) -> Result<(), sqlx::Error> {
    if moves.is_empty() {
        return Ok(());
    }
    ates_db::insert_rows(
        conn,
        "INSERT INTO accounts (popug_id, balance) VALUES",
        "ON CONFLICT (popug_id) DO UPDATE SET balance = accounts.balance + excluded.balance",
        2,
        moves,
    )
    .await?;
    Ok(())
}
