//! Latency percentiles: a log-linear histogram of nanoseconds (like HdrHistogram, 64 buckets
//! per power of two, so a percentile is within 1.6 % of the truth), small enough to keep one
//! per scenario and to send from a shard to the coordinator as one line of text, where shards'
//! histograms are merged.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, Result};

/// Values below this are their own bucket.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above `LINEAR` (2^6).
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets for every u64: 128 exact ones, then 64 per power of two from 2^7 to 2^63.
const BUCKETS: usize = (LINEAR + (64 - 7) * SUB) as usize;

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= 7
    let mantissa = (v >> (exp - SUB_BITS)) & (SUB - 1);
    (LINEAR + u64::from(exp - 7) * SUB + mantissa) as usize
}

/// The smallest value of bucket `i`, and the bucket's width.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let exp = (i - LINEAR) / SUB + 7;
    let mantissa = (i - LINEAR) % SUB;
    let shift = exp - u64::from(SUB_BITS);
    ((SUB + mantissa) << shift, 1 << shift)
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
        }
    }

    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(ns)] += 1;
        self.count += 1;
        self.max = self.max.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max)
    }

    /// The value below which a fraction `q` (0..=1) of the samples fall: the middle of the
    /// bucket holding that rank, never above the largest sample. Zero without samples.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bounds(i);
                return Duration::from_nanos((low + width / 2).min(self.max));
            }
        }
        Duration::from_nanos(self.max)
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// `MAX;I:C,I:C,...` (non-empty buckets only): no spaces or `=`, so it fits a
    /// `key=value` field of the shard protocol.
    pub fn encode(&self) -> String {
        let mut out = format!("{};", self.max);
        for (i, &c) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            if !out.ends_with(';') {
                out.push(',');
            }
            let _ = write!(out, "{i}:{c}");
        }
        out
    }

    pub fn decode(text: &str) -> Result<Histogram> {
        let (max, buckets) = text.split_once(';').context("histogram without `;`")?;
        let mut h = Histogram::new();
        h.max = max.parse().context("histogram maximum")?;
        for pair in buckets.split(',').filter(|p| !p.is_empty()) {
            let (i, c) = pair.split_once(':').context("histogram bucket")?;
            let i: usize = i.parse().context("bucket index")?;
            let c: u64 = c.parse().context("bucket count")?;
            *h.counts.get_mut(i).context("bucket index out of range")? += c;
            h.count += c;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS && i >= last, "{v}");
            let (low, width) = bounds(i);
            assert!(
                low <= v && v - low < width,
                "{v}: bucket {i} = {low}+{width}"
            );
            last = i;
        }
    }

    #[test]
    fn quantiles_are_close_and_survive_encoding() {
        let mut h = Histogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let h = Histogram::decode(&h.encode()).unwrap();
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5).as_secs_f64() * 1e6;
        let p99 = h.quantile(0.99).as_secs_f64() * 1e6;
        assert!((p50 - 500.0).abs() < 500.0 * 0.016, "{p50}");
        assert!((p99 - 990.0).abs() < 990.0 * 0.016, "{p99}");
        assert_eq!(h.max(), Duration::from_micros(1000));
        let mut twice = h.clone();
        twice.merge(&h);
        assert_eq!(twice.count(), 2000);
        assert_eq!(Histogram::new().quantile(0.99), Duration::ZERO);
    }
}
