//! Event contracts shared by the domains, and the outbox they travel through.
//!
//! Each event has a `type` and a `version`; its payload is described by a JSON Schema in
//! `events/schemas/<type>.v<version>.json`. A producer appends events with [`outbox::append`]
//! inside the transaction that makes the change, so an event exists exactly when its change
//! was committed.

pub mod auth;
pub mod dead_letter;
pub mod ids;
pub mod outbox;
pub mod payout;
pub mod task;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A payload that knows its place in the catalogue of contracts.
pub trait Contract: Serialize {
    /// Dotted name, e.g. `task.assigned`: also the schema's file name and, later, the subject.
    const TYPE: &'static str;
    const VERSION: i64;

    /// The aggregate the event belongs to; events of one aggregate are consumed in order.
    fn aggregate_id(&self) -> &str;
}

/// An event ready for the outbox.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Uuid,
    pub event_type: &'static str,
    pub version: i64,
    pub aggregate_id: String,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

impl NewEvent {
    pub fn new<C: Contract>(contract: &C, occurred_at: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: C::TYPE,
            version: C::VERSION,
            aggregate_id: contract.aggregate_id().to_owned(),
            payload: serde_json::to_value(contract)
                .expect("event contracts are plain data and always serialize"),
            occurred_at,
        }
    }
}
