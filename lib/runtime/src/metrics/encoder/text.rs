//! Prometheus text format 0.0.4, written straight from the registered
//! metrics: plain metrics from their atomics, histograms from the
//! `prometheus` crate's snapshot of one histogram, labels escaped once at
//! creation. No `gather()`, no `TextEncoder`.

use super::Encoder;
use crate::metrics::expfmt::ParsedSample;
use crate::metrics::sample::SeriesValue;
use crate::metrics::spec::PromType;
use crate::metrics::text::{escape_help, write_f64, write_int, write_sample_key};
use crate::metrics::Histogram;

/// The `Content-Type` of text format 0.0.4.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes text format 0.0.4 into a `String`.
#[derive(Debug, Default)]
pub(crate) struct TextEncoder {
    out: String,
    bucket_keys: BucketKeys,
}

impl TextEncoder {
    /// An encoder whose buffer starts with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            out: String::with_capacity(capacity),
            bucket_keys: BucketKeys::default(),
        }
    }
}

impl Encoder for TextEncoder {
    type Output = String;

    fn family(&mut self, name: &str, help: Option<&str>, prom_type: PromType) {
        let out = &mut self.out;
        if let Some(help) = help {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape_help(out, help);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(prom_type.as_str());
        out.push('\n');
    }

    #[inline]
    fn series(&mut self, name: &str, labels: &str, value: SeriesValue<'_>) {
        write_series(&mut self.out, &mut self.bucket_keys, name, labels, value);
    }

    #[inline]
    fn external_sample(&mut self, sample: &ParsedSample) {
        write_external_sample(&mut self.out, sample, write_int);
    }

    fn finish(self) -> String {
        self.out
    }
}

/// Writes a sample a text callback handed in: its key, value and, if it has
/// one, its timestamp (milliseconds) as `write_timestamp` writes it.
pub(crate) fn write_external_sample(
    out: &mut String,
    sample: &ParsedSample,
    write_timestamp: impl FnOnce(&mut String, i64),
) {
    out.push_str(&sample.key);
    out.push(' ');
    write_f64(out, sample.value);
    if let Some(ms) = sample.timestamp {
        out.push(' ');
        write_timestamp(out, ms);
    }
    out.push('\n');
}

/// Writes the sample lines of one series; `labels` escaped already.
#[inline]
pub(crate) fn write_series(
    out: &mut String,
    bucket_keys: &mut BucketKeys,
    name: &str,
    labels: &str,
    value: SeriesValue<'_>,
) {
    match value {
        SeriesValue::Float(v) => {
            write_key(out, name, "", labels, None);
            write_f64(out, v);
            out.push('\n');
        }
        SeriesValue::Int(v) => {
            write_key(out, name, "", labels, None);
            write_int(out, v);
            out.push('\n');
        }
        SeriesValue::Histogram(h) => write_histogram(out, bucket_keys, name, labels, h, |_, _| {}),
    }
}

#[inline]
fn write_key(out: &mut String, name: &str, suffix: &str, labels: &str, le: Option<f64>) {
    write_sample_key(out, name, suffix, labels, le);
    out.push(' ');
}

/// The keys of a histogram's bucket lines, the part every line repeats
/// rendered once: the key up to its `le` value (`name_bucket{labels,le="`),
/// and the `le` values with what closes the key (`0.005"} `) for the bounds
/// seen last. The histograms of a family (and most families) share their
/// bounds, so a scrape formats each bound once, not once per line.
#[derive(Debug, Default)]
pub(crate) struct BucketKeys {
    /// `name_bucket{labels,le="` of the histogram being written.
    prefix: String,
    /// The bounds `les` was rendered for.
    bounds: Vec<f64>,
    /// Each bound's `le` value and the key's end (`0.005"} `), `+Inf` last.
    les: Vec<String>,
}

impl BucketKeys {
    /// Prepares the keys of the bucket lines of histogram `name{labels}`
    /// with `bounds`.
    fn prepare(&mut self, name: &str, labels: &str, bounds: &[f64]) {
        self.prefix.clear();
        self.prefix.push_str(name);
        self.prefix.push_str("_bucket{");
        self.prefix.push_str(labels);
        if !labels.is_empty() {
            self.prefix.push(',');
        }
        self.prefix.push_str("le=\"");
        if self.bounds.as_slice() == bounds && !self.les.is_empty() {
            return;
        }
        self.bounds.clear();
        self.bounds.extend_from_slice(bounds);
        self.les.clear();
        for &le in bounds.iter().chain([&f64::INFINITY]) {
            let mut key = String::new();
            write_f64(&mut key, le);
            key.push_str("\"} ");
            self.les.push(key);
        }
    }

    /// Writes the key of bucket `i` (`+Inf` is `bounds.len()`) and the space
    /// before its value.
    #[inline]
    fn write(&self, out: &mut String, i: usize) {
        // `prepare` rendered a key per bound and `+Inf`, so the fallback is
        // never taken; it would write `+Inf`'s.
        let key = self.les.get(i).map_or("+Inf\"} ", String::as_str);
        out.push_str(&self.prefix);
        out.push_str(key);
    }
}

/// Writes a histogram's lines; `after_bucket(out, i)` may add to the line of
/// bucket `i` (`+Inf` last) before its newline.
#[inline]
pub(crate) fn write_histogram(
    out: &mut String,
    bucket_keys: &mut BucketKeys,
    name: &str,
    labels: &str,
    h: &Histogram,
    mut after_bucket: impl FnMut(&mut String, usize),
) {
    // The count is the buckets' total, so `+Inf` and `_count` agree.
    let sum = h.get_sample_sum();
    bucket_keys.prepare(name, labels, h.bounds());
    let count = h.for_each_cumulative(|i, cumulative| {
        bucket_keys.write(out, i);
        write_int(out, cumulative);
        after_bucket(out, i);
        out.push('\n');
    });
    write_key(out, name, "_sum", labels, None);
    write_f64(out, sum);
    out.push('\n');
    write_key(out, name, "_count", labels, None);
    write_int(out, count);
    out.push('\n');
}
