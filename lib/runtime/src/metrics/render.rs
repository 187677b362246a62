//! Prometheus text format 0.0.4, written straight from the registered metrics.
//!
//! Plain metrics are read from their atomics with their constant labels
//! escaped once at creation; histograms and vec children go through the
//! `prometheus` crate's snapshot (`metric()` / `collect()`), which is the only
//! way to read them consistently. No `gather()`, no `TextEncoder`.

use super::kind::Handle;
use super::scope::ScopePath;
use super::store::{Family, Series};
use prometheus::proto;

/// Escapes a label value: `\` `"` and newline.
pub(crate) fn escape_label_value(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes a help text: `\` and newline.
pub(crate) fn escape_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes `a="x",b="y"` (no braces).
pub(crate) fn write_label_pairs<'a>(
    out: &mut String,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
}

/// Writes a sample value as Prometheus reads it: integers without a fraction,
/// `+Inf`, `-Inf`, `NaN`.
pub(crate) fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

fn write_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Writes `# HELP` and `# TYPE`.
pub(crate) fn write_header(out: &mut String, name: &str, help: Option<&str>, type_name: &str) {
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
    out.push_str(type_name);
    out.push('\n');
}

/// Writes `name{labels[,le="x"]} ` — everything before the value.
fn write_series_key(out: &mut String, name: &str, suffix: &str, labels: &str, le: Option<f64>) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && le.is_none() {
        out.push(' ');
        return;
    }
    out.push('{');
    out.push_str(labels);
    if let Some(le) = le {
        if !labels.is_empty() {
            out.push(',');
        }
        out.push_str("le=\"");
        write_f64(out, le);
        out.push('"');
    }
    out.push_str("} ");
}

pub(crate) fn write_value_sample(out: &mut String, name: &str, labels: &str, value: f64) {
    write_series_key(out, name, "", labels, None);
    write_f64(out, value);
    out.push('\n');
}

/// Writes an integer sample.
pub(crate) fn write_int_sample(out: &mut String, name: &str, labels: &str, value: i128) {
    write_series_key(out, name, "", labels, None);
    out.push_str(itoa::Buffer::new().format(value));
    out.push('\n');
}

pub(crate) fn write_histogram(out: &mut String, name: &str, labels: &str, h: &proto::Histogram) {
    for bucket in h.get_bucket() {
        write_series_key(out, name, "_bucket", labels, Some(bucket.upper_bound()));
        write_u64(out, bucket.cumulative_count());
        out.push('\n');
    }
    write_series_key(out, name, "_bucket", labels, Some(f64::INFINITY));
    write_u64(out, h.get_sample_count());
    out.push('\n');
    write_series_key(out, name, "_sum", labels, None);
    write_f64(out, h.get_sample_sum());
    out.push('\n');
    write_series_key(out, name, "_count", labels, None);
    write_u64(out, h.get_sample_count());
    out.push('\n');
}

/// Writes the samples of one series.
pub(crate) fn write_series(out: &mut String, name: &str, series: &Series) {
    use prometheus::core::Metric;
    let labels = series.label_text.as_str();
    match &series.handle {
        Handle::Counter(m) => write_value_sample(out, name, labels, m.get()),
        Handle::Gauge(m) => write_value_sample(out, name, labels, m.get()),
        Handle::IntCounter(m) => write_int_sample(out, name, labels, i128::from(m.get())),
        Handle::IntGauge(m) => write_int_sample(out, name, labels, i128::from(m.get())),
        Handle::Histogram(m) => write_histogram(out, name, labels, m.metric().get_histogram()),
        Handle::CounterVec(v) => v.write_samples(out),
        Handle::IntCounterVec(v) => v.write_samples(out),
        Handle::GaugeVec(v) => v.write_samples(out),
        Handle::IntGaugeVec(v) => v.write_samples(out),
        Handle::HistogramVec(v) => v.write_samples(out),
    }
}

/// Writes a family's series that lie within `filter`, with its header, and
/// returns whether it wrote anything.
pub(crate) fn write_family(
    out: &mut String,
    name: &str,
    family: &Family,
    filter: &ScopePath,
) -> bool {
    let mut wrote = false;
    for series in family.series.iter().filter(|s| filter.contains(&s.scope)) {
        if !wrote {
            write_header(out, name, Some(&family.help), family.prom_type.as_str());
            wrote = true;
        }
        write_series(out, name, series);
    }
    wrote
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_prometheus_reads_them() {
        let f = |v| {
            let mut s = String::new();
            write_f64(&mut s, v);
            s
        };
        assert_eq!(f(42.0), "42");
        assert_eq!(f(-3.0), "-3");
        assert_eq!(f(0.25), "0.25");
        assert_eq!(f(1e-9), "1e-9");
        assert_eq!(f(1e20), "1e20");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(f64::NAN), "NaN");
        for v in [0.1, 1e-9, 1e20, 123456.789, -0.5] {
            assert_eq!(f(v).parse::<f64>().unwrap(), v);
        }
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        write_label_pairs(&mut s, [("a", "q\"b\\n\nx"), ("b", "ü")]);
        assert_eq!(s, r#"a="q\"b\\n\nx",b="ü""#);
        let mut h = String::new();
        escape_help(&mut h, "a \"q\" \\ \n");
        assert_eq!(h, "a \"q\" \\\\ \\n");
    }
}
