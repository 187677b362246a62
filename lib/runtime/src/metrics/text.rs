//! The pure primitives of Prometheus' text formats: escaping label values and
//! help texts, writing label pairs and numbers. Depends on no other module, so
//! the store (which escapes each series' labels once, at creation), the vec
//! types, the parser and every encoder share them.

/// True for a character the text format cannot carry as it is: a control
/// character other than tab (the format escapes only newline), and the
/// Unicode line and paragraph separators. Parsers that split the text into
/// lines the way Python's `str.splitlines` does (client_python's) cut a
/// line at `\r`, `\x0b`, `\x0c`, `\x1c`-`\x1e`, `\x85`, U+2028 and U+2029,
/// and the Go parser refuses escapes other than `\\`, `\"` and `\n`.
#[inline]
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}'
}

/// Escapes `text`: `\` as `\\`, newline as `\n`, `"` as `\"` when
/// `quote`, and every other character of [`needs_escape`] as the six
/// characters `\\uXXXX` (an escaped backslash, then `uXXXX`): every parser
/// reads the whole scrape, and the value reads back as that visible text.
fn escape(out: &mut String, text: &str, quote: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' if quote => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if needs_escape(c) => {
                out.push_str("\\\\u");
                let code = u32::from(c);
                for shift in [12, 8, 4, 0] {
                    let digit = (code >> shift) & 0xf;
                    out.push(char::from_digit(digit, 16).unwrap_or('0'));
                }
            }
            c => out.push(c),
        }
    }
}

/// Escapes a label value (see [`escape`]).
#[inline]
pub(crate) fn escape_label_value(out: &mut String, value: &str) {
    if !value.contains(|c: char| c == '\\' || c == '"' || c == '\n' || needs_escape(c)) {
        out.push_str(value);
        return;
    }
    escape(out, value, true);
}

/// Escapes a help text: `\`, newline and the characters of [`needs_escape`].
#[inline]
pub(crate) fn escape_help(out: &mut String, help: &str) {
    if !help.contains(|c: char| c == '\\' || c == '\n' || needs_escape(c)) {
        out.push_str(help);
        return;
    }
    escape(out, help, false);
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
    } else if v.abs() < 1e15 && (v as i64) as f64 == v {
        // Integral: the cast truncates (cheaper than `fract`, a call to `trunc`).
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(zmij::Buffer::new().format_finite(v));
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
        // A positive exponent with its sign, as Go's `strconv` writes it.
        assert_eq!(f(1e20), "1e+20");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(f64::NAN), "NaN");
        for v in [0.1, 1e-9, 1e20, 1e15, 123456.789, -0.5, f64::MAX, 5e-324] {
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

    #[test]
    fn characters_that_break_a_line_for_some_parser_are_written_as_visible_text() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\rb\u{2028}c\u{85}d\te\u{1}\u{7f}\u{2029}ü");
        assert_eq!(
            s,
            r"a\\u000db\\u2028c\\u0085d".to_owned() + "\te" + r"\\u0001\\u007f\\u2029ü"
        );
        assert!(!s.contains(|c: char| needs_escape(c)));
        let mut h = String::new();
        escape_help(&mut h, "x\ry\"");
        assert_eq!(h, r#"x\\u000dy""#);
    }
}
