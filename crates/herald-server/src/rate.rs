//! Token buckets: a connection's inbound messages, and each user's HTTP
//! publishes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use axum::http::StatusCode;
use tokio::time::Instant;

use crate::{auth::Identity, extract::Refusal, hub::Tenant};

/// A rate: tokens per second, and how many may be saved up. `per_sec == 0`
/// is no limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    pub(crate) per_sec: u32,
    pub(crate) burst: u32,
}

/// A token bucket, full at first.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f32,
    last: Instant,
    /// Refusals in a row.
    pub(crate) strikes: u32,
}

impl Bucket {
    pub(crate) fn new(rate: Rate, now: Instant) -> Self {
        Self { tokens: rate.burst as f32, last: now, strikes: 0 }
    }

    /// Spends a token if there is one.
    pub(crate) fn take(&mut self, rate: Rate, now: Instant) -> bool {
        if rate.per_sec == 0 {
            return true;
        }
        let refill = now.duration_since(self.last).as_secs_f32() * rate.per_sec as f32;
        self.tokens = (self.tokens + refill).min(rate.burst as f32);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            true
        } else {
            self.strikes += 1;
            false
        }
    }

    /// Whether the bucket would be full again at `now`: forgetting it then
    /// changes nothing.
    fn refilled(&self, rate: Rate, now: Instant) -> bool {
        self.tokens + now.duration_since(self.last).as_secs_f32() * rate.per_sec as f32 >= rate.burst as f32
    }
}

/// Buckets of more users than this are swept for full ones.
const SWEEP_AT: usize = 10_000;

/// `POST /api/publish` per user (a tenant's user): one bucket each, kept
/// only while it is not full again, so the map holds the users that
/// published within the last burst's refill time.
#[derive(Debug)]
pub(crate) struct PublishLimits {
    rate: Rate,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    by_user: HashMap<(Tenant, Arc<str>), Bucket>,
    /// Size at which the next sweep runs: sweeps cost a pass over the map,
    /// so they run each time it doubles.
    sweep_at: usize,
}

impl PublishLimits {
    pub(crate) fn new(rate: Rate) -> Self {
        Self { rate, buckets: Mutex::new(Buckets { by_user: HashMap::new(), sweep_at: SWEEP_AT }) }
    }

    /// Spends one of `identity`'s publishes, or says how long to wait (429).
    pub(crate) fn check(&self, identity: &Identity) -> Result<(), Refusal> {
        let rate = self.rate;
        if rate.per_sec == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.by_user.len() >= buckets.sweep_at {
            buckets.by_user.retain(|_, bucket| !bucket.refilled(rate, now));
            buckets.sweep_at = (buckets.by_user.len() * 2).max(SWEEP_AT);
        }
        let key = (identity.tenant.clone(), identity.user.clone());
        if buckets.by_user.entry(key).or_insert_with(|| Bucket::new(rate, now)).take(rate, now) {
            return Ok(());
        }
        let message = format!("rate limited: over {} publishes/s for this user; slow down", rate.per_sec);
        Err(Refusal::new(StatusCode::TOO_MANY_REQUESTS, message).retry_after(1))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate_and_knows_when_it_is_full_again() {
        let rate = Rate { per_sec: 10, burst: 3 };
        let start = Instant::now();
        let mut bucket = Bucket::new(rate, start);
        assert_eq!((0..4).map(|_| bucket.take(rate, start)).collect::<Vec<_>>(), [true, true, true, false]);
        assert_eq!(bucket.strikes, 1);
        assert!(bucket.take(rate, start + Duration::from_millis(100)), "one token per 100 ms");
        assert!(!bucket.refilled(rate, start + Duration::from_millis(200)));
        assert!(bucket.refilled(rate, start + Duration::from_millis(400)));
    }
}
