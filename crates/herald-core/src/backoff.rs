//! Reconnect delays: the `backoff` crate's exponential growth plus our own
//! seeded jitter.
//!
//! `backoff` 0.4 randomizes with a global RNG that cannot be seeded, so its
//! randomization is set to zero and the jitter is applied here, from the
//! session's seed: tests replay exactly and can check the bounds. Its elapsed
//! time limit is off; attempts are counted here instead.

use std::time::Duration;

use backoff::backoff::Backoff as _;

use crate::BackoffConfig;

#[derive(Debug)]
pub(crate) struct Backoff {
    growth: backoff::ExponentialBackoff,
    config: BackoffConfig,
    rng: fastrand::Rng,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig, seed: u64) -> Self {
        let growth = backoff::ExponentialBackoff {
            current_interval: config.initial,
            initial_interval: config.initial,
            randomization_factor: 0.0,
            multiplier: config.factor.max(1.0),
            max_interval: config.max,
            max_elapsed_time: None,
            ..Default::default()
        };
        Self { growth, config, rng: fastrand::Rng::with_seed(seed), failures: 0 }
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
        let base = self.growth.next_backoff().unwrap_or(self.config.max);
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        let scale = 1.0 - jitter + 2.0 * jitter * self.rng.f64();
        Some(base.mul_f64(scale))
    }

    /// Counts a failure that waits a delay chosen elsewhere (a server hint).
    pub(crate) fn record_failure(&mut self) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.config.max_attempts.is_none_or(|max| self.failures <= max)
    }

    /// A healthy connection: the next failure starts from `initial` again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
        self.growth.current_interval = self.config.initial;
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
