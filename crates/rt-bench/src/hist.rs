//! A compact log-linear latency histogram (microseconds, ~3% resolution).
//!
//! Every subscriber records every delivery, so recording must be a few instructions and the
//! histogram small (about 4.6 KiB); it is merged into the phase totals once per phase.

use serde::Serialize;

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = SUB + (41 - SUB_BITS as usize) * SUB;

/// Counts of values in log-linear buckets.
#[derive(Clone, Debug)]
pub(crate) struct Hist {
    counts: Vec<u32>,
    total: u64,
    max: u64,
}

/// Percentiles of a histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let e = e.min(40);
    let mantissa = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    (SUB + (e - SUB_BITS) as usize * SUB + mantissa).min(BUCKETS - 1)
}

/// The highest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let e = (i - SUB) / SUB + SUB_BITS as usize;
    let mantissa = ((i - SUB) % SUB) as u64;
    (((SUB as u64) + mantissa + 1) << (e - SUB_BITS as usize)) - 1
}

impl Hist {
    pub(crate) fn new() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    pub(crate) fn record(&mut self, v: u64) {
        let i = index(v);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub(crate) fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub(crate) fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
        self.max = 0;
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }

    pub(crate) fn percentiles(&self) -> Percentiles {
        Percentiles {
            count: self.total,
            p50_us: self.quantile(0.50),
            p99_us: self.quantile(0.99),
            p999_us: self.quantile(0.999),
            max_us: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values_within_a_few_percent() {
        for v in [0u64, 1, 31, 32, 33, 100, 1000, 4999, 123_456, 10_000_000] {
            let i = index(v);
            assert!(upper(i) >= v, "{v}: upper {}", upper(i));
            assert!(
                upper(i) as f64 <= v as f64 * 1.07 + 1.0,
                "{v}: upper {}",
                upper(i)
            );
            if i > 0 {
                assert!(upper(i - 1) < v, "{v}");
            }
        }
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = Hist::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p = h.percentiles();
        assert_eq!(p.count, 10_000);
        assert!((4_900..=5_200).contains(&p.p50_us), "{p:?}");
        assert!((9_800..=10_000).contains(&p.p99_us), "{p:?}");
        assert_eq!(p.max_us, 10_000);
        let mut other = Hist::new();
        other.record(50_000);
        h.merge(&other);
        assert_eq!(h.percentiles().max_us, 50_000);
    }
}
