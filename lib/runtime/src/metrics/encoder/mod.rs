//! Encoding a scrape: the walk over the registered families (the only code
//! that reads the store for a scrape), merged in name order with the families
//! text callbacks handed in, written through an [`Encoder`], one per
//! exposition format: text format 0.0.4 ([`text::TextEncoder`]),
//! OpenMetrics 1.0 ([`openmetrics::OpenMetricsEncoder`]) and protobuf
//! ([`protobuf::ProtobufEncoder`]). Another format is another [`Encoder`],
//! not another walk.

pub(crate) mod openmetrics;
pub(crate) mod protobuf;
pub(crate) mod text;

use super::expfmt::{ExternalFamilies, ParsedFamily, ParsedSample};
use super::kind::Handle;
use super::sample::SeriesValue;
use super::scope::ScopePath;
use super::spec::PromType;
use super::store::{Family, Series, Store};
use super::text as primitives;
use super::vec::{for_each_batched, Sealed as _};
use std::collections::HashSet;

/// One exposition format.
pub(crate) trait Encoder {
    /// What the encoding produces: text or bytes.
    type Output;
    /// Starts a family: what comes before its first series.
    fn family(&mut self, name: &str, help: Option<&str>, prom_type: PromType);
    /// One series of the family started last. `labels` is the series' label
    /// set in canonical form, `a="x",b="y"`: sorted by name and escaped once,
    /// when the series was created (the text formats write it as it is; a
    /// binary format reads the pairs back from it).
    fn series(&mut self, name: &str, labels: &str, value: SeriesValue<'_>);
    /// One sample a text callback handed in, of the family started last.
    fn external_sample(&mut self, sample: &ParsedSample);
    /// The exposition written, with whatever the format puts at its end.
    fn finish(self) -> Self::Output;
}

/// What one encoding wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Families written (ours and the callbacks').
    pub families: usize,
    /// Series of the registry written (a histogram is one series).
    pub series: usize,
}

/// Encodes every registered series at `filter` or below, and the callbacks'
/// families, in name order. Where a callback's family has the name of one of
/// ours, its samples join ours, except those that repeat one of our samples;
/// if its type differs, it is dropped and `on_conflict` called with its name
/// before anything is written (so a failure count it raises shows in this scrape).
pub(crate) fn encode<E: Encoder>(
    enc: &mut E,
    store: &Store,
    filter: &ScopePath,
    mut external: ExternalFamilies,
    mut on_conflict: impl FnMut(&str),
) -> Written {
    let families = store.read();
    external.families.retain(|name, ext| {
        let clash = families.get(name).is_some_and(|ours| {
            ours.prom_type != ext.prom_type && ours.series.iter().any(|s| filter.contains(&s.scope))
        });
        if clash {
            on_conflict(name);
        }
        !clash
    });
    let mut written = Written::default();
    let mut external = external.families.into_iter().peekable();
    for (name, family) in families.iter() {
        while let Some((ext_name, ext)) = external.next_if(|(n, _)| n < name) {
            write_external(enc, &ext_name, &ext, &mut written);
        }
        let ext = external.next_if(|(n, _)| n == name).map(|(_, ext)| ext);
        let mut keys = ext.as_ref().map(|_| HashSet::new());
        let series = write_family(enc, name, family, filter, keys.as_mut());
        if series > 0 {
            written.families += 1;
            written.series += series;
        }
        match (ext, keys) {
            (Some(ext), _) if series == 0 => write_external(enc, name, &ext, &mut written),
            (Some(ext), Some(keys)) => {
                for sample in ext.samples.iter().filter(|s| !keys.contains(&s.key)) {
                    enc.external_sample(sample);
                }
            }
            _ => {}
        }
    }
    for (name, ext) in external {
        write_external(enc, &name, &ext, &mut written);
    }
    written
}

fn write_external<E: Encoder>(
    enc: &mut E,
    name: &str,
    family: &ParsedFamily,
    written: &mut Written,
) {
    if family.samples.is_empty() {
        return;
    }
    enc.family(name, family.help.as_deref(), family.prom_type);
    for sample in &family.samples {
        enc.external_sample(sample);
    }
    written.families += 1;
}

/// Writes the family's series within `filter`, its header before the first,
/// and returns how many it wrote. With `keys`, also collects the identity of
/// every sample written (see [`ParsedSample::key`]).
fn write_family<E: Encoder>(
    enc: &mut E,
    name: &str,
    family: &Family,
    filter: &ScopePath,
    mut keys: Option<&mut HashSet<String>>,
) -> usize {
    let mut count = 0;
    for_each_batched(&family.series, plain_number, |series, number| {
        if !filter.contains(&series.scope) {
            return;
        }
        if count == 0 {
            enc.family(name, Some(&family.help), family.prom_type);
        }
        let mut emit = |labels: &str, value: SeriesValue<'_>| {
            if let Some(keys) = keys.as_deref_mut() {
                collect_keys(keys, name, labels, value);
            }
            enc.series(name, labels, value);
        };
        count += match number {
            Some(value) => {
                emit(&series.label_text, value);
                1
            }
            None => write_series(&mut emit, series),
        };
    });
    count
}

/// The value of a plain counter or gauge (summed over its aliases); `None`
/// for histograms and vecs.
fn plain_number(series: &Series) -> Option<SeriesValue<'static>> {
    if series.aliases.is_empty() {
        series.handle.number()
    } else {
        Some(sum(&series.handle, &series.aliases))
    }
}

/// Writes a histogram or every child of a vec, and returns how many series
/// that was.
fn write_series(emit: &mut impl FnMut(&str, SeriesValue<'_>), series: &Series) -> usize {
    let labels = series.label_text.as_str();
    let mut children = 0;
    let mut child = |l: &str, v: SeriesValue<'_>| {
        children += 1;
        emit(l, v);
    };
    match &series.handle {
        Handle::Histogram(m) => {
            m.with_value(|v| emit(labels, v));
            return 1;
        }
        Handle::CounterVec(v) => v.for_each_sorted(&mut child),
        Handle::IntCounterVec(v) => v.for_each_sorted(&mut child),
        Handle::GaugeVec(v) => v.for_each_sorted(&mut child),
        Handle::IntGaugeVec(v) => v.for_each_sorted(&mut child),
        Handle::HistogramVec(v) => v.for_each_sorted(&mut child),
        Handle::Counter(_) | Handle::Gauge(_) | Handle::IntCounter(_) | Handle::IntGauge(_) => {
            // Plain numbers are written by the caller from `plain_number`.
            return 0;
        }
    }
    children
}

/// The value of a series held by several handles (integer and float): their
/// sum, an integer when every handle is one.
fn sum(handle: &Handle, aliases: &[Handle]) -> SeriesValue<'static> {
    let mut int: i128 = 0;
    let mut float: Option<f64> = None;
    for h in std::iter::once(handle).chain(aliases) {
        match h.number() {
            Some(SeriesValue::Int(v)) => int += v,
            Some(SeriesValue::Float(v)) => *float.get_or_insert(0.0) += v,
            _ => {}
        }
    }
    match float {
        Some(f) => SeriesValue::Float(f + int as f64),
        None => SeriesValue::Int(int),
    }
}

/// Adds the identities of the samples one series is written as: one for a
/// counter or gauge; each bucket, `_sum` and `_count` for a histogram.
fn collect_keys(keys: &mut HashSet<String>, name: &str, labels: &str, value: SeriesValue<'_>) {
    let mut key = |suffix: &str, le: Option<f64>| {
        let mut k = String::new();
        primitives::write_sample_key(&mut k, name, suffix, labels, le);
        keys.insert(k);
    };
    match value {
        SeriesValue::Float(_) | SeriesValue::Int(_) => key("", None),
        SeriesValue::Histogram(h) => {
            for bound in h.bounds() {
                key("_bucket", Some(*bound));
            }
            key("_bucket", Some(f64::INFINITY));
            key("_sum", None);
            key("_count", None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::openmetrics::OpenMetricsEncoder;
    use super::text::TextEncoder;
    use super::*;
    use crate::metrics::expfmt;
    use crate::metrics::spec::MetricSpec;
    use crate::metrics::store::Origin;
    use crate::metrics::vec::IntCounterVec;
    use crate::metrics::Histogram;
    use prometheus::Counter;

    fn spec(name: &str, labels: &[(&str, &str)], var: &[&str], buckets: &[f64]) -> MetricSpec {
        MetricSpec {
            name: name.to_owned(),
            help: "h".to_owned(),
            const_labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            var_labels: var.iter().map(|s| (*s).to_owned()).collect(),
            buckets: buckets.to_vec(),
            ..MetricSpec::default()
        }
    }

    fn origin() -> Origin {
        Origin {
            place: "test".to_owned(),
            automatic: false,
        }
    }

    fn external(text: &str) -> ExternalFamilies {
        let mut all = ExternalFamilies::default();
        assert!(all.merge(expfmt::parse(text).unwrap()).is_empty());
        all
    }

    #[test]
    fn counts_what_it_wrote_merges_callback_samples_and_reports_conflicts() {
        let store = Store::default();
        let root = ScopePath::root();
        let ns = root.child("ns");
        store
            .get_or_create::<Counter>(&ns, spec("a_total", &[("x", "1")], &[], &[]), origin())
            .unwrap()
            .inc_by(2.0);
        let vec = store
            .get_or_create::<IntCounterVec>(&root, spec("b_total", &[], &["k"], &[]), origin())
            .unwrap();
        vec.with_label_values(&["p"]).inc();
        vec.with_label_values(&["q"]).inc();
        store
            .get_or_create::<Histogram>(&root, spec("c_seconds", &[], &[], &[1.0]), origin())
            .unwrap()
            .observe(0.5);
        let ext = external(
            "# TYPE a_total counter\na_total{x=\"1\"} 9\na_total{x=\"2\"} 3\n\
             # TYPE c_seconds gauge\nc_seconds 1\n# TYPE d gauge\nd 4\n",
        );
        let mut conflicts = Vec::new();
        let mut enc = TextEncoder::default();
        let written = encode(&mut enc, &store, &root, ext, |f| {
            conflicts.push(f.to_owned())
        });
        let out = enc.finish();
        assert_eq!(conflicts, ["c_seconds"]);
        assert_eq!(
            written,
            Written {
                families: 4,
                series: 4
            }
        );
        assert!(
            out.contains("a_total{x=\"1\"} 2\n"),
            "ours kept over the repeat: {out}"
        );
        assert!(!out.contains("a_total{x=\"1\"} 9"), "{out}");
        assert!(out.contains("a_total{x=\"2\"} 3\n"), "theirs joined: {out}");
        assert!(out.contains("c_seconds_bucket{le=\"1\"} 1\n") && !out.contains("c_seconds 1"));
        assert!(
            out.contains("b_total{k=\"p\"} 1\nb_total{k=\"q\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE d gauge\nd 4\n"), "{out}");
        // A scope filter leaves out what lies elsewhere; the callback's family then stands alone.
        let mut enc = TextEncoder::default();
        let other = root.child("other");
        let written = encode(&mut enc, &store, &other, external("a_total 1\n"), |_| {});
        assert_eq!(
            written,
            Written {
                families: 1,
                series: 0
            }
        );
        assert_eq!(enc.finish(), "# TYPE a_total untyped\na_total 1\n");
    }

    #[test]
    fn each_histogram_gets_the_le_values_of_its_own_bounds() {
        // The bucket keys are rendered once per bounds: interleaved bounds
        // must not leak into each other, in either text format.
        let store = Store::default();
        let root = ScopePath::root();
        let bounds: [(&str, &[f64]); 3] = [
            ("a_seconds", &[0.25, 1.0]),
            ("b_seconds", &[0.5]),
            ("c_seconds", &[0.25, 1.0]),
        ];
        for (name, bounds) in bounds {
            store
                .get_or_create::<Histogram>(&root, spec(name, &[("x", "1")], &[], bounds), origin())
                .unwrap()
                .observe(0.3);
        }
        let expected = [
            "a_seconds_bucket{x=\"1\",le=\"0.25\"} 0",
            "a_seconds_bucket{x=\"1\",le=\"1\"} 1",
            "a_seconds_bucket{x=\"1\",le=\"+Inf\"} 1",
            "b_seconds_bucket{x=\"1\",le=\"0.5\"} 1",
            "b_seconds_bucket{x=\"1\",le=\"+Inf\"} 1",
            "c_seconds_bucket{x=\"1\",le=\"0.25\"} 0",
            "c_seconds_bucket{x=\"1\",le=\"1\"} 1",
            "c_seconds_bucket{x=\"1\",le=\"+Inf\"} 1",
        ];
        let buckets = |out: &str| -> Vec<String> {
            out.lines()
                .filter(|l| l.contains("_bucket"))
                .map(str::to_owned)
                .collect()
        };
        let mut text = TextEncoder::default();
        encode(&mut text, &store, &root, external(""), |_| {});
        assert_eq!(buckets(&text.finish()), expected);
        let mut om = OpenMetricsEncoder::default();
        encode(&mut om, &store, &root, external(""), |_| {});
        assert_eq!(buckets(&om.finish()), expected);
    }

    /// What the text format reads back for a label value: itself, except the
    /// characters no escape covers, which come back as the text `\uXXXX`.
    fn read_back(value: &str) -> String {
        value
            .chars()
            .map(|c| {
                if (c.is_control() && c != '\t' && c != '\n') || c == '\u{2028}' || c == '\u{2029}'
                {
                    format!("\\u{:04x}", u32::from(c))
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    fn random_value(rng: &mut fastrand::Rng) -> String {
        const ALPHABET: [char; 12] = [
            'a', 'Z', '0', ' ', '\\', '"', '\n', '\r', '\t', 'ü', '\u{2028}', '🚀',
        ];
        (0..rng.usize(0..8))
            .map(|_| ALPHABET[rng.usize(..ALPHABET.len())])
            .collect()
    }

    fn random_number(rng: &mut fastrand::Rng) -> f64 {
        match rng.u8(0..4) {
            0 => f64::from(rng.i32(-1000..1000)),
            1 => rng.f64() * 1e-9,
            2 => (rng.f64() - 0.5) * 1e18,
            _ => rng.f64(),
        }
    }

    /// Random families through our encoder and back through our parser: the
    /// same series, the same values.
    #[test]
    fn encoded_text_parses_back_to_the_same_series_and_values() {
        use crate::metrics::vec::GaugeVec;
        use prometheus::Gauge;
        let mut rng = fastrand::Rng::with_seed(20261123);
        for round in 0..40 {
            let store = Store::default();
            let root = ScopePath::root();
            let mut expected: std::collections::BTreeMap<String, f64> = Default::default();
            let key = |name: &str, pairs: &mut Vec<(String, String)>| {
                pairs.sort();
                let mut k = name.to_owned();
                if !pairs.is_empty() {
                    // Written out here with only the format's own escapes (not
                    // with the encoder's escaping, which the test checks).
                    let body: Vec<String> = pairs
                        .iter()
                        .map(|(a, b)| {
                            let v = b
                                .replace('\\', "\\\\")
                                .replace('"', "\\\"")
                                .replace('\n', "\\n");
                            format!("{a}=\"{v}\"")
                        })
                        .collect();
                    k.push('{');
                    k.push_str(&body.join(","));
                    k.push('}');
                }
                k
            };
            for f in 0..rng.usize(1..6) {
                let name = format!("r{round}_f{f}");
                let value = random_value(&mut rng);
                let consts = [("c", value.as_str())];
                let consts = &consts[..rng.usize(0..2)];
                let read = |extra: &[(&str, String)]| -> Vec<(String, String)> {
                    consts
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), read_back(v)))
                        .chain(extra.iter().map(|(k, v)| ((*k).to_owned(), read_back(v))))
                        .collect()
                };
                match rng.u8(0..3) {
                    0 => {
                        let g = store
                            .get_or_create::<Gauge>(&root, spec(&name, consts, &[], &[]), origin())
                            .unwrap();
                        let v = random_number(&mut rng);
                        g.set(v);
                        expected.insert(key(&name, &mut read(&[])), v);
                    }
                    1 => {
                        let vec = store
                            .get_or_create::<GaugeVec>(
                                &root,
                                spec(&name, consts, &["k"], &[]),
                                origin(),
                            )
                            .unwrap();
                        for _ in 0..rng.usize(1..5) {
                            let label = random_value(&mut rng);
                            let v = random_number(&mut rng);
                            vec.with_label_values(&[&label]).set(v);
                            expected.insert(key(&name, &mut read(&[("k", label)])), v);
                        }
                    }
                    _ => {
                        let h = store
                            .get_or_create::<Histogram>(
                                &root,
                                spec(&name, consts, &[], &[0.5, 2.0]),
                                origin(),
                            )
                            .unwrap();
                        for _ in 0..rng.usize(0..5) {
                            h.observe(rng.f64() * 3.0);
                        }
                        let count = format!("{name}_count");
                        expected.insert(key(&count, &mut read(&[])), h.get_sample_count() as f64);
                        let sum = format!("{name}_sum");
                        expected.insert(key(&sum, &mut read(&[])), h.get_sample_sum());
                    }
                }
            }
            let mut enc = TextEncoder::default();
            encode(&mut enc, &store, &root, ExternalFamilies::default(), |_| {});
            let text = enc.finish();
            let parsed = expfmt::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let got: std::collections::BTreeMap<String, f64> = parsed
                .values()
                .flat_map(|f| f.samples.iter().map(|s| (s.key.clone(), s.value)))
                .collect();
            for (k, v) in &expected {
                assert_eq!(got.get(k), Some(v), "round {round}: {k}\n{text}");
            }
        }
    }

    /// Arbitrary bytes, and valid text with random damage: the parser answers
    /// (text or an error naming a line), and never panics.
    #[test]
    fn the_parser_survives_arbitrary_input() {
        let mut rng = fastrand::Rng::with_seed(11);
        let valid = "# HELP a Help \\ text\n# TYPE a counter\na{x=\"1\",y=\"q\\\"\"} 1 1700000000\n\
                     # TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.5\nh_count 2\n";
        let pieces = [
            "{", "}", "\"", "\\", "=", ",", " ", "\n", "#", "le", "1e", "NaN", "\u{2028}", "\r",
        ];
        for _ in 0..3000 {
            let input: String = if rng.bool() {
                let bytes: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                let mut t = valid.to_owned();
                for _ in 0..rng.usize(1..6) {
                    let mut at = rng.usize(0..=t.len());
                    while !t.is_char_boundary(at) {
                        at -= 1;
                    }
                    if rng.bool() && at < t.len() {
                        let end = t[at..].chars().next().map_or(at, |c| at + c.len_utf8());
                        t.replace_range(at..end, "");
                    } else {
                        t.insert_str(at, pieces[rng.usize(..pieces.len())]);
                    }
                }
                t
            };
            match expfmt::parse(&input) {
                Ok(families) => {
                    // What parses also encodes into text that parses again.
                    let mut all = ExternalFamilies::default();
                    let _ = all.merge(families);
                    let mut enc = TextEncoder::default();
                    encode(&mut enc, &Store::default(), &ScopePath::root(), all, |_| {});
                    let again = enc.finish();
                    assert!(expfmt::parse(&again).is_ok(), "{input:?}\n->\n{again}");
                }
                Err(e) => assert!(e.line >= 1, "{e}"),
            }
        }
    }
}
