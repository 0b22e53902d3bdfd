//! Reconnect delays: `backon`'s exponential growth plus our own seeded
//! jitter.
//!
//! `backon`'s jitter only ever adds to a delay, and its RNG is not the
//! session's, so its jitter is off and the jitter is applied here, from the
//! session's seed: tests replay exactly and can check the bounds. Its attempt
//! limit is off too; failures are counted here, so that a healthy connection
//! can reset them.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};

use crate::BackoffConfig;

#[derive(Debug)]
pub(crate) struct Backoff {
    growth: ExponentialBackoff,
    config: BackoffConfig,
    rng: fastrand::Rng,
    failures: u32,
    /// A server's advice was followed as it is since the last healthy connection.
    advice_followed: bool,
}

/// Delays from `initial`, times `factor` per call, capped at `max`, forever.
fn growth(config: &BackoffConfig) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(config.initial)
        .with_max_delay(config.max)
        .with_factor(config.factor.max(1.0) as f32)
        .without_max_times()
        .build()
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig, seed: u64) -> Self {
        let rng = fastrand::Rng::with_seed(seed);
        Self { growth: growth(&config), config, rng, failures: 0, advice_followed: false }
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
        // The first delay is `initial` even above `max`: cap it too.
        let base = self.growth.next().unwrap_or(self.config.max).min(self.config.max);
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        let scale = 1.0 - jitter + 2.0 * jitter * self.rng.f64();
        Some(base.mul_f64(scale))
    }

    /// Records a failure for which the server advised `advice`, and returns
    /// the delay before the next attempt (`None` as for
    /// [`next_delay`](Self::next_delay)). Advice is followed as it is once;
    /// until a connection then stays healthy, the delay is the longer of the
    /// advice and the backoff's, so a server that closes every connection at
    /// once (or advises the same delay every time) gets no reconnect loop.
    pub(crate) fn advised(&mut self, advice: Duration) -> Option<Duration> {
        if std::mem::replace(&mut self.advice_followed, true) {
            self.next_delay().map(|delay| delay.max(advice))
        } else {
            self.record_failure().then_some(advice)
        }
    }

    /// Counts a failure that waits a delay chosen elsewhere.
    fn record_failure(&mut self) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.config.max_attempts.is_none_or(|max| self.failures <= max)
    }

    /// A healthy connection: the next failure starts from `initial` again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
        self.advice_followed = false;
        self.growth = growth(&self.config);
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
