//! Accounting: prices, accounts, the common audit log and end-of-day payouts.
//!
//! It consumes the task events from the outbox (`ates-events`) and never depends on
//! `task-domain`. Its first capability arrives with the accounting issue; until then this crate
//! only holds the place the workspace was designed with.
