//! The pure primitives of Prometheus' text formats: escaping label values and
//! help texts, writing label pairs and numbers. Depends on no other module, so
//! the store (which escapes each series' labels once, at creation), the vec
//! types, the parser and every encoder share them.

/// Escapes a label value: `\` `"` and newline.
#[inline]
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
#[inline]
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
#[inline]
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

/// Writes the key of one sample, everything before its value:
/// `name<suffix>{labels[,le="x"]}`, or `name<suffix>` without labels.
/// `labels` is escaped already (see [`write_label_pairs`]).
#[inline]
pub(crate) fn write_sample_key(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    le: Option<f64>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && le.is_none() {
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
    out.push('}');
}

/// Writes an integer.
#[inline]
pub(crate) fn write_int<I: itoa::Integer>(out: &mut String, v: I) {
    out.push_str(itoa::Buffer::new().format(v));
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
