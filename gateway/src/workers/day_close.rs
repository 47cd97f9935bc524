//! Make Payment on schedule: every replica checks, at start (closing what was missed while no
//! gateway ran) and then at an interval, whether a business day has ended and is still open,
//! and closes it. Closing takes a database lock, so one replica closes a day and the others
//! find it closed.

use std::sync::Arc;
use std::time::Duration;

use accounting_domain::{AccountingError, Payday};
use chrono::Days;

use super::delivery::Delivery;
use super::poller::{Poller, Round};

/// How long after midnight the scheduler waits, so that the last events of the day are in.
const GRACE: chrono::Duration = chrono::Duration::seconds(2);

/// Closes every day that has ended, oldest first; returns how many it closed.
pub async fn close_ended_days(payday: &Payday) -> Result<usize, AccountingError> {
    let today = payday.today();
    let Some(yesterday) = today.checked_sub_days(Days::new(1)) else {
        return Ok(0);
    };
    let (midnight, _) = payday.calendar().bounds(today);
    if payday.now() < midnight + GRACE {
        return Ok(0);
    }
    if payday.open_days(yesterday).await?.is_empty() {
        return Ok(0);
    }
    let closes = payday.close_through(yesterday).await?;
    for close in &closes {
        tracing::info!(
            day = %close.day,
            payouts = close.payout_count,
            paid = close.paid_total,
            negative = close.negative_count,
            "business day closed"
        );
    }
    Ok(closes.len())
}

/// Runs the day-close scheduler until the runtime stops: at start (closing what was missed
/// while no gateway ran) and every `every`.
pub fn spawn(payday: Payday, delivery: Arc<Delivery>, every: Duration) {
    let poller = Poller::new("closing the business day", every);
    tokio::spawn(async move {
        poller
            .run(|| async {
                if close_ended_days(&payday).await? > 0 {
                    delivery.wake();
                }
                Ok::<_, AccountingError>(Round::Idle)
            })
            .await
    });
}
