//! What one popug may ask of a replica: mutations at a rate (a token bucket per popug),
//! complexity at a pace and requests at once (turns), and what strangers may ask together (a
//! pace for requests without credentials), all kept in memory on each replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What one popug may have running at once, weighed by cost: each popug has `per_popug`
/// turns, and a document takes its share of them by its complexity against the limit (at least
/// one, all of them at the limit). Light requests run `per_popug` at a time; the heaviest the
/// limits accept run one at a time; the others wait for their turns, so that one popug's
/// parallel requests cannot hold every database connection, nor the processor, while others
/// wait.
///
/// Complexity is also spent at a pace: each popug's documents may cost `per_second` a second
/// together (with a burst of two documents at the limit), and one that would overspend waits
/// until the budget holds it, [`PACE_WAIT`] at most.
pub struct Turns {
    per_popug: u32,
    /// The complexity limit: a document this complex takes every turn.
    complexity: usize,
    popugs: Mutex<HashMap<String, Arc<Semaphore>>>,
    pace: Pace,
}

/// The longest a document waits for its popug's complexity budget; one that would wait longer
/// is refused after this pause.
pub const PACE_WAIT: Duration = Duration::from_secs(2);

impl Turns {
    pub fn new(per_popug: usize, complexity: usize, per_second: u64) -> Self {
        let complexity = complexity.max(1);
        Self {
            per_popug: u32::try_from(per_popug.clamp(1, 1024)).unwrap_or(1024),
            complexity,
            popugs: Mutex::new(HashMap::new()),
            pace: Pace::new(per_second, per_second.max(2 * complexity as u64)),
        }
    }

    /// Spends `complexity` from the popug's budget: how long to wait first, or `None` (nothing
    /// spent) when that would be longer than [`PACE_WAIT`].
    pub fn pace(&self, popug: &str, complexity: usize) -> Option<Duration> {
        self.pace.reserve(popug, complexity as f64, PACE_WAIT)
    }

    /// The turns a document of `complexity` takes: its share of the limit, rounded up, between
    /// one and all.
    pub fn weight(&self, complexity: usize) -> u32 {
        let share = complexity
            .saturating_mul(self.per_popug as usize)
            .div_ceil(self.complexity);
        u32::try_from(share)
            .unwrap_or(u32::MAX)
            .clamp(1, self.per_popug)
    }

    /// `weight` of the popug's turns, once enough of its running requests end (at once when
    /// they are free). Turns are handed out in the order they were asked for.
    pub async fn take(&self, popug: &str, weight: u32) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut popugs = self.popugs.lock().unwrap_or_else(PoisonError::into_inner);
            if popugs.len() > MAX_BUCKETS {
                // Popugs with nothing running are forgotten.
                popugs.retain(|_, s| Arc::strong_count(s) > 1);
            }
            Arc::clone(
                popugs
                    .entry(popug.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_popug as usize))),
            )
        };
        semaphore
            .acquire_many_owned(weight.clamp(1, self.per_popug))
            .await
            .expect("a popug's turns are never closed")
    }
}

/// Buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

/// A budget per key, refilled continuously at `per_second` up to `burst`, that callers wait on
/// rather than being refused: each spends what it costs at once, and when that leaves the budget
/// below zero it waits until the refill has covered it. Waiting callers queue by what they
/// reserved; one that would wait too long spends nothing.
pub struct Pace {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Pace {
    /// `per_second` of zero lets everything through at once.
    pub fn new(per_second: u64, burst: u64) -> Self {
        Self {
            per_second: per_second as f64,
            burst: burst.max(per_second) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Spends `cost` from `key`'s budget: how long to wait before going on, or `None` (nothing
    /// spent) when that would be longer than `max_wait`.
    pub fn reserve(&self, key: &str, cost: f64, max_wait: Duration) -> Option<Duration> {
        if self.per_second <= 0.0 {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > MAX_BUCKETS {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (budget, at)| {
                *budget + now.duration_since(*at).as_secs_f64() * per_second < burst
            });
        }
        let (budget, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *budget =
            (*budget + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        let left = *budget - cost;
        let wait = Duration::from_secs_f64((-left).max(0.0) / self.per_second);
        if wait > max_wait {
            return None;
        }
        *budget = left;
        Some(wait)
    }
}

/// Mutations a popug may send per second, refilled continuously, with as many in a burst: a
/// [`Pace`] that never makes anyone wait.
pub struct RateLimiter(Pace);

impl RateLimiter {
    /// `per_second` of zero lets everything through.
    pub fn new(per_second: u32) -> Self {
        Self(Pace::new(u64::from(per_second), u64::from(per_second)))
    }

    /// Takes `count` mutations from the popug's budget at once, or none when it holds fewer.
    pub fn allow(&self, popug: &str, count: u64) -> bool {
        self.0
            .reserve(popug, count as f64, Duration::ZERO)
            .is_some()
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

    #[test]
    fn a_pace_makes_callers_wait_their_share_and_refuses_long_waits() {
        let pace = Pace::new(100, 100);
        let soon = Duration::from_secs(1);
        // The burst at once, then a hundredth of a second each, queued.
        assert!((0..100).all(|_| pace.reserve("all", 1.0, soon) == Some(Duration::ZERO)));
        let next = pace.reserve("all", 1.0, soon).expect("within a second");
        assert!(
            next > Duration::from_millis(5) && next <= Duration::from_millis(10),
            "{next:?}"
        );
        let later = pace.reserve("all", 50.0, soon).expect("within a second");
        assert!(later > Duration::from_millis(500), "{later:?}");
        // Past a second's wait: refused, and nothing spent.
        assert_eq!(pace.reserve("all", 60.0, soon), None);
        assert!(pace.reserve("all", 40.0, soon).is_some());
        // Each key its own budget; a pace of zero is no pace.
        assert_eq!(pace.reserve("other", 100.0, soon), Some(Duration::ZERO));
        assert_eq!(
            Pace::new(0, 0).reserve("any", 1e9, Duration::ZERO),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_document_takes_its_share_of_the_turns_by_its_complexity() {
        let turns = Turns::new(4, 5000, 10_000);
        assert_eq!(turns.weight(0), 1);
        assert_eq!(turns.weight(121), 1);
        assert_eq!(turns.weight(1250), 1);
        assert_eq!(turns.weight(1251), 2);
        assert_eq!(turns.weight(3750), 3);
        assert_eq!(turns.weight(5000), 4);
        assert_eq!(turns.weight(usize::MAX), 4);
        assert_eq!(Turns::new(0, 0, 0).weight(10), 1);
    }

    #[tokio::test]
    async fn the_heaviest_run_alone_and_light_ones_side_by_side() {
        let turns = Turns::new(4, 5000, 10_000);
        let soon = std::time::Duration::from_millis(50);
        let light: Vec<_> = take_many(&turns, "bob", 1, 4).await;
        assert_eq!(light.len(), 4, "four light requests run at once");
        let heavy = tokio::time::timeout(soon, turns.take("bob", 4)).await;
        assert!(heavy.is_err(), "the heaviest waits while any other runs");
        let other = tokio::time::timeout(soon, turns.take("eve", 4)).await;
        assert!(other.is_ok(), "another popug's turns are its own");
        drop(light);
        let heavy = tokio::time::timeout(soon, turns.take("bob", 4))
            .await
            .expect("all turns free");
        assert!(
            tokio::time::timeout(soon, turns.take("bob", 1))
                .await
                .is_err(),
            "nothing runs beside the heaviest"
        );
        drop(heavy);
    }

    async fn take_many(
        turns: &Turns,
        popug: &str,
        weight: u32,
        count: usize,
    ) -> Vec<OwnedSemaphorePermit> {
        let mut taken = Vec::new();
        for _ in 0..count {
            taken.push(turns.take(popug, weight).await);
        }
        taken
    }
}
