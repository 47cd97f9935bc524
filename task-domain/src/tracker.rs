//! The task tracker's processes: New Task, Complete Task, Shuffle Tasks.

use ates_db::{Db, to_micros};
use ates_events::task::{TaskAssigned, TaskCompleted, TaskCreated};
use ates_events::{NewEvent, outbox};
use rand::seq::IndexedRandom;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::task::{COLUMNS, TaskRow};
use crate::{
    Actor, NewTask, Page, PageRequest, PopugId, Task, TaskError, TaskFilter, TaskId, TaskStatus,
};

/// Rows per bulk UPDATE of a shuffle (two parameters each).
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
}

impl Tracker {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// New Task: anyone creates a task; it goes at once to a popug drawn uniformly among the
    /// assignable ones. With nobody to draw, nothing is written.
    pub async fn create(&self, actor: &Actor, new: NewTask) -> Result<Task, TaskError> {
        let new = new.validated()?;
        let mut tx = self.db.begin_write().await?;
        let candidates = assignable(&mut tx).await?;
        let assignee = candidates
            .choose(&mut rand::rng())
            .cloned()
            .ok_or(TaskError::NobodyToAssign)?;
        let now = self.db.now();
        let task = Task {
            id: TaskId(Uuid::now_v7().to_string()),
            title: new.title,
            jira_id: new.jira_id,
            description: new.description,
            status: TaskStatus::Open,
            assignee_id: assignee,
            created_by: actor.id.clone(),
            created_at: now,
            completed_at: None,
        };
        sqlx::query(
            "INSERT INTO tasks (id, title, jira_id, description, status, assignee_id, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(task.id.0.clone())
        .bind(task.title.clone())
        .bind(task.jira_id.clone())
        .bind(task.description.clone())
        .bind(task.status.as_str())
        .bind(task.assignee_id.0.clone())
        .bind(task.created_by.0.clone())
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        let created = TaskCreated {
            task_id: task.id.0.clone(),
            title: task.title.clone(),
            jira_id: task.jira_id.clone(),
            created_by: task.created_by.0.clone(),
            created_at: now,
        };
        let assigned = TaskAssigned {
            task_id: task.id.0.clone(),
            assignee_id: task.assignee_id.0.clone(),
            previous_assignee_id: None,
            assigned_at: now,
        };
        outbox::append(
            &mut tx,
            &[NewEvent::new(&created, now), NewEvent::new(&assigned, now)],
        )
        .await?;
        tx.commit().await?;
        Ok(task)
    }

    /// Complete Task: only the assignee completes an open task, once.
    pub async fn complete(&self, actor: &Actor, id: &TaskId) -> Result<Task, TaskError> {
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
        outbox::append(&mut tx, &[NewEvent::new(&completed, now)]).await?;
        tx.commit().await?;
        Ok(task)
    }

    /// Shuffle Tasks: every open task is drawn anew among the assignable popugs. A draw that
    /// lands on the same popug is still an assignment (and charged as one). Completed tasks
    /// never move: the open tasks are locked (or, on SQLite, the database is) until commit.
    /// Set-based: a few statements per thousand tasks, whatever their number.
    pub async fn shuffle(&self, actor: &Actor) -> Result<ShuffleOutcome, TaskError> {
        if !actor.role.may_shuffle() {
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
            return Ok(ShuffleOutcome::default());
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
        for chunk in moves.chunks(SHUFFLE_CHUNK) {
            reassign(&mut tx, chunk).await?;
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
        outbox::append(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(ShuffleOutcome {
            reassigned: draws.len(),
            moved: moves.len(),
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
        let rows: Vec<TaskRow> = ates_db::fetch_in(self.db.pool(), &select, &keys).await?;
        Ok(rows.into_iter().map(Task::from).collect())
    }

    /// Tasks newest first.
    pub async fn list(
        &self,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>, TaskError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tasks \
             WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR assignee_id = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let rows: Vec<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(filter.status.map(TaskStatus::as_str))
            .bind(filter.assignee_id.as_ref().map(|id| id.0.clone()))
            .bind(page.after.clone())
            .bind(page.first as i64 + 1)
            .fetch_all(self.db.pool())
            .await?;
        Ok(Page::from_overfetch(
            rows.into_iter().map(Task::from).collect(),
            page.first,
        ))
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

/// The popugs a task may be given to: active, and neither admin nor manager.
async fn assignable(conn: &mut AnyConnection) -> Result<Vec<PopugId>, TaskError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM popugs WHERE deactivated_at IS NULL AND role NOT IN ('admin', 'manager') ORDER BY id",
    )
    .fetch_all(conn)
    .await?;
    Ok(ids.into_iter().map(PopugId).collect())
}

/// Moves each `(task, assignee)` pair in one statement. Both backends name the columns of a
/// bare VALUES list `column1`, `column2`.
///
/// No `status = 'OPEN'` here: the shuffle's transaction holds the rows (locked on PostgreSQL,
/// the whole database on SQLite) since it read them open, and that extra predicate leads
/// SQLite's planner to drive the join from the status index, which took 7 s instead of 0.14 s
/// for 10,000 tasks.
async fn reassign(conn: &mut AnyConnection, moves: &[(&str, &str)]) -> Result<(), TaskError> {
    let values = (0..moves.len())
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE tasks SET assignee_id = v.column2 FROM (VALUES {values}) AS v \
         WHERE tasks.id = v.column1"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (task, assignee) in moves {
        query = query.bind(task.to_string()).bind(assignee.to_string());
    }
    query.execute(conn).await?;
    Ok(())
}
