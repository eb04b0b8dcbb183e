//! Token buckets on the engine's clock: messages per second per client and handshakes per
//! second per remote address. Driven by the caller's time, so limits are deterministic and
//! tested like every other rule.

use crate::time::Time;
use std::collections::BTreeMap;

/// A rate and the burst allowed above it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateLimit {
    /// Sustained events per second.
    pub per_second: f64,
    /// Events allowed at once after a quiet period.
    pub burst: u32,
}

/// A token bucket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    updated: Time,
}

impl TokenBucket {
    pub(crate) fn full(limit: RateLimit, now: Time) -> Self {
        TokenBucket {
            tokens: f64::from(limit.burst),
            updated: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, limit: RateLimit, now: Time) -> bool {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, limit: RateLimit, now: Time) {
        let elapsed = now.saturating_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        self.updated = self.updated.max(now);
    }

    fn is_full(&mut self, limit: RateLimit, now: Time) -> bool {
        self.refill(limit, now);
        self.tokens >= f64::from(limit.burst)
    }
}

/// One bucket per key (a remote address), forgetting keys whose bucket has refilled.
#[derive(Debug, Default)]
pub(crate) struct KeyedBuckets {
    buckets: BTreeMap<String, TokenBucket>,
}

/// Above this many tracked keys, full buckets are forgotten.
const PRUNE_ABOVE: usize = 4096;

impl KeyedBuckets {
    pub(crate) fn take(&mut self, key: &str, limit: RateLimit, now: Time) -> bool {
        if self.buckets.len() > PRUNE_ABOVE {
            self.buckets.retain(|_, bucket| !bucket.is_full(limit, now));
        }
        self.buckets
            .entry(key.to_string())
            .or_insert_with(|| TokenBucket::full(limit, now))
            .take(limit, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limit = RateLimit {
            per_second: 10.0,
            burst: 3,
        };
        let t0 = Time::from_millis(1000);
        let mut bucket = TokenBucket::full(limit, t0);
        assert!((0..3).all(|_| bucket.take(limit, t0)));
        assert!(!bucket.take(limit, t0));
        assert!(!bucket.take(limit, t0 + Duration::from_millis(99)));
        assert!(bucket.take(limit, t0 + Duration::from_millis(100)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.take(limit, later)));
        assert!(!bucket.take(limit, later));
    }

    #[test]
    fn keys_are_limited_separately_and_full_ones_forgotten() {
        let limit = RateLimit {
            per_second: 1.0,
            burst: 1,
        };
        let mut buckets = KeyedBuckets::default();
        let now = Time::ZERO;
        assert!(buckets.take("a", limit, now));
        assert!(!buckets.take("a", limit, now));
        assert!(buckets.take("b", limit, now));
        for i in 0..5000 {
            buckets.take(&format!("k{i}"), limit, now + Duration::from_secs(10 + i));
        }
        assert!(buckets.buckets.len() <= PRUNE_ABOVE + 2);
    }
}
