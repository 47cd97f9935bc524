//! The replica of the auth service's popugs that assignment needs: kept in sync from tokens
//! and auth events, read through a short memory.

use std::sync::Arc;

use ates_db::{Channel, Conditions, Db, to_micros};
use ates_events::auth::{PopugChange, PopugDataUpdated};

use crate::popug::PopugRow;
use crate::recent::Recent;
use crate::role::assignable_condition;
use crate::{Page, PageRequest, Popug, PopugClaims, PopugId, Role, TaskError};

const COLUMNS: &str = "id, name, email, role, changed_at, deactivated_at";

/// What an auth event did to the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// The replica changed. `revoked`: the popug's open sessions no longer match its standing
    /// (it was deactivated, or its role changed) and must end.
    Applied { revoked: bool },
    /// The replica already held a newer state of the popug (from a later event or token).
    Stale,
    /// This event was handled before.
    Duplicate,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied { .. } => "applied",
            Self::Stale => "stale",
            Self::Duplicate => "duplicate",
        }
    }
}

/// The popug replica.
#[derive(Clone)]
pub struct Popugs {
    db: Db,
    recent: Arc<Recent>,
}

impl Popugs {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            recent: Arc::default(),
        }
    }

    /// Forgets what this gateway kept in memory of a popug: another gateway changed it.
    pub fn forget(&self, id: &str) {
        self.recent.forget(id);
    }

    /// Forgets every popug kept in memory: news of changes may have been missed.
    pub fn forget_all(&self) {
        self.recent.forget_all();
    }

    /// The row of a popug, from memory when it was read lately.
    async fn recent_row(&self, id: &PopugId) -> Result<Option<PopugRow>, TaskError> {
        if let Some(row) = self.recent.get(&id.0) {
            return Ok(Some(row));
        }
        let generation = self.recent.generation();
        let row = self.row(id).await?;
        if let Some(row) = &row {
            self.recent.keep(generation, [row.clone()]);
        }
        Ok(row)
    }

    /// The popugs a task may be given to: active, and neither admin nor manager. From memory
    /// when read lately; a caller that finds the choice refused asks again with `fresh`.
    pub(crate) async fn assignable(&self, fresh: bool) -> Result<Arc<Vec<PopugId>>, TaskError> {
        if !fresh && let Some(ids) = self.recent.assignable() {
            return Ok(ids);
        }
        let generation = self.recent.generation();
        let ids = assignable(&mut *self.db.pool().acquire().await?).await?;
        Ok(self.recent.keep_assignable(generation, ids))
    }

    /// Makes the replica agree with fresh claims and returns the popug as the replica now has
    /// it. Creates the popug on first sight; refreshes it only with claims issued after its
    /// last change, so a stale token brings back neither an old role nor a deactivated popug.
    /// A popug whose claims did not change costs one read.
    pub async fn sync(&self, claims: &PopugClaims) -> Result<Popug, TaskError> {
        let issued = to_micros(claims.issued_at);
        let current = self.recent_row(&claims.id).await?;
        match current {
            Some(row) if !is_refresh(&row, claims, issued) => {
                if row.deactivated_at.is_some() {
                    return Err(TaskError::Deactivated);
                }
                return Ok(row.into());
            }
            _ => {}
        }
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "INSERT INTO popugs (id, name, email, role, changed_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, \
             role = excluded.role, changed_at = excluded.changed_at \
             WHERE popugs.changed_at < excluded.changed_at AND popugs.deactivated_at IS NULL",
        )
        .bind(claims.id.0.clone())
        .bind(claims.name.clone())
        .bind(claims.email.clone())
        .bind(claims.role.as_str())
        .bind(issued)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if changed {
            self.notify_changed(&mut tx, &claims.id).await?;
        }
        tx.commit().await?;
        self.recent.forget(&claims.id.0);
        let popug: Popug = self
            .recent_row(&claims.id)
            .await?
            .ok_or_else(|| TaskError::NotFound(claims.id.0.clone()))?
            .into();
        if !popug.active {
            return Err(TaskError::Deactivated);
        }
        Ok(popug)
    }

    /// Applies Popug Data Updated from the auth service, once per event id, in one
    /// transaction that also records the event.
    ///
    /// Created and updated events overwrite the popug only when they are newer than its last
    /// change (by event or token), so late or repeated deliveries never bring back an old state.
    /// Deletion is final whatever its time: a deleted popug is deactivated (never removed, its
    /// log and account stay), and nothing brings it back.
    pub async fn apply(&self, event: &PopugDataUpdated) -> Result<EventOutcome, TaskError> {
        let occurred = to_micros(event.occurred_at);
        let id = PopugId(event.popug_id.clone());
        let mut tx = self.db.begin_write().await?;
        let seen: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM auth_events WHERE id = $1")
                .bind(event.id.clone())
                .fetch_optional(&mut *tx)
                .await?;
        if seen.is_some() {
            return Ok(EventOutcome::Duplicate);
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM popugs WHERE id = $1{}",
            self.db.lock_rows()
        );
        let before: Option<PopugRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.0.clone())
            .fetch_optional(&mut *tx)
            .await?;
        let (changed, revoked) = match &event.change {
            PopugChange::Upserted { name, email, role } => {
                let role = Role::from_claim(role);
                let changed = sqlx::query(
                    "INSERT INTO popugs (id, name, email, role, changed_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, \
                     role = excluded.role, changed_at = excluded.changed_at \
                     WHERE popugs.changed_at < excluded.changed_at AND popugs.deactivated_at IS NULL",
                )
                .bind(id.0.clone())
                .bind(name.clone())
                .bind(email.clone())
                .bind(role.as_str())
                .bind(occurred)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                let role_changed = before
                    .as_ref()
                    .is_some_and(|row| Role::from_claim(&row.role) != role);
                (changed, changed && role_changed)
            }
            PopugChange::Deleted => {
                // A popug first heard of through its deletion is kept, deactivated, so that no
                // token can create it afterwards.
                let changed = sqlx::query(
                    "INSERT INTO popugs (id, name, email, role, changed_at, deactivated_at) \
                     VALUES ($1, $1, NULL, 'worker', $2, $2) \
                     ON CONFLICT (id) DO UPDATE SET deactivated_at = excluded.deactivated_at, \
                     changed_at = CASE WHEN popugs.changed_at > excluded.changed_at \
                     THEN popugs.changed_at ELSE excluded.changed_at END \
                     WHERE popugs.deactivated_at IS NULL",
                )
                .bind(id.0.clone())
                .bind(occurred)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                (changed, changed && before.is_some())
            }
        };
        let recorded = sqlx::query(
            "INSERT INTO auth_events (id, event_type, popug_id, occurred_at, received_at, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(event.id.clone())
        .bind(event.event_type)
        .bind(id.0.clone())
        .bind(occurred)
        .bind(to_micros(self.db.now()))
        .bind(if changed { "APPLIED" } else { "STALE" })
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            // Another replica handled the same event since the check above.
            return Ok(EventOutcome::Duplicate);
        }
        if changed {
            self.notify_changed(&mut tx, &id).await?;
        }
        if revoked {
            // Every replica closes that popug's WebSockets when this commits.
            self.db
                .notify(&mut *tx, Channel::PopugRevoked, &id.0)
                .await?;
        }
        tx.commit().await?;
        self.recent.forget(&id.0);
        Ok(if changed {
            EventOutcome::Applied { revoked }
        } else {
            EventOutcome::Stale
        })
    }

    async fn row(&self, id: &PopugId) -> Result<Option<PopugRow>, TaskError> {
        let sql = format!("SELECT {COLUMNS} FROM popugs WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.0.clone())
            .fetch_optional(self.db.pool())
            .await?)
    }

    pub async fn get(&self, id: &PopugId) -> Result<Option<Popug>, TaskError> {
        Ok(self.row(id).await?.map(Popug::from))
    }

    /// The popugs with these ids, in no particular order; unknown ids are left out. Those
    /// read lately come from memory.
    pub async fn by_ids(&self, ids: &[PopugId]) -> Result<Vec<Popug>, TaskError> {
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.recent.get(&id.0) {
                Some(row) => found.push(Popug::from(row)),
                None => missing.push(id.0.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let generation = self.recent.generation();
        let select = format!("SELECT {COLUMNS} FROM popugs WHERE id IN");
        let rows: Vec<PopugRow> = ates_db::fetch_in(&self.db, &select, &missing).await?;
        self.recent.keep(generation, rows.iter().cloned());
        found.extend(rows.into_iter().map(Popug::from));
        Ok(found)
    }

    /// Tells the other gateways, at commit, that this popug changed: they forget what they
    /// kept of it in memory.
    async fn notify_changed(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: &PopugId,
    ) -> Result<(), TaskError> {
        Ok(self.db.notify(conn, Channel::PopugChanged, &id.0).await?)
    }

    /// Popugs ordered by id, optionally of one role: the statement names only the filters
    /// given, so each shape walks one index in order (`popugs_by_role`, or the primary key).
    pub async fn list(
        &self,
        role: Option<Role>,
        page: &PageRequest,
    ) -> Result<Page<Popug>, TaskError> {
        let by_id = ates_db::Order {
            column: "id",
            descending: false,
        };
        let cursor = page.after.as_deref().map(ates_db::Value::from);
        let rows: Page<PopugRow> = ates_db::read_page(
            &self.db,
            COLUMNS,
            "popugs",
            role_condition(role),
            by_id,
            page,
            cursor,
        )
        .await?;
        Ok(rows.map(Popug::from))
    }

    /// How many popugs have `role` (everyone, without one).
    pub async fn count(&self, role: Option<Role>) -> Result<i64, TaskError> {
        Ok(role_condition(role).count(&self.db, "popugs").await?)
    }
}

/// Popugs of `role`, or everyone.
fn role_condition(role: Option<Role>) -> Conditions {
    let mut conditions = Conditions::default();
    if let Some(role) = role {
        conditions.compare("role", "=", role.as_str());
    }
    conditions
}

fn is_refresh(row: &PopugRow, claims: &PopugClaims, issued: i64) -> bool {
    let differs = row.name != claims.name
        || row.email != claims.email
        || Role::from_claim(&row.role) != claims.role;
    differs && issued > row.changed_at && row.deactivated_at.is_none()
}

/// Every popug a task may be given to, read from the database.
pub(crate) async fn assignable(conn: &mut sqlx::AnyConnection) -> Result<Vec<PopugId>, TaskError> {
    let sql = format!(
        "SELECT id FROM popugs WHERE {} ORDER BY id",
        assignable_condition()
    );
    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(conn)
        .await?;
    Ok(ids.into_iter().map(PopugId).collect())
}

/// `EXISTS` while `popug` (the parameter `$n`) may be given a task.
pub(crate) fn still_assignable(n: usize) -> String {
    format!(
        "EXISTS (SELECT 1 FROM popugs WHERE id = ${n} AND {})",
        assignable_condition()
    )
}
