//! The task tracker's processes: New Task, Complete Task, Shuffle Tasks.

use std::sync::LazyLock;

use ates_db::{Backend, Conditions, Db, Order, Value, to_micros};
use ates_events::NewEvent;
use ates_events::outbox::{self, Committed, StoredEvent};
use ates_events::task::{TaskAssigned, TaskCompleted, TaskCreated};
use chrono::{DateTime, Utc};
use rand::seq::IndexedRandom;
use sha2::{Digest as _, Sha256};
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::popugs::{assignable, still_assignable};
use crate::task::{COLUMNS, TaskRow};
use crate::{
    Actor, MAX_SEARCH, NewTask, Page, PageRequest, Permission, PopugId, Popugs, Task, TaskError,
    TaskFilter, TaskId, TaskStatus,
};

/// The id of the task `popug` creates under idempotency key `key`, first claimed at
/// `claimed_at`: a UUIDv7 of that instant (so ids keep their creation order) whose other bits
/// come from the popug and the key, the same however often the request is sent.
pub fn keyed_task_id(popug: &PopugId, key: &str, claimed_at: DateTime<Utc>) -> TaskId {
    let digest = Sha256::digest(format!("{}\n{key}", popug.0).as_bytes());
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    let millis = u64::try_from(claimed_at.timestamp_millis()).unwrap_or_default();
    TaskId(
        uuid::Builder::from_unix_timestamp_millis(millis, &bits)
            .into_uuid()
            .to_string(),
    )
}

/// Rows per bulk UPDATE of a shuffle on SQLite (two parameters each).
const SHUFFLE_CHUNK: usize = 1_000;

/// What a shuffle did: every open task was drawn anew (`reassigned`, each one an assignment
/// that costs the fee) and `moved` of them landed on another popug than before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShuffleOutcome {
    pub reassigned: usize,
    pub moved: usize,
}

#[derive(Clone)]
pub struct Tracker {
    db: Db,
    /// Where assignment draws from, as kept in memory; each draw is still checked against the
    /// database as the task is written.
    popugs: Popugs,
}

impl Tracker {
    pub fn new(db: Db, popugs: Popugs) -> Self {
        Self { db, popugs }
    }

    /// New Task: anyone creates a task; it goes at once to a popug drawn uniformly among the
    /// assignable ones. With nobody to draw, nothing is written.
    pub async fn create(&self, actor: &Actor, new: NewTask) -> Result<Committed<Task>, TaskError> {
        self.create_as(actor, new, TaskId(Uuid::now_v7().to_string()))
            .await
    }

    /// New Task sent under an idempotency key: the task's id is the key's ([`keyed_task_id`]),
    /// so a retry after a run that died finds the task that run made, if it made one, and
    /// makes none of its own; two runs at once make one task between them. A task found is
    /// answered with no events (they were committed with it).
    pub async fn create_keyed(
        &self,
        actor: &Actor,
        new: NewTask,
        id: TaskId,
    ) -> Result<Committed<Task>, TaskError> {
        let made = |task: Task| Committed {
            value: task,
            events: Vec::new(),
        };
        if let Some(task) = self.get(&id).await? {
            return Ok(made(task));
        }
        match self.create_as(actor, new, id.clone()).await {
            Err(TaskError::Storage(error))
                if error
                    .as_database_error()
                    .is_some_and(|e| e.is_unique_violation()) =>
            {
                let task = self.get(&id).await?.ok_or(TaskError::Storage(error))?;
                Ok(made(task))
            }
            other => other,
        }
    }

    async fn create_as(
        &self,
        actor: &Actor,
        new: NewTask,
        id: TaskId,
    ) -> Result<Committed<Task>, TaskError> {
        let new = new.validated()?;
        let now = self.db.now();
        // The draw is written only if its popug is still assignable; a refused draw (the
        // popugs in memory were out of date) is drawn again from the database.
        let mut fresh = false;
        loop {
            let candidates = self.popugs.assignable(fresh).await?;
            let assignee = candidates
                .choose(&mut rand::rng())
                .cloned()
                .ok_or(TaskError::NobodyToAssign)?;
            let task = Task {
                id: id.clone(),
                title: new.title.clone(),
                jira_id: new.jira_id.clone(),
                description: new.description.clone(),
                status: TaskStatus::Open,
                assignee_id: assignee,
                created_by: actor.id.clone(),
                created_at: now,
                completed_at: None,
            };
            if let Some(events) = self.insert(&task).await? {
                return Ok(Committed {
                    value: task,
                    events,
                });
            }
            if fresh {
                return Err(TaskError::NobodyToAssign);
            }
            fresh = true;
        }
    }

    /// Writes a new task and its events, unless its assignee is no longer assignable (None),
    /// in one round trip ([`outbox::append_after`]): a transaction would take four (begin, two
    /// inserts, commit), and on SQLite each while holding the one writer's turn.
    async fn insert(&self, task: &Task) -> Result<Option<Vec<StoredEvent>>, TaskError> {
        static INSERT: LazyLock<String> = LazyLock::new(|| {
            format!(
                "INSERT INTO tasks (id, title, jira_id, description, status, assignee_id, created_by, created_at) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE {}",
                still_assignable(6)
            )
        });
        let values = vec![
            Value::Text(task.id.0.clone()),
            Value::Text(task.title.clone()),
            Value::from(task.jira_id.clone()),
            Value::Text(task.description.clone()),
            Value::from(TaskStatus::Open.as_str()),
            Value::Text(task.assignee_id.0.clone()),
            Value::Text(task.created_by.0.clone()),
            Value::Int(to_micros(task.created_at)),
        ];
        let created = TaskCreated {
            task_id: task.id.0.clone(),
            title: task.title.clone(),
            jira_id: task.jira_id.clone(),
            created_by: task.created_by.0.clone(),
            created_at: task.created_at,
        };
        let assigned = TaskAssigned {
            task_id: task.id.0.clone(),
            assignee_id: task.assignee_id.0.clone(),
            previous_assignee_id: None,
            assigned_at: task.created_at,
        };
        let events = [
            NewEvent::new(&created, task.created_at),
            NewEvent::new(&assigned, task.created_at),
        ];
        let stored = outbox::append_after(&self.db, &INSERT, values, &events).await?;
        Ok((!stored.is_empty()).then_some(stored))
    }

    /// Complete Task: only the assignee completes an open task, once.
    pub async fn complete(&self, actor: &Actor, id: &TaskId) -> Result<Committed<Task>, TaskError> {
        let mut tx = self.db.begin_write().await?;
        let now = self.db.now();
        // One conditional write decides the race: of many concurrent calls, one matches.
        let sql = format!(
            "UPDATE tasks SET status = 'DONE', completed_at = $1 \
             WHERE id = $2 AND status = 'OPEN' AND assignee_id = $3 RETURNING {COLUMNS}"
        );
        let mut retried = 0;
        let task = loop {
            let done: Option<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(to_micros(now))
                .bind(id.0.clone())
                .bind(actor.id.0.clone())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = done {
                break Task::from(row);
            }
            match find(&mut tx, id).await? {
                None => return Err(TaskError::NotFound(id.0.clone())),
                Some(task) if task.assignee_id != actor.id => {
                    return Err(TaskError::Forbidden(
                        "only the assignee may complete a task",
                    ));
                }
                // Open and the actor's after all: a shuffle took it away and gave it back
                // between the write and this read (PostgreSQL reads each statement afresh).
                Some(task) if task.status == TaskStatus::Open && retried < 3 => {
                    retried += 1;
                }
                Some(task) => {
                    return Err(TaskError::AlreadyInState {
                        id: task.id.0,
                        status: task.status,
                    });
                }
            }
        };
        let completed = TaskCompleted {
            task_id: task.id.0.clone(),
            completer_id: actor.id.0.clone(),
            completed_at: now,
        };
        let events = outbox::append(&mut tx, &[NewEvent::new(&completed, now)]).await?;
        tx.commit().await?;
        Ok(Committed {
            value: task,
            events,
        })
    }

    /// Shuffle Tasks: every open task is drawn anew among the assignable popugs. A draw that
    /// lands on the same popug is still an assignment (and charged as one). Completed tasks
    /// never move: the open tasks are locked (or, on SQLite, the database is) until commit.
    /// Set-based: a few statements per thousand tasks, whatever their number.
    pub async fn shuffle(&self, actor: &Actor) -> Result<Committed<ShuffleOutcome>, TaskError> {
        if !actor.role.may(Permission::ManageTasks) {
            return Err(TaskError::Forbidden(
                "only admins and managers may shuffle tasks",
            ));
        }
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "SELECT id, assignee_id FROM tasks WHERE status = 'OPEN' ORDER BY id{}",
            self.db.lock_rows()
        );
        let open: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *tx)
            .await?;
        if open.is_empty() {
            return Ok(Committed {
                value: ShuffleOutcome::default(),
                events: Vec::new(),
            });
        }
        let candidates = assignable(&mut tx).await?;
        if candidates.is_empty() {
            return Err(TaskError::NobodyToAssign);
        }
        let draws: Vec<(String, String, PopugId)> = {
            let mut rng = rand::rng();
            open.into_iter()
                .map(|(task, previous)| {
                    let next = candidates
                        .choose(&mut rng)
                        .cloned()
                        .unwrap_or_else(|| PopugId(previous.clone()));
                    (task, previous, next)
                })
                .collect()
        };
        let moves: Vec<(&str, &str)> = draws
            .iter()
            .filter(|(_, previous, next)| *previous != next.0)
            .map(|(task, _, next)| (task.as_str(), next.0.as_str()))
            .collect();
        match self.db.backend() {
            Backend::Postgres => reassign_all(&mut tx, &moves).await?,
            Backend::Sqlite => {
                for chunk in moves.chunks(SHUFFLE_CHUNK) {
                    reassign(&mut tx, chunk).await?;
                }
            }
        }
        let now = self.db.now();
        let events: Vec<NewEvent> = draws
            .iter()
            .map(|(task, previous, next)| {
                let assigned = TaskAssigned {
                    task_id: task.clone(),
                    assignee_id: next.0.clone(),
                    previous_assignee_id: Some(previous.clone()),
                    assigned_at: now,
                };
                NewEvent::new(&assigned, now)
            })
            .collect();
        let events = outbox::append(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(Committed {
            value: ShuffleOutcome {
                reassigned: draws.len(),
                moved: moves.len(),
            },
            events,
        })
    }

    pub async fn get(&self, id: &TaskId) -> Result<Option<Task>, TaskError> {
        let mut conn = self.db.pool().acquire().await?;
        find(&mut conn, id).await
    }

    /// The tasks with these ids, in no particular order; unknown ids are left out.
    pub async fn by_ids(&self, ids: &[TaskId]) -> Result<Vec<Task>, TaskError> {
        let keys: Vec<String> = ids.iter().map(|id| id.0.clone()).collect();
        let select = format!("SELECT {COLUMNS} FROM tasks WHERE id IN");
        let rows: Vec<TaskRow> = ates_db::fetch_in(&self.db, &select, &keys).await?;
        Ok(rows.into_iter().map(Task::from).collect())
    }

    /// The tracker key and title of each of these tasks, by id; unknown ids are left out. Reads
    /// only those columns: an export titles a million log entries with it, a chunk at a time.
    pub async fn titles(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, Option<String>, String)>, TaskError> {
        let keys: Vec<String> = ids.iter().map(|id| id.0.clone()).collect();
        let rows: Vec<(String, Option<String>, String)> = ates_db::fetch_in(
            &self.db,
            "SELECT id, jira_id, title FROM tasks WHERE id IN",
            &keys,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, key, title)| (TaskId(id), key, title))
            .collect())
    }

    /// Tasks newest first.
    ///
    /// The statement names only the filters given, so that each shape has a plan that walks
    /// one index in order (`tasks_by_status`, `tasks_by_assignee`,
    /// `tasks_by_assignee_newest`, or the primary key) and stops after the page.
    pub async fn list(
        &self,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>, TaskError> {
        let newest_first = Order {
            column: "id",
            descending: true,
        };
        let cursor = page.after.as_deref().map(Value::from);
        let conditions = self.conditions(filter)?;
        let rows: Page<TaskRow> = ates_db::read_page(
            &self.db,
            COLUMNS,
            "tasks",
            conditions,
            newest_first,
            page,
            cursor,
        )
        .await?;
        Ok(rows.map(Task::from))
    }

    /// How many tasks `filter` finds, counted by the index that serves its list.
    pub async fn count(&self, filter: &TaskFilter) -> Result<i64, TaskError> {
        Ok(self.conditions(filter)?.count(&self.db, "tasks").await?)
    }

    /// The conditions of a task list. A search is served by the trigram index of each store
    /// (PostgreSQL: `pg_trgm` on each column; SQLite: the FTS5 table `tasks_search`).
    fn conditions(&self, filter: &TaskFilter) -> Result<Conditions, TaskError> {
        let mut conditions = Conditions::default();
        if let Some(assignee) = &filter.assignee_id {
            conditions.compare("assignee_id", "=", assignee.0.as_str());
        }
        if let Some(status) = filter.status {
            conditions.compare("status", "=", status.as_str());
        }
        let search = filter.search.as_deref().filter(|text| !text.is_empty());
        if let Some(text) = search {
            if text.chars().count() > MAX_SEARCH {
                return Err(TaskError::Invalid(format!(
                    "search is at most {MAX_SEARCH} characters"
                )));
            }
            let condition = search_condition(self.db.backend(), &mut conditions, text);
            conditions.push(condition);
        }
        Ok(conditions)
    }
}

/// "Title or tracker key contains `text`, in any case", as each store's index serves it.
fn search_condition(backend: Backend, conditions: &mut Conditions, text: &str) -> String {
    // `%`, `_` and the escape itself stand for themselves.
    let pattern = || {
        let escaped = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    };
    match backend {
        Backend::Postgres => {
            let pattern = conditions.bind(pattern());
            format!("(title ILIKE {pattern} OR jira_id ILIKE {pattern})")
        }
        // Three characters or more are a phrase of trigrams, which the index finds wherever
        // it stands; a shorter text has no trigram, and is looked for in the rows themselves.
        Backend::Sqlite if text.chars().count() >= 3 => {
            let quoted = text.replace('"', "\"\"");
            let phrase = conditions.bind(format!("{{title jira_id}} : \"{quoted}\""));
            format!("rowid IN (SELECT rowid FROM tasks_search WHERE tasks_search MATCH {phrase})")
        }
        Backend::Sqlite => {
            let pattern = conditions.bind(pattern());
            format!("(title LIKE {pattern} ESCAPE '\\' OR jira_id LIKE {pattern} ESCAPE '\\')")
        }
    }
}

async fn find(conn: &mut AnyConnection, id: &TaskId) -> Result<Option<Task>, TaskError> {
    let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = $1");
    let row: Option<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.0.clone())
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Task::from))
}

/// Moves every `(task, assignee)` pair in one statement (PostgreSQL), the pairs passed as one
/// JSON array. In chunks of a thousand, each statement chose a hash join over the whole table,
/// whose every chunk leaves more dead rows for the next to scan: 4.5 s of a 6.9 s shuffle of
/// 100,000 tasks went there.
async fn reassign_all(conn: &mut AnyConnection, moves: &[(&str, &str)]) -> Result<(), TaskError> {
    if moves.is_empty() {
        return Ok(());
    }
    let pairs = serde_json::to_string(moves).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "UPDATE tasks SET assignee_id = v.assignee \
         FROM (SELECT e->>0 AS id, e->>1 AS assignee FROM json_array_elements($1::json) AS e) AS v \
         WHERE tasks.id = v.id",
    )
    .bind(pairs)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves each `(task, assignee)` pair in one statement (SQLite), which names the columns of a
/// bare VALUES list `column1`, `column2`.
///
/// No `status = 'OPEN'` here: the shuffle's transaction holds the rows (locked on PostgreSQL,
/// the whole database on SQLite) since it read them open, and that extra predicate leads
/// SQLite's planner to drive the join from the status index, which took 7 s instead of 0.14 s
/// for 10,000 tasks.
async fn reassign(conn: &mut AnyConnection, moves: &[(&str, &str)]) -> Result<(), TaskError> {
    let values = ates_db::row_placeholders(Backend::Sqlite, moves.len(), 2);
    let sql = format!(
        "UPDATE tasks SET assignee_id = v.column2 FROM (VALUES {values}) AS v \
         WHERE tasks.id = v.column1"
    );
    let values = moves
        .iter()
        .flat_map(|(task, assignee)| [Value::from(*task), Value::from(*assignee)]);
    ates_db::bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), values)
        .execute(conn)
        .await?;
    Ok(())
}
