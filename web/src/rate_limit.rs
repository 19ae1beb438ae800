//! Token-bucket rate limits: readings per second per key, requests per
//! second per client address.
//!
//! Written here rather than taken from `governor` because the answer must be
//! the API's JSON 429 with an exact `Retry-After`, and because a batch may
//! cost more than the burst: a batch larger than one second's worth is let
//! through when the bucket is full and leaves it in debt, so the long-run
//! rate still holds and large batches are never refused for ever.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wattline_storage::Recover;

/// Buckets kept before idle, refilled ones are forgotten.
const MAX_TRACKED: usize = 10_000;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub(crate) struct RateLimiter<K> {
    /// Tokens per second; also the burst (one second's worth).
    rate: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub(crate) fn new(per_second: u64) -> Self {
        Self {
            rate: per_second as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` tokens for `key`, or says how long to wait.
    pub(crate) fn check(&self, key: &K, cost: u64, now: Instant) -> Result<(), Duration> {
        let cost = cost as f64;
        let burst = self.rate;
        let mut buckets = self.buckets.locked();
        if buckets.len() >= MAX_TRACKED {
            let rate = self.rate;
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= cost || (cost > burst && bucket.tokens >= burst) {
            bucket.tokens -= cost;
            return Ok(());
        }
        let missing = cost.min(burst) - bucket.tokens;
        Err(Duration::from_secs_f64(missing / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refills_at_the_rate() {
        let l = RateLimiter::new(10);
        let t0 = Instant::now();
        for _ in 0..10 {
            l.check(&"k", 1, t0).unwrap();
        }
        let wait = l.check(&"k", 1, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        l.check(&"k", 1, t0 + Duration::from_millis(100)).unwrap();
        l.check(&"other", 10, t0).unwrap();
    }

    #[test]
    fn a_batch_above_the_burst_passes_when_full_and_leaves_debt() {
        let l = RateLimiter::new(100);
        let t0 = Instant::now();
        l.check(&"k", 250, t0).unwrap();
        let wait = l.check(&"k", 250, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs_f64(2.5));
        l.check(&"k", 250, t0 + Duration::from_millis(2500))
            .unwrap();
    }
}
