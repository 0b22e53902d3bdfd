//! Latency percentiles from an HDR histogram.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Publish-to-deliver latency, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

pub(crate) fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour at 3 significant digits: ~100 KiB, one per receiving task group.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds and precision are valid constants")
}

impl Latency {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}
