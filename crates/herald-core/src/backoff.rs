//! Reconnect delays: exponential growth to a cap, plus jitter from the
//! session's seed, so tests replay exactly and can check the bounds.
//!
//! Written out rather than taken from the `backoff` crate, whose global,
//! unseedable RNG (rand, getrandom) was most of its weight in the browser
//! build; the growth rule is the one it applies.

use std::time::Duration;

use crate::BackoffConfig;

#[derive(Debug)]
pub(crate) struct Backoff {
    /// The delay before jitter of the next attempt.
    current: Duration,
    config: BackoffConfig,
    rng: fastrand::Rng,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig, seed: u64) -> Self {
        Self { current: config.initial, config, rng: fastrand::Rng::with_seed(seed), failures: 0 }
    }

    /// Failed attempts since the last healthy connection.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns the delay before the next attempt, or
    /// `None` when `max_attempts` failures in a row have used up the budget.
    pub(crate) fn next_delay(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if self.config.max_attempts.is_some_and(|max| self.failures > max) {
            return None;
        }
        let base = self.current;
        self.current = self.grown();
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        let scale = 1.0 - jitter + 2.0 * jitter * self.rng.f64();
        Some(base.mul_f64(scale))
    }

    /// `current` times the factor, or the cap once that would pass it (also
    /// when the factor is absurd: the comparison keeps it from overflowing).
    fn grown(&self) -> Duration {
        let factor = self.config.factor.max(1.0);
        let (current, max) = (self.current.as_nanos() as f64, self.config.max.as_nanos() as f64);
        if current >= max / factor { self.config.max } else { Duration::from_nanos((current * factor) as u64) }
    }

    /// Counts a failure that waits a delay chosen elsewhere (a server hint).
    pub(crate) fn record_failure(&mut self) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.config.max_attempts.is_none_or(|max| self.failures <= max)
    }

    /// A healthy connection: the next failure starts from `initial` again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
        self.current = self.config.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jitter: f64) -> BackoffConfig {
        BackoffConfig { jitter, ..BackoffConfig::default() }
    }

    #[test]
    fn grows_exponentially_to_the_cap_without_jitter() {
        let mut backoff = Backoff::new(config(0.0), 1);
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay().unwrap().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_spreads() {
        for seed in 0..200 {
            let mut backoff = Backoff::new(config(0.5), seed);
            let mut base = 1.0f64;
            for _ in 0..8 {
                let delay = backoff.next_delay().unwrap().as_secs_f64();
                assert!(delay >= base * 0.5 - 1e-9 && delay <= base * 1.5 + 1e-9, "{delay} for base {base}");
                base = (base * 2.0).min(30.0);
            }
        }
        let firsts: std::collections::BTreeSet<u64> =
            (0..100).map(|seed| Backoff::new(config(0.5), seed).next_delay().unwrap().as_millis() as u64).collect();
        assert!(firsts.len() > 90, "only {} distinct first delays", firsts.len());
    }

    #[test]
    fn same_seed_same_delays() {
        let run = |seed| {
            let mut b = Backoff::new(config(0.5), seed);
            (0..5).map(|_| b.next_delay().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn max_attempts_ends_the_budget_and_reset_restores_it() {
        let mut backoff = Backoff::new(BackoffConfig { max_attempts: Some(2), jitter: 0.0, ..Default::default() }, 0);
        assert!(backoff.next_delay().is_some());
        assert!(backoff.next_delay().is_some());
        assert_eq!(backoff.next_delay(), None);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Some(Duration::from_secs(1)));
    }
}
