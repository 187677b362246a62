//! The published test cases of the reference parsers, ported: Prometheus' Go
//! text parser (`prometheus/common`, `expfmt/text_parse_test.go`,
//! `TestTextParse` and `TestTextParseError`) and the cases client_python
//! handles alike. Valid texts must parse to the same series and values;
//! invalid ones must be refused with the line that broke them.
//!
//! Where the two reference parsers differ, or a case is not classic text
//! format 0.0.4, this parser is told apart in [`differences`]:
//! - quoted UTF-8 metric and label names (`{"my.metric"} 1`, Go's UTF-8
//!   mode only) are refused, as Go's legacy mode and client_python refuse them;
//! - `gauge_histogram` and other OpenMetrics types on a TYPE line are refused
//!   (client_python's text parser knows only the five classic types);
//! - a text without a final newline is accepted (Go refuses it): the text is
//!   re-rendered, so what the scrape serves is valid either way.

use super::*;

fn value(families: &BTreeMap<String, ParsedFamily>, family: &str, key: &str) -> Option<f64> {
    families
        .get(family)?
        .samples
        .iter()
        .find(|s| s.key == key)
        .map(|s| s.value)
}

fn timestamp(families: &BTreeMap<String, ParsedFamily>, family: &str, key: &str) -> Option<i64> {
    families
        .get(family)?
        .samples
        .iter()
        .find(|s| s.key == key)?
        .timestamp
}

#[test]
fn go_0_and_1_empty_input_and_minimal_samples() {
    assert!(parse("\n\n")
        .unwrap()
        .values()
        .all(|f| f.samples.is_empty()));
    let f = parse(
        "\nminimal_metric 1.234\nanother_metric -3e3 103948\n# Even that:\nno_labels{} 3\n\
         # HELP line for non-existing metric will be ignored.\n",
    )
    .unwrap();
    assert_eq!(value(&f, "minimal_metric", "minimal_metric"), Some(1.234));
    assert_eq!(value(&f, "another_metric", "another_metric"), Some(-3e3));
    assert_eq!(
        timestamp(&f, "another_metric", "another_metric"),
        Some(103948)
    );
    assert_eq!(value(&f, "no_labels", "no_labels"), Some(3.0));
    assert_eq!(f["minimal_metric"].prom_type, PromType::Untyped);
    assert!(
        f["line"].samples.is_empty(),
        "a HELP without samples adds none"
    );
}

#[test]
fn go_2_counters_gauges_docstrings_whitespace_and_escapes() {
    let text = "\n# A normal comment.\n#\n# TYPE name counter\n\
        name{labelname=\"val1\",basename=\"basevalue\"} NaN\n\
        name {labelname=\"val2\",basename=\"base\\\"v\\\\al\\nue\"} 0.23 1234567890\n\
        # HELP name two-line\\n doc  str\\\\ing\n\n # HELP  name2  \tdoc str\"ing 2\n  #    TYPE    name2 gauge\n\
        name2{labelname=\"val2\"\t,basename   =   \"basevalue2\"\t\t} +Inf 54321\n\
        name2{ labelname = \"val1\" , }-Inf\n";
    let f = parse(text).unwrap();
    assert_eq!(f["name"].prom_type, PromType::Counter);
    assert_eq!(f["name"].help.as_deref(), Some("two-line\n doc  str\\ing"));
    assert!(value(
        &f,
        "name",
        "name{basename=\"basevalue\",labelname=\"val1\"}"
    )
    .unwrap()
    .is_nan());
    let escaped = "name{basename=\"base\\\"v\\\\al\\nue\",labelname=\"val2\"}";
    assert_eq!(value(&f, "name", escaped), Some(0.23));
    assert_eq!(timestamp(&f, "name", escaped), Some(1234567890));
    assert_eq!(f["name2"].prom_type, PromType::Gauge);
    assert_eq!(f["name2"].help.as_deref(), Some("doc str\"ing 2"));
    let inf = "name2{basename=\"basevalue2\",labelname=\"val2\"}";
    assert_eq!(value(&f, "name2", inf), Some(f64::INFINITY));
    assert_eq!(timestamp(&f, "name2", inf), Some(54321));
    assert_eq!(
        value(&f, "name2", "name2{labelname=\"val1\"}"),
        Some(f64::NEG_INFINITY)
    );
}

#[test]
fn go_3_the_evil_summary_mixed_with_other_types_and_funny_comments() {
    let text = "\n# TYPE my_summary summary\nmy_summary{n1=\"val1\",quantile=\"0.5\"} 110\n\
        decoy -1 -2\nmy_summary{n1=\"val1\",quantile=\"0.9\"} 140 1\nmy_summary_count{n1=\"val1\"} 42\n\
        # Latest timestamp wins in case of a summary.\nmy_summary_sum{n1=\"val1\"} 4711 2\n\
        fake_sum{n1=\"val1\"} 2001\n# TYPE another_summary summary\n\
        another_summary_count{n2=\"val2\",n1=\"val1\"} 20\nmy_summary_count{n2=\"val2\",n1=\"val1\"} 5 5\n\
        another_summary{n1=\"val1\",n2=\"val2\",quantile=\".3\"} -1.2\nmy_summary_sum{n1=\"val2\"} 08 15\n\
        my_summary{n1=\"val3\", quantile=\"0.2\"} 4711\n  my_summary{n1=\"val1\",n2=\"val2\",quantile=\"-12.34\",} NaN\n\
        # some\n# funny comments\n# HELP\n# HELP\n# HELP my_summary\n# HELP my_summary\n";
    // `# HELP my_summary` with no text, twice: comments, not HELP lines.
    let f = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f["my_summary"].prom_type, PromType::Summary);
    assert_eq!(
        value(&f, "my_summary", "my_summary{n1=\"val1\",quantile=\"0.5\"}"),
        Some(110.0)
    );
    assert_eq!(
        value(&f, "my_summary", "my_summary_count{n1=\"val1\"}"),
        Some(42.0)
    );
    assert_eq!(
        value(&f, "my_summary", "my_summary_sum{n1=\"val2\"}"),
        Some(8.0)
    );
    assert_eq!(value(&f, "decoy", "decoy"), Some(-1.0));
    assert_eq!(timestamp(&f, "decoy", "decoy"), Some(-2));
    assert_eq!(value(&f, "fake_sum", "fake_sum{n1=\"val1\"}"), Some(2001.0));
    assert_eq!(
        value(
            &f,
            "another_summary",
            "another_summary{n1=\"val1\",n2=\"val2\",quantile=\".3\"}"
        ),
        Some(-1.2)
    );
}

#[test]
fn go_4_the_histogram() {
    let text = "\n# HELP request_duration_microseconds The response latency.\n\
        # TYPE request_duration_microseconds histogram\n\
        request_duration_microseconds_bucket{le=\"100\"} 123\n\
        request_duration_microseconds_bucket{le=\"120\"} 412\n\
        request_duration_microseconds_bucket{le=\"144\"} 592\n\
        request_duration_microseconds_bucket{le=\"172.8\"} 1524\n\
        request_duration_microseconds_bucket{le=\"+Inf\"} 2693\n\
        request_duration_microseconds_sum 1.7560473e+06\n\
        request_duration_microseconds_count 2693\n";
    let f = parse(text).unwrap();
    let h = "request_duration_microseconds";
    assert_eq!(f[h].prom_type, PromType::Histogram);
    assert_eq!(f[h].help.as_deref(), Some("The response latency."));
    assert_eq!(f[h].samples.len(), 7);
    assert_eq!(value(&f, h, &format!("{h}_sum")), Some(1756047.3));
    assert_eq!(
        value(&f, h, &format!("{h}_bucket{{le=\"172.8\"}}")),
        Some(1524.0)
    );
}

/// Go's `TestTextParseError` cases for classic text: each must be refused,
/// on the line Go names.
#[test]
fn go_error_cases_are_refused_on_their_line() {
    let histogram = |count: &str, bucket: &str| {
        format!(
            "\n# HELP r The response latency.\n# TYPE r histogram\nr_bucket{{le=\"100\"}} 123\n\
             r_bucket{{le=\"120\"}} {bucket}\nr_bucket{{le=\"144\"}} 592\nr_bucket{{le=\"172.8\"}} 1524\n\
             r_bucket{{le=\"+Inf\"}} 2693\nr_sum 1.7560473e+06\nr_count {count}\n"
        )
    };
    let cases: Vec<(String, usize)> = vec![
        ("metric{label=\"\\t\"} 3.14".into(), 1),
        ("\nmetric{label=\"new\nline\"} 3.14\n".into(), 2),
        ("metric{@=\"bla\"} 3.14".into(), 1),
        ("metric{__name__=\"bla\"} 3.14".into(), 1),
        ("metric{label+=\"bla\"} 3.14".into(), 1),
        ("metric{label=bla} 3.14".into(), 1),
        (
            "\n# TYPE metric summary\nmetric{quantile=\"bla\"} 3.14\n".into(),
            3,
        ),
        ("metric{label=\"bla\"+} 3.14".into(), 1),
        ("metric{label=\"bla\"} 3.14 2.72\n".into(), 1),
        ("metric{label=\"bla\"} 3.14 2 3\n".into(), 1),
        ("metric{label=\"bla\"} blubb\n".into(), 1),
        ("\n# HELP metric one\n# HELP metric two\n".into(), 3),
        ("\n# TYPE metric counter\n# TYPE metric untyped\n".into(), 3),
        ("\nmetric 4.12\n# TYPE metric counter\n".into(), 3),
        ("\n# TYPE metric bla\n".into(), 2),
        ("\n# TYPE met-ric\n".into(), 2),
        ("@invalidmetric{label=\"bla\"} 3.14 2".into(), 1),
        ("{label=\"bla\"} 3.14 2".into(), 1),
        (
            "\n# TYPE metric histogram\nmetric_bucket{le=\"bla\"} 3.14\n".into(),
            3,
        ),
        ("foo 1_2\n".into(), 1),
        ("foo 0x1p-3\n".into(), 1),
        ("foo 0x1P-3\n".into(), 1),
        ("foo 0B1\n".into(), 1),
        ("foo 0O1\n".into(), 1),
        ("foo 0X1\n".into(), 1),
        ("foo 0x1\n".into(), 1),
        ("foo 0b1\n".into(), 1),
        ("foo 0o1\n".into(), 1),
        (
            "\n# TYPE metric histogram\nmetric_bucket{le=\"0x1p-3\"} 3.14\n".into(),
            3,
        ),
        (
            "\n# TYPE metric summary\nmetric{quantile=\"0x1p-3\"} 3.14\n".into(),
            3,
        ),
        ("metric{label=\"bla\",label=\"bla\"} 3.14".into(), 1),
        ("{\"one.name\",\"another.name\"} 3.14".into(), 1),
        ("{\"metric.name\".label=\"bla\"} 3.14".into(), 1),
        ("\n{\"metric.name\",\"new\nline\"=\"bla\"} 3.14\n".into(), 2),
        ("{\"metric.name\",foo=\"bla\"} 3.14\n".into(), 1),
        (
            "metric_name{\"foo\"=\"bar\", \"dotted.label\"=\"bla\"} 3.14\n".into(),
            1,
        ),
        (histogram("-2693", "412"), 10),
        (histogram("2693", "-412"), 5),
        (histogram("-2693.123", "412"), 10),
        (histogram("2693", "-412.456"), 5),
        ("{} 3.14".into(), 1),
    ];
    for (text, line) in cases {
        match parse(&text) {
            Ok(f) => panic!("{text:?} parsed: {f:?}"),
            Err(e) => assert_eq!(e.line, line, "{text:?}: {e}"),
        }
    }
}

/// Where this parser and a reference parser part, on purpose.
#[test]
fn differences() {
    // Quoted UTF-8 names (Go's UTF-8 mode accepts them): refused.
    assert!(parse("# TYPE \"name.with.dots\" counter\n{\"name.with.dots\"} 42.0\n").is_err());
    // OpenMetrics types on a TYPE line (Go accepts gauge_histogram): refused.
    assert!(parse("# TYPE x gauge_histogram\nx_bucket{le=\"+Inf\"} 1\n").is_err());
    // No final newline (Go refuses it): accepted.
    let f = parse("\nbla 3.14\nblubber 42").unwrap();
    assert_eq!(value(&f, "blubber", "blubber"), Some(42.0));
}

/// client_python's `tests/test_parser.py` cases that both reference parsers
/// accept (or both refuse).
#[test]
fn python_cases() {
    let f = parse("#\tTYPE\ta\tcounter\n#\tHELP\ta\thelp\na\t1\n").unwrap();
    assert_eq!(f["a"].prom_type, PromType::Counter);
    assert_eq!(f["a"].help.as_deref(), Some("help"));
    let f = parse("# TYPE  a  counter\n# HELP  a  help\na  1\n").unwrap();
    assert_eq!(f["a"].help.as_deref(), Some("help"));
    assert_eq!(value(&f, "a", "a"), Some(1.0));
    let f = parse(
        "# TYPE a counter\n# HELP a help\na{ foo = \"bar\" } 1\n\
         a\t\t{\t\tfoo\t\t=\t\t\"baz\"\t\t}\t\t2\na   {    foo   =  \"buz\"   }    3\n\
         a\t {  \t foo\t = \"biz\"\t  } \t 4\na \t{\t foo   = \"boz\"\t}\t 5\na{foo=\"bez\"}6\n",
    )
    .unwrap();
    for (i, v) in ["bar", "baz", "buz", "biz", "boz", "bez"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            value(&f, "a", &format!("a{{foo=\"{v}\"}}")),
            Some((i + 1) as f64)
        );
    }
    let f = parse("# TYPE a counter\na{foo=\"bar\", bar=\"b{a}z\"} 1\n").unwrap();
    assert_eq!(value(&f, "a", "a{bar=\"b{a}z\",foo=\"bar\"}"), Some(1.0));
    let f =
        parse("# TYPE a counter\na{foo=\"bar\"} 1\t000\n# TYPE b counter\nb 88   1234566000   \n")
            .unwrap();
    assert_eq!(timestamp(&f, "a", "a{foo=\"bar\"}"), Some(0));
    assert_eq!(timestamp(&f, "b", "b"), Some(1234566000));
    let f = parse("a{foo=\"bar\",} 1\na{} 2\n").unwrap();
    assert_eq!(value(&f, "a", "a{foo=\"bar\"}"), Some(1.0));
    assert_eq!(value(&f, "a", "a"), Some(2.0));
    let f = parse("# TYPE a counter\n# HELP a\na 1\n").unwrap();
    assert_eq!(
        f["a"].help, None,
        "an empty HELP is a comment (Go); the family has no help"
    );
    // Both refuse several trailing commas; Go refuses a lone comma, which
    // client_python accepts: refused here.
    assert!(parse("a{foo=\"bar\",, } 1\n").is_err());
    assert!(parse("b{,} 2\n").is_err());
    // An escape other than \\ \" \n in a label value: Go refuses, client_python keeps it; refused.
    assert!(parse("a{foo=\"\\foo\"} 1\n").is_err());
}
