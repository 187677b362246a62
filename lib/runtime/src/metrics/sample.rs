//! What an encoder is handed for one series' value, read from the metric
//! without committing to any exposition format. (Its labels come as the
//! canonical text `a="x",b="y"`: sorted by name, escaped once at creation.)

use super::histogram::ExemplarSlots;
use super::native::NativeBuckets;
use prometheus::proto;

/// The value of one series. (`pub` in a private module: the sealed trait
/// that reads values names it.)
#[derive(Debug, Clone, Copy)]
pub enum SeriesValue<'a> {
    /// A float counter or gauge.
    Float(f64),
    /// An integer counter or gauge.
    Int(i128),
    /// A histogram: cumulative buckets (without `+Inf`), count and sum, its
    /// exemplars and its native buckets.
    Histogram {
        /// The buckets, count and sum.
        snapshot: &'a proto::Histogram,
        /// The exemplar slots, one per bucket and `+Inf` last.
        exemplars: Option<&'a ExemplarSlots>,
        /// The native buckets (read by the protobuf exposition only).
        native: Option<&'a NativeBuckets>,
    },
}
