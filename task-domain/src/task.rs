//! The task and the rules of its input.

use std::fmt;

use ates_db::from_micros;
use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::{PopugId, TaskError};

pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 10_000;
pub const JIRA_ID_MAX_CHARS: usize = 64;

pub use ates_events::ids::TaskId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Open,
    Done,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Done => "DONE",
        }
    }

    fn from_stored(stored: &str) -> Self {
        if stored == "DONE" {
            Self::Done
        } else {
            Self::Open
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Done => "done",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    pub title: String,
    pub jira_id: Option<String>,
    pub description: String,
    pub status: TaskStatus,
    pub assignee_id: PopugId,
    pub created_by: PopugId,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

pub(crate) const COLUMNS: &str =
    "id, title, jira_id, description, status, assignee_id, created_by, created_at, completed_at";

#[derive(FromRow)]
pub(crate) struct TaskRow {
    id: String,
    title: String,
    jira_id: Option<String>,
    description: String,
    status: String,
    assignee_id: String,
    created_by: String,
    created_at: i64,
    completed_at: Option<i64>,
}

impl From<TaskRow> for Task {
    fn from(row: TaskRow) -> Self {
        Self {
            id: TaskId(row.id),
            title: row.title,
            jira_id: row.jira_id,
            description: row.description,
            status: TaskStatus::from_stored(&row.status),
            assignee_id: PopugId(row.assignee_id),
            created_by: PopugId(row.created_by),
            created_at: from_micros(row.created_at),
            completed_at: row.completed_at.map(from_micros),
        }
    }
}

/// A task as a popug asks for it, checked against the rules before anything is written.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub title: String,
    pub jira_id: Option<String>,
    pub description: String,
}

impl NewTask {
    /// Trims the input and checks it: the tracker key lives in `jira_id`, never in the title
    /// (the old `[UBERPOP-42] title` convention is refused so the two cannot disagree).
    pub fn validated(self) -> Result<Self, TaskError> {
        let title = self.title.trim().to_owned();
        if title.is_empty() {
            return Err(TaskError::Invalid("title must not be empty".into()));
        }
        if title.chars().count() > TITLE_MAX_CHARS {
            return Err(TaskError::Invalid(format!(
                "title must be at most {TITLE_MAX_CHARS} characters"
            )));
        }
        if title.contains(['[', ']']) {
            return Err(TaskError::Invalid(
                "title must not contain '[' or ']': put the tracker key in jiraId".into(),
            ));
        }
        let jira_id = match self.jira_id.map(|j| j.trim().to_owned()) {
            Some(j) if j.is_empty() => None,
            Some(j) if !is_tracker_key(&j) => {
                return Err(TaskError::Invalid(format!(
                    "jiraId must look like UBERPOP-42 (letters, a dash, digits; at most {JIRA_ID_MAX_CHARS} characters)"
                )));
            }
            other => other,
        };
        if self.description.chars().count() > DESCRIPTION_MAX_CHARS {
            return Err(TaskError::Invalid(format!(
                "description must be at most {DESCRIPTION_MAX_CHARS} characters"
            )));
        }
        Ok(Self {
            title,
            jira_id,
            description: self.description,
        })
    }
}

/// `PROJECT-123`: an uppercase project key (letters, digits, `_`), a dash, a number.
fn is_tracker_key(key: &str) -> bool {
    let Some((project, number)) = key.split_once('-') else {
        return false;
    };
    key.len() <= JIRA_ID_MAX_CHARS
        && project.starts_with(|c: char| c.is_ascii_uppercase())
        && project
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
}

/// Which tasks a list shows.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub assignee_id: Option<PopugId>,
    /// Tasks whose title or tracker key contains this text, in any case; at most
    /// [`MAX_SEARCH`] characters.
    pub search: Option<String>,
}

/// The longest text a task search takes.
pub const MAX_SEARCH: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    fn new_task(title: &str, jira_id: Option<&str>) -> Result<NewTask, TaskError> {
        NewTask {
            title: title.into(),
            jira_id: jira_id.map(Into::into),
            description: String::new(),
        }
        .validated()
    }

    #[test]
    fn titles_with_brackets_are_refused() {
        assert!(new_task("[UBERPOP-42] fix the beak", None).is_err());
        assert!(new_task("fix ] the beak", None).is_err());
        assert!(new_task("   ", None).is_err());
        assert_eq!(
            new_task("  fix the beak ", None).unwrap().title,
            "fix the beak"
        );
    }

    #[test]
    fn tracker_keys_are_checked() {
        assert_eq!(
            new_task("t", Some("UBERPOP-42"))
                .unwrap()
                .jira_id
                .as_deref(),
            Some("UBERPOP-42")
        );
        assert_eq!(new_task("t", Some(" ")).unwrap().jira_id, None);
        for bad in [
            "uberpop-42",
            "UBERPOP",
            "UBERPOP-",
            "-42",
            "UBER POP-1",
            "UBERPOP-4x",
        ] {
            assert!(new_task("t", Some(bad)).is_err(), "{bad} was accepted");
        }
    }
}
