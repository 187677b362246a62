//! The Prometheus protobuf exposition (`io.prometheus.client.MetricFamily`
//! messages, each prefixed with its length): the format Prometheus asks for
//! first when started with `--enable-feature=native-histograms`, and the only
//! one that carries native histograms.
//!
//! Written straight into bytes (the wire format is a handful of rules; no
//! generated code, no message structs). A histogram carries its classic
//! buckets (with their exemplars) and its native buckets in one message, as
//! the format intends: a scraper without native histograms reads the
//! classic ones. Its count is the native buckets' count (zero bucket, buckets
//! and NaNs), read after the classic buckets, so the two agree exactly and
//! every classic bucket is at most the count.
//!
//! Series names and label values are those of the text formats (`le` is the
//! only label a classic bucket differs by, and the format has no such label),
//! so a target keeps its series whichever format was negotiated.

use super::Encoder;
use crate::metrics::expfmt::{self, ParsedSample};
use crate::metrics::histogram::Histogram;
use crate::metrics::native::{NativeSnapshot, SCHEMA, ZERO_THRESHOLD};
use crate::metrics::sample::SeriesValue;
use crate::metrics::spec::PromType;
use std::collections::BTreeMap;

/// The `Content-Type` of the protobuf exposition.
pub(crate) const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// The protobuf wire format's primitives, on a `Vec<u8>`.
mod wire {
    use super::{FIXED64, LEN, VARINT};

    #[inline]
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[inline]
    pub fn varint_len(v: u64) -> usize {
        (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }

    #[inline]
    pub fn key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
        varint(out, u64::from(field << 3 | wire_type));
    }

    #[inline]
    pub fn double(out: &mut Vec<u8>, field: u32, v: f64) {
        key(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }

    #[inline]
    pub fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
        key(out, field, VARINT);
        varint(out, v);
    }

    #[inline]
    pub fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    #[inline]
    pub fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        key(out, field, LEN);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    /// Writes `field` as a nested message whose body `body` writes, through
    /// `scratch` (cleared first).
    #[inline]
    pub fn message(
        out: &mut Vec<u8>,
        field: u32,
        scratch: &mut Vec<u8>,
        body: impl FnOnce(&mut Vec<u8>),
    ) {
        scratch.clear();
        body(scratch);
        bytes(out, field, scratch);
    }
}

// Field numbers of io.prometheus.client messages.
mod field {
    pub const FAMILY_NAME: u32 = 1;
    pub const FAMILY_HELP: u32 = 2;
    pub const FAMILY_TYPE: u32 = 3;
    pub const FAMILY_METRIC: u32 = 4;
    pub const METRIC_LABEL: u32 = 1;
    pub const METRIC_GAUGE: u32 = 2;
    pub const METRIC_COUNTER: u32 = 3;
    pub const METRIC_SUMMARY: u32 = 4;
    pub const METRIC_UNTYPED: u32 = 5;
    pub const METRIC_TIMESTAMP_MS: u32 = 6;
    pub const METRIC_HISTOGRAM: u32 = 7;
    pub const LABEL_NAME: u32 = 1;
    pub const LABEL_VALUE: u32 = 2;
    pub const VALUE: u32 = 1;
    pub const SAMPLE_COUNT: u32 = 1;
    pub const SAMPLE_SUM: u32 = 2;
    pub const HISTOGRAM_BUCKET: u32 = 3;
    pub const SUMMARY_QUANTILE: u32 = 3;
    pub const SCHEMA: u32 = 5;
    pub const ZERO_THRESHOLD: u32 = 6;
    pub const ZERO_COUNT: u32 = 7;
    pub const NEGATIVE_SPAN: u32 = 9;
    pub const NEGATIVE_DELTA: u32 = 10;
    pub const POSITIVE_SPAN: u32 = 12;
    pub const POSITIVE_DELTA: u32 = 13;
    pub const BUCKET_CUMULATIVE_COUNT: u32 = 1;
    pub const BUCKET_UPPER_BOUND: u32 = 2;
    pub const BUCKET_EXEMPLAR: u32 = 3;
    pub const SPAN_OFFSET: u32 = 1;
    pub const SPAN_LENGTH: u32 = 2;
    pub const EXEMPLAR_LABEL: u32 = 1;
    pub const EXEMPLAR_VALUE: u32 = 2;
    pub const EXEMPLAR_TIMESTAMP: u32 = 3;
    pub const TIMESTAMP_SECONDS: u32 = 1;
    pub const TIMESTAMP_NANOS: u32 = 2;
    pub const QUANTILE: u32 = 1;
    pub const QUANTILE_VALUE: u32 = 2;
}

/// The `MetricType` enum.
fn type_number(prom_type: PromType) -> u64 {
    match prom_type {
        PromType::Counter => 0,
        PromType::Gauge => 1,
        PromType::Summary => 2,
        PromType::Untyped => 3,
        PromType::Histogram => 4,
    }
}

/// Calls `f(name, value)` for each pair of a canonical label text
/// `a="x",b="y"` (as the registry and the parser write it), unescaped.
fn for_each_label(text: &str, mut f: impl FnMut(&str, &str)) {
    let mut rest = text;
    // A label name holds no `=` (nor `"`): the first `=` ends it, a quote
    // follows. A plain byte loop: names are short, and this runs per series.
    while let Some(eq) = rest.bytes().position(|b| b == b'=') {
        let name = rest[..eq].trim_start_matches(',');
        let Some(after) = rest[eq + 1..].strip_prefix('"') else {
            return;
        };
        // `\` and `"` are ASCII: no byte of another character equals them.
        let bytes = after.as_bytes();
        let (mut end, mut escaped) = (0, false);
        while end < bytes.len() && bytes[end] != b'"' {
            if bytes[end] == b'\\' {
                escaped = true;
                end += 1;
            }
            end += 1;
        }
        let Some(raw) = after.get(..end) else { return };
        if escaped {
            // Rare: the text parser's unescaping, allocation and all.
            let Some((value, _)) = expfmt::read_quoted(after) else {
                return;
            };
            f(name, &value);
        } else {
            f(name, raw);
        }
        rest = after.get(end + 1..).unwrap_or("");
    }
}

/// Writes one `LabelPair` field.
#[inline]
fn label_pair(out: &mut Vec<u8>, field: u32, name: &str, value: &str) {
    let len = 2
        + wire::varint_len(name.len() as u64)
        + name.len()
        + wire::varint_len(value.len() as u64)
        + value.len();
    wire::key(out, field, LEN);
    wire::varint(out, len as u64);
    wire::bytes(out, field::LABEL_NAME, name.as_bytes());
    wire::bytes(out, field::LABEL_VALUE, value.as_bytes());
}

/// A histogram or summary a text callback handed in, gathered from its
/// samples until its family ends.
#[derive(Default)]
struct ExternalAggregate {
    /// (upper bound or quantile, value).
    points: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
    timestamp: Option<i64>,
}

/// Writes the protobuf exposition into a `Vec<u8>`.
#[derive(Default)]
pub(crate) struct ProtobufEncoder {
    out: Vec<u8>,
    /// The open family: its name, help and type, and its metrics so far.
    name: String,
    help: Option<String>,
    prom_type: Option<PromType>,
    metrics: Vec<u8>,
    /// The metric being written: its labels (and timestamp).
    metric: Vec<u8>,
    /// Its value message, when it is not a number (written in `metric`),
    /// and the field it goes in.
    inner: Vec<u8>,
    inner_field: Option<u32>,
    /// Scratch buffers.
    nested: Vec<u8>,
    classic: Vec<u64>,
    native: NativeSnapshot,
    /// The open family's callback histograms or summaries, by label text.
    aggregates: BTreeMap<String, ExternalAggregate>,
}

impl ProtobufEncoder {
    /// An encoder whose buffer starts with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// Writes the open family, if it has metrics.
    fn close_family(&mut self) {
        let Some(prom_type) = self.prom_type.take() else {
            return;
        };
        let aggregates = std::mem::take(&mut self.aggregates);
        for (labels, aggregate) in &aggregates {
            self.write_aggregate(prom_type, labels, aggregate);
        }
        if self.metrics.is_empty() {
            return;
        }
        let mut header = Vec::with_capacity(self.name.len() + 64);
        wire::bytes(&mut header, field::FAMILY_NAME, self.name.as_bytes());
        if let Some(help) = &self.help {
            wire::bytes(&mut header, field::FAMILY_HELP, help.as_bytes());
        }
        wire::uint(&mut header, field::FAMILY_TYPE, type_number(prom_type));
        wire::varint(&mut self.out, (header.len() + self.metrics.len()) as u64);
        self.out.extend_from_slice(&header);
        self.out.extend_from_slice(&self.metrics);
        self.metrics.clear();
    }

    /// Writes one metric of the open family: its labels, then what `body`
    /// writes (the value field).
    fn metric(&mut self, labels: &str, body: impl FnOnce(&mut Self)) {
        self.metric.clear();
        let metric = &mut self.metric;
        for_each_label(labels, |name, value| {
            label_pair(metric, field::METRIC_LABEL, name, value)
        });
        self.inner_field = None;
        body(self);
        // The value message goes straight from `inner` to the family.
        let inner_len = match self.inner_field {
            Some(_) => 1 + wire::varint_len(self.inner.len() as u64) + self.inner.len(),
            None => 0,
        };
        wire::key(&mut self.metrics, field::FAMILY_METRIC, LEN);
        wire::varint(&mut self.metrics, (self.metric.len() + inner_len) as u64);
        self.metrics.extend_from_slice(&self.metric);
        if let Some(f) = self.inner_field {
            wire::bytes(&mut self.metrics, f, &self.inner);
        }
    }

    /// Appends the value field of a counter, gauge or untyped metric.
    fn number(&mut self, prom_type: PromType, v: f64) {
        let f = match prom_type {
            PromType::Counter => field::METRIC_COUNTER,
            PromType::Gauge => field::METRIC_GAUGE,
            _ => field::METRIC_UNTYPED,
        };
        wire::key(&mut self.metric, f, LEN);
        wire::varint(&mut self.metric, 9);
        wire::double(&mut self.metric, field::VALUE, v);
    }

    fn histogram(&mut self, h: &Histogram) {
        let body = &mut self.inner;
        body.clear();
        self.inner_field = Some(field::METRIC_HISTOGRAM);
        // The count is the native buckets' (the format requires the two to
        // agree), read after the classic buckets; a classic bucket read a
        // moment before is capped at it, so the classic part stays whole.
        let sum = h.get_sample_sum();
        let classic = &mut self.classic;
        classic.clear();
        h.for_each_cumulative(|_, cumulative| classic.push(cumulative));
        h.native().snapshot_into(&mut self.native);
        let count = self.native.count();
        wire::uint(body, field::SAMPLE_COUNT, count);
        wire::double(body, field::SAMPLE_SUM, sum);
        let exemplars = Some(h.exemplar_slots()).filter(|e| e.any());
        let bounds = h.bounds();
        for (i, bound) in bounds.iter().enumerate() {
            let cumulative = classic[i].min(count);
            match exemplars.and_then(|e| e.get(i)) {
                None => {
                    // Count and bound: the length is known.
                    wire::key(body, field::HISTOGRAM_BUCKET, LEN);
                    wire::varint(body, (1 + wire::varint_len(cumulative) + 9) as u64);
                    wire::uint(body, field::BUCKET_CUMULATIVE_COUNT, cumulative);
                    wire::double(body, field::BUCKET_UPPER_BOUND, *bound);
                }
                Some(e) => {
                    wire::message(body, field::HISTOGRAM_BUCKET, &mut self.nested, |m| {
                        wire::uint(m, field::BUCKET_CUMULATIVE_COUNT, cumulative);
                        wire::double(m, field::BUCKET_UPPER_BOUND, *bound);
                        exemplar(m, &e);
                    });
                }
            }
        }
        // The +Inf bucket is implied by the count, unless it has an exemplar.
        if let Some(e) = exemplars.and_then(|e| e.get(bounds.len())) {
            let nested = &mut self.nested;
            wire::message(body, field::HISTOGRAM_BUCKET, nested, |m| {
                wire::uint(m, field::BUCKET_CUMULATIVE_COUNT, count);
                wire::double(m, field::BUCKET_UPPER_BOUND, f64::INFINITY);
                exemplar(m, &e);
            });
        }
        let n = &self.native;
        wire::key(body, field::SCHEMA, VARINT);
        wire::varint(body, wire::zigzag(i64::from(SCHEMA)));
        wire::double(body, field::ZERO_THRESHOLD, ZERO_THRESHOLD);
        wire::uint(body, field::ZERO_COUNT, n.zero_count);
        spans(
            body,
            &mut self.nested,
            field::NEGATIVE_SPAN,
            field::NEGATIVE_DELTA,
            &n.negative,
            false,
        );
        // A native histogram without buckets still has a span (of none),
        // or it would read as a classic one.
        spans(
            body,
            &mut self.nested,
            field::POSITIVE_SPAN,
            field::POSITIVE_DELTA,
            &n.positive,
            n.negative.is_empty(),
        );
    }

    fn write_aggregate(&mut self, prom_type: PromType, labels: &str, a: &ExternalAggregate) {
        self.metric(labels, |enc| {
            let body = &mut enc.inner;
            body.clear();
            enc.inner_field = Some(if prom_type == PromType::Summary {
                field::METRIC_SUMMARY
            } else {
                field::METRIC_HISTOGRAM
            });
            wire::uint(body, field::SAMPLE_COUNT, a.count as u64);
            wire::double(body, field::SAMPLE_SUM, a.sum);
            let (f, first, second) = match prom_type {
                PromType::Summary => (
                    field::SUMMARY_QUANTILE,
                    field::QUANTILE,
                    field::QUANTILE_VALUE,
                ),
                _ => (
                    field::HISTOGRAM_BUCKET,
                    field::BUCKET_UPPER_BOUND,
                    field::BUCKET_CUMULATIVE_COUNT,
                ),
            };
            for (point, value) in &a.points {
                wire::message(body, f, &mut enc.nested, |m| {
                    if prom_type == PromType::Summary {
                        wire::double(m, first, *point);
                        wire::double(m, second, *value);
                    } else {
                        wire::uint(m, second, *value as u64);
                        wire::double(m, first, *point);
                    }
                });
            }
            if let Some(ms) = a.timestamp {
                wire::uint(&mut enc.metric, field::METRIC_TIMESTAMP_MS, ms as u64);
            }
        });
    }
}

/// Writes an `Exemplar` field of a bucket.
fn exemplar(out: &mut Vec<u8>, e: &crate::metrics::histogram::Recorded) {
    let mut body = Vec::with_capacity(64);
    for_each_label(&e.exemplar.label_text(), |name, value| {
        label_pair(&mut body, field::EXEMPLAR_LABEL, name, value)
    });
    wire::double(&mut body, field::EXEMPLAR_VALUE, e.value);
    let seconds = e.timestamp.floor();
    let nanos = ((e.timestamp - seconds) * 1e9) as u64;
    let mut ts = Vec::with_capacity(16);
    wire::uint(&mut ts, field::TIMESTAMP_SECONDS, seconds as u64);
    wire::uint(&mut ts, field::TIMESTAMP_NANOS, nanos);
    wire::bytes(&mut body, field::EXEMPLAR_TIMESTAMP, &ts);
    wire::bytes(out, field::BUCKET_EXEMPLAR, &body);
}

/// Writes one `BucketSpan` field.
fn span(out: &mut Vec<u8>, span_field: u32, offset: i32, length: u64) {
    let offset = wire::zigzag(i64::from(offset));
    wire::key(out, span_field, LEN);
    wire::varint(
        out,
        (2 + wire::varint_len(offset) + wire::varint_len(length)) as u64,
    );
    wire::uint(out, field::SPAN_OFFSET, offset);
    wire::uint(out, field::SPAN_LENGTH, length);
}

/// Writes the spans and the packed count deltas of one sign's native
/// buckets (sorted by index). With `noop_if_empty`, no buckets is one span
/// of length 0.
fn spans(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    span_field: u32,
    delta_field: u32,
    buckets: &[(i32, u64)],
    noop_if_empty: bool,
) {
    if buckets.is_empty() {
        if noop_if_empty {
            span(out, span_field, 0, 0);
        }
        return;
    }
    let mut start = 0;
    let mut previous_end: Option<i32> = None;
    while start < buckets.len() {
        let mut end = start + 1;
        while end < buckets.len() && buckets[end].0 == buckets[end - 1].0 + 1 {
            end += 1;
        }
        let first = buckets[start].0;
        let offset = match previous_end {
            None => first,
            Some(last) => first - last - 1,
        };
        span(out, span_field, offset, (end - start) as u64);
        previous_end = Some(buckets[end - 1].0);
        start = end;
    }
    scratch.clear();
    let mut previous = 0i64;
    for (_, n) in buckets {
        let n = *n as i64;
        wire::varint(scratch, wire::zigzag(n - previous));
        previous = n;
    }
    wire::bytes(out, delta_field, scratch);
}

impl Encoder for ProtobufEncoder {
    type Output = Vec<u8>;

    fn family(&mut self, name: &str, help: Option<&str>, prom_type: PromType) {
        self.close_family();
        self.name.clear();
        self.name.push_str(name);
        self.help = help.map(str::to_owned);
        self.prom_type = Some(prom_type);
    }

    fn series(&mut self, _name: &str, labels: &str, value: SeriesValue<'_>) {
        let prom_type = self.prom_type.unwrap_or(PromType::Untyped);
        self.metric(labels, |enc| match value {
            SeriesValue::Float(v) => enc.number(prom_type, v),
            SeriesValue::Int(v) => enc.number(prom_type, v as f64),
            SeriesValue::Histogram(h) => enc.histogram(h),
        });
    }

    fn external_sample(&mut self, sample: &ParsedSample) {
        let prom_type = self.prom_type.unwrap_or(PromType::Untyped);
        let (sample_name, labels) = match sample.key.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or(rest)),
            None => (sample.key.as_str(), ""),
        };
        match prom_type {
            PromType::Histogram | PromType::Summary => {
                // `le` / `quantile` is the last label; the others name the series.
                let point_label = if prom_type == PromType::Histogram {
                    ",le=\""
                } else {
                    ",quantile=\""
                };
                let padded;
                let with_comma = if labels.is_empty() {
                    ""
                } else {
                    padded = format!(",{labels}");
                    &padded
                };
                let (series, point) = match with_comma.rfind(point_label) {
                    Some(at) => (
                        with_comma[..at].trim_start_matches(','),
                        with_comma[at + point_label.len()..]
                            .trim_end_matches('"')
                            .parse::<f64>()
                            .ok(),
                    ),
                    None => (labels, None),
                };
                let aggregate = self.aggregates.entry(series.to_owned()).or_default();
                aggregate.timestamp = aggregate.timestamp.or(sample.timestamp);
                let suffix = sample_name.strip_prefix(self.name.as_str()).unwrap_or("");
                if suffix == "_sum" {
                    aggregate.sum = sample.value;
                } else if suffix == "_count" {
                    aggregate.count = sample.value;
                } else if let Some(point) = point {
                    // The +Inf bucket is implied by the count.
                    if point != f64::INFINITY {
                        aggregate.points.push((point, sample.value));
                    }
                }
            }
            _ => {
                let timestamp = sample.timestamp;
                self.metric(labels, |enc| {
                    enc.number(prom_type, sample.value);
                    if let Some(ms) = timestamp {
                        wire::uint(&mut enc.metric, field::METRIC_TIMESTAMP_MS, ms as u64);
                    }
                });
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.close_family();
        self.out
    }
}
