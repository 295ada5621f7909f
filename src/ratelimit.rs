//! Token buckets: the one rate-limiting primitive, used per sync connection
//! (messages per second) and per user (API requests per minute).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// A token bucket: `capacity` tokens, refilled at `per_sec`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    capacity: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_sec: f64, capacity: f64) -> Self {
        TokenBucket {
            tokens: capacity,
            capacity,
            per_sec,
            last: Instant::now(),
        }
    }

    /// Take one token, or say how long until one is available.
    pub fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.per_sec.max(f64::MIN_POSITIVE);
            Err(Duration::from_secs_f64(wait.min(3600.0)))
        }
    }

    fn is_full(&self, now: Instant) -> bool {
        self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_sec >= self.capacity
    }
}

/// One bucket per key (a user id). Buckets that have refilled are dropped
/// now and then, so the map holds only recently active keys.
#[derive(Debug)]
pub struct KeyedLimiter {
    per_sec: f64,
    capacity: f64,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl KeyedLimiter {
    /// `per_minute` sustained, bursts up to `per_minute` as well.
    pub fn per_minute(per_minute: u32) -> Self {
        KeyedLimiter {
            per_sec: f64::from(per_minute) / 60.0,
            capacity: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `key`.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            let now = Instant::now();
            buckets.retain(|_, b| !b.is_full(now));
        }
        buckets
            .entry(key.to_owned())
            .or_insert_with(|| TokenBucket::new(self.per_sec, self.capacity))
            .take()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses() {
        let mut b = TokenBucket::new(1.0, 5.0);
        assert_eq!((0..5).filter(|_| b.take().is_ok()).count(), 5);
        assert!(b.take().is_err());
    }

    #[test]
    fn a_key_runs_dry_and_others_do_not() {
        let l = KeyedLimiter::per_minute(3);
        for _ in 0..3 {
            l.check("a").unwrap();
        }
        let wait = l.check("a").unwrap_err();
        assert!(
            wait > Duration::from_secs(10) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        l.check("b").unwrap();
    }
}
