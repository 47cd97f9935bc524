//! Events the task domain produces.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Contract;

/// A task came into being. Accounting draws its prices when it hears this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCreated {
    pub task_id: String,
    pub title: String,
    pub jira_id: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl Contract for TaskCreated {
    const TYPE: &'static str = "task.created";
    const VERSION: i64 = 1;

    fn aggregate_id(&self) -> &str {
        &self.task_id
    }
}

/// A task was handed to a popug: at creation (no previous assignee) or by a shuffle draw,
/// which may hand it to the same popug again. Every one of them costs the assignee the fee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAssigned {
    pub task_id: String,
    pub assignee_id: String,
    pub previous_assignee_id: Option<String>,
    pub assigned_at: DateTime<Utc>,
}

impl Contract for TaskAssigned {
    const TYPE: &'static str = "task.assigned";
    const VERSION: i64 = 1;

    fn aggregate_id(&self) -> &str {
        &self.task_id
    }
}

/// The assignee finished a task; it pays the completer the reward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCompleted {
    pub task_id: String,
    pub completer_id: String,
    pub completed_at: DateTime<Utc>,
}

impl Contract for TaskCompleted {
    const TYPE: &'static str = "task.completed";
    const VERSION: i64 = 1;

    fn aggregate_id(&self) -> &str {
        &self.task_id
    }
}
