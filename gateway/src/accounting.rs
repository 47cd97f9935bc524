//! Runs the accounting consumer inside the gateway.
//!
//! The outbox is the truth: a pass reads every event past the consumer's offset and applies it
//! once. Passes run on a timer (which also picks up events written by other replicas, or left
//! over by a crash) and on request, so a mutation can wait until its own events are in the
//! ledger before it answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use accounting_domain::Ledger;
use tokio::sync::{Notify, watch};

/// How often a pass runs when nobody asks for one.
const POLL: Duration = Duration::from_millis(500);
/// How long a mutation waits for accounting before it answers anyway.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Accounting {
    ledger: Ledger,
    wake: Notify,
    /// Number of the latest pass that began.
    started: AtomicU64,
    /// Number of the latest pass that finished with nothing left to handle.
    finished: watch::Sender<u64>,
}

impl Accounting {
    /// Starts the consumer loop; it stops when the runtime does.
    pub fn spawn(ledger: Ledger) -> Arc<Self> {
        let accounting = Arc::new(Self {
            ledger,
            wake: Notify::new(),
            started: AtomicU64::new(0),
            finished: watch::Sender::new(0),
        });
        tokio::spawn(Arc::clone(&accounting).run());
        accounting
    }

    /// Asks for a pass soon, without waiting for it.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    async fn run(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            let pass = self.started.fetch_add(1, Ordering::SeqCst) + 1;
            match self.ledger.catch_up().await {
                Ok(applied) => {
                    failures = 0;
                    if applied > 0 {
                        tracing::debug!(applied, "accounting caught up");
                    }
                    self.finished.send_replace(pass);
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(%error, source = ?std::error::Error::source(&error), "accounting pass failed; retrying");
                    let backoff = POLL * 2u32.saturating_pow(failures.min(5));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Waits until a pass that began after this call has finished, so everything committed
    /// before the call is in the ledger; gives up quietly after a bound.
    pub async fn settle(&self) {
        let target = self.started.load(Ordering::SeqCst) + 1;
        let mut finished = self.finished.subscribe();
        self.wake.notify_one();
        let waited =
            tokio::time::timeout(SETTLE_TIMEOUT, finished.wait_for(|pass| *pass >= target)).await;
        if waited.is_err() {
            tracing::warn!("accounting did not catch up within {SETTLE_TIMEOUT:?}");
        }
    }
}
