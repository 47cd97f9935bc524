//! Make Payment on schedule: every replica asks, at start (closing what was missed while no
//! gateway ran) and then at an interval, for the ended days to be closed
//! ([`Payday::close_ended_days`]). Closing takes a database lock, so one replica closes a day
//! and the others find it closed.

use std::sync::Arc;
use std::time::Duration;

use accounting_domain::{AccountingError, Payday};

use super::delivery::Delivery;
use super::poller::{Poller, Round};

/// Runs the day-close scheduler until the runtime stops.
pub fn spawn(payday: Payday, delivery: Arc<Delivery>, every: Duration) {
    let poller = Poller::new("closing the business day", every);
    tokio::spawn(async move {
        poller
            .run(|| async {
                let closes = payday.close_ended_days().await?;
                for close in &closes {
                    tracing::info!(
                        day = %close.day,
                        payouts = close.payout_count,
                        paid = close.paid_total,
                        negative = close.negative_count,
                        "business day closed"
                    );
                }
                if !closes.is_empty() {
                    delivery.wake();
                }
                Ok::<_, AccountingError>(Round::Idle)
            })
            .await
    });
}
