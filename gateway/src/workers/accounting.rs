//! Runs the accounting consumer inside the gateway.
//!
//! The outbox is the truth: the consumer applies it in order, a batch per transaction, on a
//! timer (which also picks up events written by other replicas, or left over by a crash) and
//! whenever it is woken. A mutation waits only for its own events: until the consumer's offset
//! has passed them, or, when the consumer is busy with a backlog (a large shuffle), it posts
//! them itself; the consumer finds them handled when it gets there.

use std::sync::Arc;
use std::time::Duration;

use accounting_domain::{AccountingError, Ledger};
use ates_events::outbox::{Position, StoredEvent, last_position};
use tokio::sync::watch;
use tokio::time::Instant;

use super::poller::{Backoff, Poller, Round};

/// How often the consumer looks at the outbox when nobody wakes it.
const POLL: Duration = Duration::from_millis(500);
/// How long a mutation waits for the consumer before it posts its own events.
const QUICK: Duration = Duration::from_millis(100);
/// How long a mutation waits for accounting in all before it answers anyway.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Accounting {
    ledger: Ledger,
    poller: Poller,
    /// The consumer's offset as last seen: every event up to it is in the ledger.
    applied: watch::Sender<Position>,
}

impl Accounting {
    /// Starts the consumer loop; it stops when the runtime does.
    pub fn spawn(ledger: Ledger) -> Arc<Self> {
        let accounting = Arc::new(Self {
            ledger,
            poller: Poller::new("accounting", POLL).with_backoff(Backoff {
                first: Duration::from_secs(1),
                max: Duration::from_secs(16),
            }),
            applied: watch::Sender::new(Position::default()),
        });
        let running = Arc::clone(&accounting);
        tokio::spawn(async move { running.poller.run(|| running.step()).await });
        accounting
    }

    /// Asks for a step soon, without waiting for it.
    pub fn wake(&self) {
        self.poller.wake();
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Applies the next batch of the outbox, and tells the mutations waiting for it.
    async fn step(&self) -> Result<Round, AccountingError> {
        let progress = self.ledger.step().await?;
        if progress.applied > 0 {
            tracing::debug!(applied = progress.applied, "accounting applied a batch");
        }
        self.applied.send_if_modified(|applied| {
            let moved = progress.offset > *applied;
            if moved {
                *applied = progress.offset;
            }
            moved
        });
        Ok(if progress.more {
            Round::More
        } else {
            Round::Idle
        })
    }

    /// Waits until the consumer has passed `position`, at most until `deadline`; whether it
    /// has.
    async fn passed(&self, position: Position, deadline: Instant) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout_at(deadline, applied.wait_for(|at| *at >= position))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }

    /// After a producer committed `events`: returns once they are in the ledger, or when the
    /// bound runs out (false, logged), so that the answer can say accounting is behind.
    pub async fn settle(&self, events: &[StoredEvent]) -> bool {
        let Some(position) = last_position(events) else {
            return true;
        };
        self.wake();
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        if self.passed(position, Instant::now() + QUICK).await {
            return true;
        }
        // The consumer is busy with older events: post these now. Posting them out of the
        // outbox's order moves nobody's money twice; only events that need an older one (a
        // completion whose task is not priced yet) must wait for the consumer after all.
        match self.ledger.post_now(events).await {
            Ok(_) => return true,
            Err(AccountingError::Unpriced(task)) => {
                tracing::debug!(%task, "waiting for accounting to price the task");
            }
            Err(error) => {
                tracing::warn!(%error, source = ?std::error::Error::source(&error), "posting a mutation's own events failed; waiting for the consumer");
            }
        }
        let settled = self.passed(position, deadline).await;
        if !settled {
            tracing::warn!("accounting did not take a mutation's events within {SETTLE_TIMEOUT:?}");
        }
        settled
    }

    /// Waits (at most `within`) until everything committed before the call is in the ledger:
    /// for a reader that found a task accounting has not priced yet.
    pub async fn catch_up_to_now(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        self.wake();
        match self.ledger.outbox_end().await {
            Ok(end) => self.passed(end, deadline).await,
            Err(error) => {
                tracing::warn!(%error, "cannot read the end of the outbox");
                false
            }
        }
    }
}
