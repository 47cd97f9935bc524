//! The gateway's background work: each loop wakes when told to, or on its interval, and backs
//! off after a failure.
//!
//! - `accounting`: the ledger's consumer of the outbox, and the wait of a mutation for its own
//!   events;
//! - `feed`: the outbox read once for every subscriber on this replica;
//! - `nats`: the outbox relayed to JetStream, and auth events consumed from it;
//! - `day_close`: the schedule that closes each business day;
//! - `delivery`: payouts to the `payments` system and mail through the `mailer`;
//! - `sweep`: expired idempotency keys forgotten;
//! - `gauges`: the database's figures for `/metrics`, read on their own interval.

pub mod accounting;
pub mod day_close;
pub mod delivery;
pub mod feed;
pub mod gauges;
mod mailer;
pub mod nats;
mod payments;
pub mod poller;
pub mod sweep;

/// An error and each of its causes, `outer: inner: innermost`: a TLS refusal says why (an
/// unknown issuer, a name that does not match) only in its innermost cause.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}
