//! The one loop every background worker runs: a round, then again at once while there is more,
//! else a wait for a wake-up or the interval; after a failure, a pause that doubles up to a
//! bound and is reset by the next success.
//!
//! The interval is what makes a lost wake-up harmless: work that nobody announced (another
//! replica's commit while the listener reconnects, a crash's leftovers) is found within it.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;

/// Failures in a row after which a loop's failure is logged as an error, not a warning.
const PERSISTENT: u32 = 5;

/// What a round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// There may be more: go again at once.
    More,
    /// Nothing left: wait for a wake-up or the interval.
    Idle,
    /// Nothing to do here for a while (another replica holds the work): wait this long.
    Later(Duration),
}

/// Doubling pauses after failures, from `first` up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The pause after `failures` failures in a row (one or more).
    pub fn after(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        self.first.saturating_mul(factor).min(self.max)
    }
}

pub struct Poller {
    what: &'static str,
    /// `None`: only a wake-up starts the next round.
    interval: Option<Duration>,
    backoff: Backoff,
    wake: Notify,
}

impl Poller {
    /// A loop doing `what` (for the log), looking every `interval` when nobody wakes it.
    pub fn new(what: &'static str, interval: Duration) -> Self {
        Self {
            what,
            interval: Some(interval),
            backoff: Backoff {
                first: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
            wake: Notify::new(),
        }
    }

    /// A loop that runs a round only when woken (and once at start).
    pub fn on_wake(what: &'static str) -> Self {
        Self {
            interval: None,
            ..Self::new(what, Duration::ZERO)
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Asks for a round soon, without waiting for it. Wake-ups while a round runs are kept
    /// (one of them), so work announced meanwhile is not left for the interval.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs `round` until the runtime stops.
    pub async fn run<F, R, E>(&self, mut round: F)
    where
        F: FnMut() -> R,
        R: Future<Output = Result<Round, E>>,
        E: Into<anyhow::Error>,
    {
        let mut failures = 0u32;
        loop {
            let pause = match round().await {
                Ok(Round::More) => {
                    failures = 0;
                    continue;
                }
                Ok(Round::Idle) => {
                    failures = 0;
                    self.interval
                }
                Ok(Round::Later(pause)) => {
                    failures = 0;
                    tokio::time::sleep(pause).await;
                    continue;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);

                    let pause = self.backoff.after(failures);
                    let error = format!("{:#}", error.into());
                    if failures < PERSISTENT {
                        tracing::warn!(%error, failures, ?pause, "{} failed; retrying", self.what);
                    } else {
                        tracing::error!(%error, failures, ?pause, "{} keeps failing; retrying", self.what);
                    }
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            match pause {
                Some(pause) => tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                },
                None => self.wake.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_bound() {
        let backoff = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let pauses: Vec<u128> = (1..=6).map(|n| backoff.after(n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.after(u32::MAX), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_run_again_at_once_while_there_is_more_and_on_a_wake_up() {
        let poller = Arc::new(Poller::new("counting", Duration::from_secs(3600)));
        let rounds = Arc::new(AtomicU32::new(0));
        let running = {
            let (poller, rounds) = (Arc::clone(&poller), Arc::clone(&rounds));
            tokio::spawn(async move {
                poller
                    .run(|| {
                        let done = rounds.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            match done {
                                1 | 2 => Ok(Round::More),
                                3 => Err(anyhow::anyhow!("a failure")),
                                _ => Ok(Round::Idle),
                            }
                        }
                    })
                    .await
            })
        };
        // Three rounds at once, the failure's pause (100 ms), a fourth, then idle for an hour.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 4);
        poller.wake();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 5, "a wake-up runs a round");
        running.abort();
    }
}
