//! Accounting: prices, accounts, the common audit log, and Make Payment (day close, payouts,
//! the mail that tells popugs, and the daily figures).
//!
//! It consumes the task events from the outbox (`ates-events`) and never depends on
//! `task-domain`: a task and a popug are ids here. Each event is handled once, whatever the
//! number of deliveries: the effect and the record that it happened share one transaction.

mod audit_log;
mod calendar;
mod check;
mod error;
mod figures;
mod ledger;
mod payday;
mod period;
mod posting;
mod prices;
mod queue;

pub use audit_log::{EntryKind, LogEntry, LogFilter};
pub use calendar::Calendar;
pub use check::{Check, LedgerCheck, check_ledger};
pub use error::AccountingError;
pub use figures::{Completion, DayFigures, Figures, Moved, PeriodTop};
pub use ledger::{Ledger, Progress};
pub use payday::{DayClose, Payday, Statement, payout_id};
pub use period::{DayRange, Period};
pub use posting::CONSUMER;
pub use prices::Prices;
pub use queue::{Mail, MailStatus, Payout, PayoutStatus, QueueFilter, Queues, Retry};
