//! What an encoder is handed for one series' value, read from the metric
//! without committing to any exposition format. (Its labels come as the
//! canonical text `a="x",b="y"`: sorted by name, escaped once at creation.)

use super::histogram::Histogram;

/// The value of one series. (`pub` in a private module: the sealed trait
/// that reads values names it.)
#[derive(Debug, Clone, Copy)]
pub enum SeriesValue<'a> {
    /// A float counter or gauge.
    Float(f64),
    /// An integer counter or gauge.
    Int(i128),
    /// A histogram, read by the encoder: its classic buckets, sum and
    /// exemplars, and its native buckets.
    Histogram(&'a Histogram),
}
