//! The task tracker: tasks, their assignment to popugs, shuffles and completion.
//!
//! It knows nothing of GraphQL, HTTP or accounting. Every change it makes writes its events
//! (`ates-events`) to the outbox in the same transaction, for accounting and subscribers.

mod error;
mod popug;
mod popugs;
mod recent;
mod role;
mod task;
mod tracker;

pub use ates_db::{Page, PageRequest};
pub use error::TaskError;
pub use popug::{Actor, Popug, PopugClaims, PopugId};
pub use popugs::{EventOutcome, Popugs};
pub use recent::TTL as POPUG_MEMORY;
pub use role::{Permission, Role};
pub use task::{MAX_SEARCH, NewTask, Task, TaskFilter, TaskId, TaskStatus};
pub use tracker::{ShuffleOutcome, Tracker, keyed_task_id};
