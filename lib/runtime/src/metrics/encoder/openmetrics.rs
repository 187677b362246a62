//! OpenMetrics 1.0 text, the format Prometheus asks for first. Sample lines
//! are those of text format 0.0.4 (same names, same label values, `le`
//! included, so a target's series are the same whichever format was
//! negotiated); what differs is around them:
//! - a counter family is named without its `_total` suffix on its `# TYPE`
//!   line; a counter whose name lacks the suffix is written as `unknown`
//!   (OpenMetrics requires it of counter samples, and renaming the samples
//!   would give the series another name than the text format gives them);
//! - `untyped` is `unknown`; `"` is escaped in help texts;
//! - timestamps are seconds, not milliseconds;
//! - the exposition ends with `# EOF`;
//! - a histogram bucket carries its exemplar, if it has one.

use super::text::{write_external_sample, write_histogram, write_series, BucketKeys};
use super::Encoder;
use crate::metrics::expfmt::ParsedSample;
use crate::metrics::sample::SeriesValue;
use crate::metrics::spec::PromType;
use crate::metrics::text::{escape_label_value, write_f64};
use crate::metrics::Histogram;

/// The `Content-Type` of OpenMetrics 1.0.0.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Writes OpenMetrics 1.0 text into a `String`; [`Encoder::finish`] adds
/// the closing `# EOF`.
#[derive(Debug, Default)]
pub(crate) struct OpenMetricsEncoder {
    out: String,
    bucket_keys: BucketKeys,
}

impl OpenMetricsEncoder {
    /// An encoder whose buffer starts with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            out: String::with_capacity(capacity),
            bucket_keys: BucketKeys::default(),
        }
    }

    /// A histogram's lines with its exemplars. Kept out of line so that
    /// [`Encoder::series`] stays small enough to inline into the scrape
    /// loop, as the text encoder's does, for the counters and gauges that
    /// make up most series.
    #[inline(never)]
    fn histogram_with_exemplars(&mut self, name: &str, labels: &str, h: &Histogram) {
        let exemplars = h.exemplar_slots();
        let keys = &mut self.bucket_keys;
        write_histogram(&mut self.out, keys, name, labels, h, |out, bucket| {
            exemplars.with(bucket, |e| {
                out.push_str(" # {");
                e.exemplar.write_labels(out);
                out.push_str("} ");
                write_f64(out, e.value);
                out.push(' ');
                write_f64(out, e.timestamp);
            });
        });
    }
}

/// The name and type a family is declared with.
fn declared(name: &str, prom_type: PromType) -> (&str, &'static str) {
    match prom_type {
        PromType::Counter => match name.strip_suffix("_total") {
            Some(stem) if !stem.is_empty() => (stem, "counter"),
            _ => (name, "unknown"),
        },
        PromType::Gauge => (name, "gauge"),
        PromType::Histogram => (name, "histogram"),
        PromType::Summary => (name, "summary"),
        PromType::Untyped => (name, "unknown"),
    }
}

impl Encoder for OpenMetricsEncoder {
    type Output = String;

    fn family(&mut self, name: &str, help: Option<&str>, prom_type: PromType) {
        let (name, type_name) = declared(name, prom_type);
        let out = &mut self.out;
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(type_name);
        out.push('\n');
        if let Some(help) = help {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            // Help texts escape as label values do in OpenMetrics.
            escape_label_value(out, help);
            out.push('\n');
        }
    }

    #[inline]
    fn series(&mut self, name: &str, labels: &str, value: SeriesValue<'_>) {
        match value {
            SeriesValue::Histogram(h) if h.exemplar_slots().any() => {
                self.histogram_with_exemplars(name, labels, h);
            }
            _ => write_series(&mut self.out, &mut self.bucket_keys, name, labels, value),
        }
    }

    fn external_sample(&mut self, sample: &ParsedSample) {
        // OpenMetrics timestamps are seconds.
        write_external_sample(&mut self.out, sample, |out, ms| {
            write_f64(out, ms as f64 / 1000.0)
        });
    }

    /// The text written, with its `# EOF` line.
    fn finish(mut self) -> String {
        self.out.push_str("# EOF\n");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_declared_as_openmetrics_names_them() {
        assert_eq!(
            declared("a_requests_total", PromType::Counter),
            ("a_requests", "counter")
        );
        assert_eq!(
            declared("a_requests", PromType::Counter),
            ("a_requests", "unknown")
        );
        assert_eq!(declared("_total", PromType::Counter), ("_total", "unknown"));
        assert_eq!(declared("x", PromType::Untyped), ("x", "unknown"));
        assert_eq!(declared("x_total", PromType::Gauge), ("x_total", "gauge"));
    }

    #[test]
    fn a_family_with_help_timestamps_in_seconds_and_eof() {
        let mut enc = OpenMetricsEncoder::default();
        enc.family("x_total", Some("say \"hi\"\n"), PromType::Counter);
        enc.series("x_total", "a=\"b\"", SeriesValue::Int(3));
        enc.external_sample(&ParsedSample {
            key: "x_total{a=\"c\"}".to_owned(),
            value: 1.5,
            timestamp: Some(1_700_000_000_250),
        });
        assert_eq!(
            enc.finish(),
            "# TYPE x counter\n# HELP x say \\\"hi\\\"\\n\nx_total{a=\"b\"} 3\n\
             x_total{a=\"c\"} 1.5 1700000000.25\n# EOF\n"
        );
    }
}
