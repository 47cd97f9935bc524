//! The ledger: applies task events to prices, accounts and the audit log, once each, many
//! at a time.

use std::collections::HashMap;

use ates_db::{Backend, Conditions, Db, Lock, Order, Page, PageRequest, Value, to_micros};
use ates_events::ids::{PopugId, TaskId};
use ates_events::outbox::{self, Position, StoredEvent};
use futures::TryStreamExt as _;
use futures::stream::BoxStream;
use sqlx::AnyConnection;

use crate::audit_log::{COLUMNS, LogRow};
use crate::posting::{self, CONSUMER};
use crate::{AccountingError, EntryKind, LogEntry, LogFilter, Prices};

/// How long [`Ledger::catch_up`] waits for events that an older, still running transaction
/// holds back.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What one step of the consumer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Events applied (not applied before).
    pub applied: usize,
    /// The consumer's offset after the step.
    pub offset: Position,
    /// Whether the step read a full batch, so more may be waiting.
    pub more: bool,
}

#[derive(Clone)]
pub struct Ledger {
    db: Db,
    batch: i64,
}

impl Ledger {
    pub fn new(db: Db) -> Self {
        // A batch holds the posting lock (PostgreSQL) or the one writer's turn (SQLite) until
        // it commits, and a mutation posting its own events waits for it: small batches keep
        // that wait short. On PostgreSQL 2,000 events apply as fast per event as 5,000 (about
        // 23,000 a second, `bench_ledger`) and hold the lock under 0.1 s.
        let batch = match db.backend() {
            Backend::Postgres => 2_000,
            Backend::Sqlite => 1_000,
        };
        Self { db, batch }
    }

    /// Events read per transaction.
    pub fn with_batch(mut self, batch: i64) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Handles every outbox event committed before the call, in outbox order, and returns how
    /// many it applied. Stops at the first event it cannot handle, leaving it for a retry.
    /// Events behind a transaction still running elsewhere are waited for, up to a bound.
    pub async fn catch_up(&self) -> Result<usize, AccountingError> {
        let target = {
            let mut conn = self.db.pool().acquire().await?;
            outbox::last(&mut conn).await?
        };
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        let mut applied = 0;
        loop {
            let progress = self.step().await?;
            applied += progress.applied;
            if progress.more {
                continue;
            }
            if progress.offset >= target || tokio::time::Instant::now() > deadline {
                return Ok(applied);
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Applies the next batch of the outbox past this consumer's offset, in one transaction
    /// with the offset's move.
    pub async fn step(&self) -> Result<Progress, AccountingError> {
        let mut tx = self.db.begin_write().await?;
        self.lock(&mut tx).await?;
        let offset = outbox::offset(&mut *tx, CONSUMER).await?;
        let events = outbox::read_after(&mut tx, offset, self.batch).await?;
        if events.is_empty() {
            tx.rollback().await?;
            return Ok(Progress {
                applied: 0,
                offset,
                more: false,
            });
        }
        let posted = posting::post(&mut tx, &events, self.db.now(), self.db.lock_rows()).await?;
        let done = &events[..posted.through];
        let offset = outbox::last_position(done).unwrap_or(offset);
        outbox::advance(&mut *tx, CONSUMER, offset).await?;
        tx.commit().await?;
        if posted.through < events.len() {
            // Stopped before an event it cannot read: the next step reports it.
            return Ok(Progress {
                applied: posted.applied,
                offset,
                more: true,
            });
        }
        Ok(Progress {
            applied: posted.applied,
            offset,
            more: events.len() as i64 == self.batch,
        })
    }

    /// How far through the outbox this consumer is.
    pub async fn offset(&self) -> Result<Position, AccountingError> {
        Ok(outbox::offset(self.db.pool(), CONSUMER).await?)
    }

    /// The position of the last event the consumer may take now.
    pub async fn outbox_end(&self) -> Result<Position, AccountingError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(outbox::end(&mut conn).await?)
    }

    /// Applies those of `events` not applied yet, now, without moving the consumer's offset:
    /// for a producer that wants its own events in the ledger before it answers, while the
    /// consumer is busy with older ones. The consumer finds them handled when it gets there.
    /// How many it applied.
    pub async fn post_now(&self, events: &[StoredEvent]) -> Result<usize, AccountingError> {
        let mut tx = self.db.begin_write().await?;
        self.lock(&mut tx).await?;
        let posted = posting::post(&mut tx, events, self.db.now(), self.db.lock_rows()).await?;
        if posted.through < events.len() {
            // Not a batch to apply in part: the caller asked for all of it.
            let (_, stopped) = events.split_at(posted.through);
            tx.rollback().await?;
            return Err(AccountingError::Unreadable {
                id: stopped[0].id.clone(),
                event_type: stopped[0].event_type.clone(),
                version: stopped[0].version,
                reason: "the event cannot be read".into(),
            });
        }
        tx.commit().await?;
        Ok(posted.applied)
    }

    /// Applies one event, unless it was applied before; whether it applied it.
    pub async fn handle(&self, event: &StoredEvent) -> Result<bool, AccountingError> {
        Ok(self.post_now(std::slice::from_ref(event)).await? == 1)
    }

    /// One posting transaction at a time, across replicas (see [`Lock::Posting`]).
    async fn lock(&self, conn: &mut AnyConnection) -> Result<(), AccountingError> {
        Ok(self.db.lock_transaction(conn, Lock::Posting).await?)
    }

    /// Prices of the tasks that have them.
    pub async fn prices(
        &self,
        task_ids: &[TaskId],
    ) -> Result<HashMap<TaskId, Prices>, AccountingError> {
        let keys: Vec<String> = task_ids.iter().map(|id| id.0.clone()).collect();
        let rows: Vec<(String, i64, i64)> = ates_db::fetch_in(
            &self.db,
            "SELECT task_id, assign_fee, reward FROM task_prices WHERE task_id IN",
            &keys,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|(task, assign_fee, reward)| (TaskId(task), Prices { assign_fee, reward }))
            .collect())
    }

    /// The last `moves` assignments and completions of each of `task_ids`, oldest first, with
    /// the move before them when there is one (so a reader can tell who held the task before
    /// the first of them): at most `moves + 1` entries a task, in one query that the index on
    /// `(task_id, seq)` serves, however long the histories have grown.
    ///
    /// The query asks for one entry more of every kind instead of filtering on `kind`: a task
    /// has one entry that is not a move (its creation), and a filter on `kind` let PostgreSQL,
    /// with statistics taken while the log was small, intersect the index on `kind` (every
    /// move of every task) with the one on `task_id`: 10 to 20 ms for a page's histories
    /// instead of one.
    pub async fn histories(
        &self,
        task_ids: &[TaskId],
        moves: usize,
    ) -> Result<HashMap<TaskId, Vec<LogEntry>>, AccountingError> {
        if task_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let kept = moves.saturating_add(1);
        let keys = task_ids.iter().map(|id| Value::Text(id.0.clone()));
        let sql = format!(
            "SELECT {COLUMNS} FROM ( \
               SELECT {COLUMNS}, ROW_NUMBER() OVER (PARTITION BY task_id ORDER BY seq DESC) AS nth \
               FROM audit_log WHERE task_id IN ({}) \
             ) recent WHERE nth <= {}",
            ates_db::list_placeholders(self.db.backend(), task_ids.len()),
            kept.saturating_add(1),
        );
        let mut rows: Vec<LogRow> =
            ates_db::bind_all_as(sqlx::query_as(sqlx::AssertSqlSafe(sql)), keys)
                .fetch_all(self.db.pool())
                .await?;
        rows.sort_by_key(|row| row.seq());
        let mut histories: HashMap<TaskId, Vec<LogEntry>> = HashMap::new();
        for entry in rows.into_iter().map(LogEntry::from) {
            let is_move = matches!(
                entry.kind,
                EntryKind::TaskAssigned | EntryKind::TaskCompleted
            );
            if let (true, Some(task)) = (is_move, entry.task_id.clone()) {
                histories.entry(task).or_default().push(entry);
            }
        }
        for entries in histories.values_mut() {
            let surplus = entries.len().saturating_sub(kept);
            entries.drain(..surplus);
        }
        Ok(histories)
    }

    /// A popug's balance; zero before its first movement.
    pub async fn balance(&self, popug: &PopugId) -> Result<i64, AccountingError> {
        let mut conn = self.db.pool().acquire().await?;
        balance(&mut conn, popug.as_str()).await
    }

    /// A page of the log, newest first or oldest first; the cursor is an entry's `seq`.
    pub async fn log(
        &self,
        filter: &LogFilter,
        page: &PageRequest,
        oldest_first: bool,
    ) -> Result<Page<LogEntry>, AccountingError> {
        let after = match &page.after {
            None => None,
            Some(cursor) => Some(
                cursor
                    .parse::<i64>()
                    .map_err(|_| AccountingError::BadCursor)?,
            ),
        };
        let order = Order {
            column: "seq",
            descending: !oldest_first,
        };
        let rows: Page<LogRow> = ates_db::read_page(
            &self.db,
            COLUMNS,
            "audit_log",
            log_conditions(filter),
            order,
            page,
            after.map(Value::Int),
        )
        .await?;
        Ok(rows.map(LogEntry::from))
    }

    /// The entry at `seq`, if there is one.
    pub async fn entry(&self, seq: i64) -> Result<Option<LogEntry>, AccountingError> {
        let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq = $1");
        let row: Option<LogRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(seq)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.map(LogEntry::from))
    }

    /// Every invariant of the ledger, checked now on the live database ([`crate::check_ledger`]).
    pub async fn check(
        &self,
        max_backlog: std::time::Duration,
    ) -> Result<crate::LedgerCheck, AccountingError> {
        crate::check_ledger(&self.db, max_backlog).await
    }

    /// Every entry `filter` finds, in the order they were logged, read by one query and handed
    /// on as the database sends them: an export of a year of the log never holds it in memory.
    /// Time order is the order of the indexes that serve each filter (`audit_log_by_time`,
    /// `audit_log_by_popug`), so no sort stands between the query and its first row.
    pub fn export(
        &self,
        filter: &LogFilter,
    ) -> BoxStream<'static, Result<LogEntry, AccountingError>> {
        let conditions = log_conditions(filter);
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log {}ORDER BY logged_at, seq",
            conditions.clause()
        );
        let values = conditions.into_values();
        let pool = self.db.pool().clone();
        Box::pin(async_stream::try_stream! {
            let query = sqlx::query_as::<_, LogRow>(sqlx::AssertSqlSafe(sql));
            let mut rows = ates_db::bind_all_as(query, values).fetch(&pool);
            while let Some(row) = rows.try_next().await? {
                yield LogEntry::from(row);
            }
        })
    }

    /// How many entries `filter` finds, counted by the index that serves its list.
    pub async fn count(&self, filter: &LogFilter) -> Result<i64, AccountingError> {
        Ok(log_conditions(filter).count(&self.db, "audit_log").await?)
    }
}

/// The conditions of a log list: each filter given, and no other.
fn log_conditions(filter: &LogFilter) -> Conditions {
    let mut conditions = Conditions::default();
    if let Some(popug) = &filter.popug_id {
        conditions.compare("popug_id", "=", popug.as_str());
    }
    if let Some(task) = &filter.task_id {
        conditions.compare("task_id", "=", task.as_str());
    }
    if !filter.kinds.is_empty() {
        let kinds: Vec<String> = filter
            .kinds
            .iter()
            .map(|k| conditions.bind(k.as_str()))
            .collect();
        conditions.push(format!("kind IN ({})", kinds.join(", ")));
    }
    if let Some(from) = filter.from {
        conditions.compare("logged_at", ">=", to_micros(from));
    }
    if let Some(to) = filter.to {
        conditions.compare("logged_at", "<", to_micros(to));
    }
    conditions
}

async fn balance(conn: &mut AnyConnection, popug_id: &str) -> Result<i64, AccountingError> {
    let balance: Option<i64> =
        sqlx::query_scalar("SELECT balance FROM accounts WHERE popug_id = $1")
            .bind(popug_id.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(balance.unwrap_or(0))
}
