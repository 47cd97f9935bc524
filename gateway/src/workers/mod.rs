//! The gateway's background work: each loop wakes when told to, or on its interval, and backs
//! off after a failure.
//!
//! - `accounting`: the ledger's consumer of the outbox, and the wait of a mutation for its own
//!   events;
//! - `feed`: the outbox read once for every subscriber on this replica;
//! - `nats`: the outbox relayed to JetStream, and auth events consumed from it;
//! - `day_close`: the schedule that closes each business day;
//! - `delivery`: payouts to the `payments` system and mail through the `mailer`.

pub mod accounting;
pub mod day_close;
pub mod delivery;
pub mod feed;
mod mailer;
pub mod nats;
mod payments;
pub mod poller;
