//! Accounting: prices, accounts and the common audit log.
//!
//! It consumes the task events from the outbox (`ates-events`) and never depends on
//! `task-domain`: a task and a popug are ids here. Each event is handled once, whatever the
//! number of deliveries: the effect and the record that it happened share one transaction.

mod audit_log;
mod error;
mod ledger;
mod prices;

pub use audit_log::{EntryKind, LogEntry, LogFilter, LogPage};
pub use error::AccountingError;
pub use ledger::{CONSUMER, Ledger};
pub use prices::Prices;
