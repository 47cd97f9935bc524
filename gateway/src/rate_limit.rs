//! What one popug may ask of a replica: mutations at a rate (a token bucket per popug), and
//! requests at once (turns), both kept in memory on each replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests one popug may have running at once: the others wait for a turn, so that one
/// popug's parallel requests cannot hold every database connection while others wait.
pub struct Turns {
    per_popug: usize,
    popugs: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Turns {
    pub fn new(per_popug: usize) -> Self {
        Self {
            per_popug: per_popug.max(1),
            popugs: Mutex::new(HashMap::new()),
        }
    }

    /// The popug's turn, once one of its running requests ends (at once when fewer run).
    pub async fn take(&self, popug: &str) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut popugs = self.popugs.lock().unwrap_or_else(PoisonError::into_inner);
            if popugs.len() > MAX_BUCKETS {
                // Popugs with nothing running are forgotten.
                popugs.retain(|_, s| Arc::strong_count(s) > 1);
            }
            Arc::clone(
                popugs
                    .entry(popug.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_popug))),
            )
        };
        semaphore
            .acquire_owned()
            .await
            .expect("a popug's turns are never closed")
    }
}

/// Mutations a popug may send per second, refilled continuously, with as many in a burst.
pub struct RateLimiter {
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    /// `per_second` of zero lets everything through.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `count` mutations from the popug's budget at once, or none when it holds fewer.
    pub fn allow(&self, popug: &str, count: u64) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > MAX_BUCKETS {
            let per_second = self.per_second;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < per_second
            });
        }
        let (tokens, at) = buckets
            .entry(popug.to_owned())
            .or_insert((self.per_second, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.per_second);
        *at = now;
        let count = count as f64;
        if *tokens >= count {
            *tokens -= count;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_rate_and_refills() {
        let limiter = RateLimiter::new(3);
        assert!((0..3).all(|_| limiter.allow("bob", 1)));
        assert!(!limiter.allow("bob", 1));
        assert!(limiter.allow("eve", 1));
        assert!(RateLimiter::new(0).allow("anyone", 1));
        // Several at once take as many, or none.
        assert!(!limiter.allow("eve", 3));
        assert!(limiter.allow("eve", 2));
        assert!(!limiter.allow("eve", 1));
    }
}
