//! Popugs the replica read lately, kept in memory: a request need not read its own popug, nor
//! its tasks' assignees, from the database, and a new task need not read every assignable
//! popug to draw one.
//!
//! Whatever changes a popug forgets it here: this replica's own writes at once, another
//! gateway's through PostgreSQL's `NOTIFY` (`ates_db::Channel::PopugChanged`), and anything else
//! after [`TTL`]. A row read before a forget is not kept, so a slow read cannot put back what a
//! change just removed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::PopugId;
use crate::popug::PopugRow;

/// How long an entry serves without a word from the database.
pub const TTL: Duration = Duration::from_secs(10);

/// Popugs kept before the oldest are dropped.
const CAPACITY: usize = 100_000;

#[derive(Default)]
pub(crate) struct Recent {
    popugs: RwLock<HashMap<String, (PopugRow, Instant)>>,
    assignable: RwLock<Option<(Arc<Vec<PopugId>>, Instant)>>,
    /// Bumped by every forget.
    generation: AtomicU64,
}

impl Recent {
    /// The generation to pass to [`Recent::keep`] for rows read after this call.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn get(&self, id: &str) -> Option<PopugRow> {
        let popugs = self.popugs.read().unwrap_or_else(|e| e.into_inner());
        popugs
            .get(id)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(row, _)| row.clone())
    }

    /// Keeps rows read since `generation`, unless something was forgotten meanwhile.
    pub fn keep(&self, generation: u64, rows: impl IntoIterator<Item = PopugRow>) {
        let mut popugs = self.popugs.write().unwrap_or_else(|e| e.into_inner());
        if self.generation() != generation {
            return;
        }
        if popugs.len() >= CAPACITY {
            popugs.retain(|_, (_, at)| at.elapsed() < TTL);
            if popugs.len() >= CAPACITY {
                popugs.clear();
            }
        }
        let now = Instant::now();
        for row in rows {
            popugs.insert(row.id.clone(), (row, now));
        }
    }

    pub fn assignable(&self) -> Option<Arc<Vec<PopugId>>> {
        let assignable = self.assignable.read().unwrap_or_else(|e| e.into_inner());
        assignable
            .as_ref()
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(ids, _)| Arc::clone(ids))
    }

    pub fn keep_assignable(&self, generation: u64, ids: Vec<PopugId>) -> Arc<Vec<PopugId>> {
        let ids = Arc::new(ids);
        let mut assignable = self.assignable.write().unwrap_or_else(|e| e.into_inner());
        if self.generation() == generation {
            *assignable = Some((Arc::clone(&ids), Instant::now()));
        }
        ids
    }

    /// Forgets one popug, and who may be assigned (its standing may have changed).
    pub fn forget(&self, id: &str) {
        let mut popugs = self.popugs.write().unwrap_or_else(|e| e.into_inner());
        let mut assignable = self.assignable.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        popugs.remove(id);
        *assignable = None;
    }

    /// Forgets everything: when news of changes may have been missed.
    pub fn forget_all(&self) {
        let mut popugs = self.popugs.write().unwrap_or_else(|e| e.into_inner());
        let mut assignable = self.assignable.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        popugs.clear();
        *assignable = None;
    }
}
