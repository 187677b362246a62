//! The native (sparse, exponential) buckets every [`Histogram`](super::Histogram)
//! keeps beside its classic ones, written in the protobuf exposition.
//!
//! Schema 3: each power of two is split into 8 buckets, bucket `i` holding
//! the values in `(2^((i-1)/8), 2^(i/8)]`, so neighbouring bounds differ by a
//! factor of 2^(1/8) ≈ 1.0905 (what Prometheus's Go client picks for its
//! default bucket factor of 1.1). A quantile Prometheus computes from them
//! lies in the bucket of the true one: within 9.05% of it. Values of
//! magnitude at most [`ZERO_THRESHOLD`] count in the zero bucket.
//!
//! Counts live in lazily allocated chunks of atomic counters: the 512
//! buckets between 2^-32 and 2^32 (every latency from sub-nanosecond to a
//! century, every token or byte count a request has) as 8 chunks of 64,
//! allocated on their first value; any other bucket in a small map behind a
//! lock. An observation is one atomic add; a histogram whose values span two
//! orders of magnitude holds one or two chunks.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The schema: 2^3 buckets per power of two.
pub const SCHEMA: i32 = 3;
const PER_OCTAVE: i32 = 1 << SCHEMA;

/// Values of magnitude at most this count in the zero bucket (2^-128, the
/// Go client's default).
pub const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

const CHUNK: usize = 64;
const CHUNKS: usize = 8;
/// The lowest index held in a chunk: the bucket above 2^-32.
const DENSE_LOW: i32 = -(CHUNKS as i32 * CHUNK as i32) / 2;
/// The bucket of `+Inf`: one above the bucket of `f64::MAX`.
const INF_INDEX: i32 = 1024 * PER_OCTAVE + 1;

/// `2^(k/8) / 2` for `k` in `0..8`: the fractions (as `frexp` returns them)
/// at which schema 3's buckets end within one power of two.
fn bounds() -> &'static [f64; PER_OCTAVE as usize] {
    static BOUNDS: OnceLock<[f64; PER_OCTAVE as usize]> = OnceLock::new();
    BOUNDS.get_or_init(|| std::array::from_fn(|k| (k as f64 / PER_OCTAVE as f64).exp2() / 2.0))
}

/// The index of the bucket that holds `v`, a finite value above
/// [`ZERO_THRESHOLD`], or `+Inf`.
pub(crate) fn bucket_index(v: f64) -> i32 {
    if v.is_infinite() {
        return INF_INDEX;
    }
    // frexp: v = frac * 2^exp with frac in [0.5, 1); `v` is normal here.
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1022;
    let frac = f64::from_bits((bits & ((1 << 52) - 1)) | (1022 << 52));
    let within = bounds().partition_point(|b| *b < frac) as i32;
    within + (exp - 1) * PER_OCTAVE
}

/// The upper bound of bucket `index`.
pub fn bucket_upper_bound(index: i32) -> f64 {
    let k = index.rem_euclid(PER_OCTAVE);
    let octave = index.div_euclid(PER_OCTAVE);
    // 2^(k/8) * 2^octave, with the fraction from the same table as the index.
    bounds()[k as usize] * 2.0 * (octave as f64).exp2()
}

/// The buckets of one sign.
#[derive(Default)]
struct Buckets {
    chunks: [OnceLock<Box<[AtomicU64; CHUNK]>>; CHUNKS],
    /// Buckets outside the chunks' range.
    far: Mutex<BTreeMap<i32, u64>>,
}

impl Buckets {
    #[inline]
    fn add(&self, index: i32) {
        let offset = index - DENSE_LOW;
        if (0..(CHUNKS * CHUNK) as i32).contains(&offset) {
            let offset = offset as usize;
            let chunk = self.chunks[offset / CHUNK]
                .get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
            chunk[offset % CHUNK].fetch_add(1, Ordering::Relaxed);
        } else {
            *self.far.lock().entry(index).or_default() += 1;
        }
    }

    /// Every non-empty bucket, by increasing index.
    fn read(&self, out: &mut Vec<(i32, u64)>) {
        let far = self.far.lock();
        out.extend(far.range(..DENSE_LOW).map(|(i, n)| (*i, *n)));
        for (c, chunk) in self.chunks.iter().enumerate() {
            let Some(chunk) = chunk.get() else { continue };
            for (j, n) in chunk.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    out.push((DENSE_LOW + (c * CHUNK + j) as i32, n));
                }
            }
        }
        out.extend(far.range(DENSE_LOW..).map(|(i, n)| (*i, *n)));
    }
}

/// The native buckets of one histogram.
#[derive(Default)]
pub struct NativeBuckets {
    zero: AtomicU64,
    /// NaN goes in no bucket but counts as an observation.
    nan: AtomicU64,
    positive: Buckets,
    negative: OnceLock<Box<Buckets>>,
}

impl std::fmt::Debug for NativeBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeBuckets").finish_non_exhaustive()
    }
}

/// A read of the native buckets: what the protobuf exposition writes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NativeSnapshot {
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// NaN observations (in no bucket).
    pub nan_count: u64,
    /// Non-empty buckets of positive values: (index, count), by index.
    pub positive: Vec<(i32, u64)>,
    /// Non-empty buckets of negative values: (index of the magnitude, count).
    pub negative: Vec<(i32, u64)>,
}

impl NativeSnapshot {
    /// Every observation counted: the zero bucket, the buckets and NaNs.
    pub fn count(&self) -> u64 {
        let buckets: u64 = self
            .positive
            .iter()
            .chain(&self.negative)
            .map(|b| b.1)
            .sum();
        self.zero_count + self.nan_count + buckets
    }
}

impl NativeBuckets {
    /// Counts `v` in its bucket.
    #[inline]
    pub(crate) fn observe(&self, v: f64) {
        let magnitude = v.abs();
        if magnitude <= ZERO_THRESHOLD {
            self.zero.fetch_add(1, Ordering::Relaxed);
        } else if v.is_nan() {
            self.nan.fetch_add(1, Ordering::Relaxed);
        } else if v > 0.0 {
            self.positive.add(bucket_index(v));
        } else {
            self.negative
                .get_or_init(Box::default)
                .add(bucket_index(magnitude));
        }
    }

    /// Reads every bucket.
    pub fn snapshot(&self) -> NativeSnapshot {
        let mut s = NativeSnapshot::default();
        self.snapshot_into(&mut s);
        s
    }

    /// Reads every bucket into `s`, reusing its buffers.
    pub(crate) fn snapshot_into(&self, s: &mut NativeSnapshot) {
        s.zero_count = self.zero.load(Ordering::Relaxed);
        s.nan_count = self.nan.load(Ordering::Relaxed);
        s.positive.clear();
        s.negative.clear();
        self.positive.read(&mut s.positive);
        if let Some(negative) = self.negative.get() {
            negative.read(&mut s.negative);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_the_values_up_to_its_upper_bound() {
        assert_eq!(bucket_index(1.0), 0);
        assert_eq!(bucket_index(2.0), 8);
        assert_eq!(bucket_index(0.5), -8);
        assert_eq!(bucket_index(1.05), 1);
        assert_eq!(bucket_upper_bound(0), 1.0);
        assert_eq!(bucket_upper_bound(8), 2.0);
        assert_eq!(bucket_upper_bound(-8), 0.5);
        for i in -300..300 {
            let upper = bucket_upper_bound(i);
            let lower = bucket_upper_bound(i - 1);
            assert!((upper / lower - 2f64.powf(0.125)).abs() < 1e-12, "{i}");
            assert_eq!(bucket_index(upper), i, "upper bound of {i}");
            assert_eq!(bucket_index(upper * (1.0 - 1e-15)), i, "just below {i}");
            assert_eq!(
                bucket_index(lower * (1.0 + 1e-15)),
                i,
                "just above {}",
                i - 1
            );
        }
        assert_eq!(bucket_index(f64::MAX), 1024 * 8);
        assert_eq!(bucket_index(f64::INFINITY), 1024 * 8 + 1);
    }

    #[test]
    fn observations_land_in_their_buckets_near_and_far() {
        let n = NativeBuckets::default();
        for v in [
            0.0,
            -0.0,
            1e-40,
            1.0,
            1.0,
            1.05,
            -3.0,
            1e30,
            1e-20,
            f64::NAN,
            f64::INFINITY,
        ] {
            n.observe(v);
        }
        let s = n.snapshot();
        assert_eq!(s.zero_count, 3);
        assert_eq!(s.nan_count, 1);
        assert_eq!(
            s.positive,
            vec![
                (bucket_index(1e-20), 1),
                (0, 2),
                (1, 1),
                (bucket_index(1e30), 1),
                (INF_INDEX, 1)
            ]
        );
        assert_eq!(s.negative, vec![(bucket_index(3.0), 1)]);
        assert_eq!(s.count(), 11);
    }
}
