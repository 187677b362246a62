//! Parsing of Prometheus text format 0.0.4 handed over by text callbacks
//! (`register_prometheus_expfmt_callback`), so that it can be merged into a
//! scrape: repeated families are joined, repeated series are dropped, and text
//! that does not parse is refused whole with the line that broke it.

use super::prometheus_names::{is_valid_label_name, is_valid_metric_name};
use super::spec::PromType;
use super::text;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// Text that is not valid exposition format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// One sample of parsed text, in normal form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedSample {
    /// `name{labels}` with the labels sorted by name (`le` and `quantile`
    /// last) and escaped, as the registry writes its own: the sample's identity.
    pub key: String,
    pub value: f64,
    /// Milliseconds since the epoch, if the text gave one.
    pub timestamp: Option<i64>,
}

/// One family of parsed text.
#[derive(Debug, Clone)]
pub(crate) struct ParsedFamily {
    pub help: Option<String>,
    pub prom_type: PromType,
    pub samples: Vec<ParsedSample>,
    keys: HashSet<String>,
}

impl ParsedFamily {
    fn new(prom_type: PromType) -> Self {
        Self {
            help: None,
            prom_type,
            samples: Vec::new(),
            keys: HashSet::new(),
        }
    }

    /// Adds a sample unless one with the same key is there already.
    fn push(&mut self, sample: ParsedSample) -> bool {
        if self.keys.insert(sample.key.clone()) {
            self.samples.push(sample);
            true
        } else {
            false
        }
    }
}

/// Families from text callbacks, by name, ready to merge into a scrape.
#[derive(Debug, Default)]
pub(crate) struct ExternalFamilies {
    pub families: BTreeMap<String, ParsedFamily>,
}

impl ExternalFamilies {
    /// Adds the families of one callback's text. A family whose type differs
    /// from one already added is dropped; its name is returned.
    pub(crate) fn merge(&mut self, parsed: BTreeMap<String, ParsedFamily>) -> Vec<String> {
        let mut conflicts = Vec::new();
        for (name, family) in parsed {
            match self.families.get_mut(&name) {
                None => {
                    self.families.insert(name, family);
                }
                Some(existing) if existing.prom_type == family.prom_type => {
                    if existing.help.is_none() {
                        existing.help = family.help;
                    }
                    for sample in family.samples {
                        existing.push(sample);
                    }
                }
                Some(_) => conflicts.push(name),
            }
        }
        conflicts
    }
}

/// Parses exposition text into families keyed by name.
pub(crate) fn parse(text: &str) -> Result<BTreeMap<String, ParsedFamily>, ParseError> {
    let mut families: BTreeMap<String, ParsedFamily> = BTreeMap::new();
    // Families declared by a TYPE line, so that `x_bucket` finds histogram `x`.
    let mut declared: HashMap<String, PromType> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            parse_comment(comment, &mut families, &mut declared).map_err(err)?;
            continue;
        }
        let sample = parse_sample(line).map_err(err)?;
        let (family_name, prom_type) = family_of(&sample.name, &declared);
        check_sample_shape(&sample, &family_name, prom_type).map_err(err)?;
        let family = families
            .entry(family_name)
            .or_insert_with(|| ParsedFamily::new(prom_type));
        family.push(sample.normalize());
    }
    Ok(families)
}

fn parse_comment(
    comment: &str,
    families: &mut BTreeMap<String, ParsedFamily>,
    declared: &mut HashMap<String, PromType>,
) -> Result<(), String> {
    let comment = comment.trim_start();
    let (keyword, rest) = comment.split_once([' ', '\t']).unwrap_or((comment, ""));
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(()); // a plain comment
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Ok(()); // a bare `# HELP` or `# TYPE` is a plain comment (as in the Go parser)
    }
    let (name, arg) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    if !is_valid_metric_name(name) {
        return Err(format!("{keyword} line names an invalid metric {name:?}"));
    }
    if arg.trim().is_empty() {
        return Ok(()); // a name and nothing after it: a plain comment (as in the Go parser)
    }
    if keyword == "HELP" {
        let help = unescape_help(arg.trim_start_matches([' ', '\t']));
        let family = families.entry(name.to_owned()).or_insert_with(|| {
            ParsedFamily::new(declared.get(name).copied().unwrap_or(PromType::Untyped))
        });
        if family.help.is_some() {
            return Err(format!("second HELP line for {name:?}"));
        }
        family.help = Some(help);
        return Ok(());
    }
    let arg = arg.trim();
    let Some(prom_type) = PromType::parse(arg) else {
        return Err(format!("unknown type {arg:?} for {name:?}"));
    };
    if let Some(previous) = declared.insert(name.to_owned(), prom_type) {
        return Err(format!(
            "second TYPE line for {name:?} (declared {} before)",
            previous.as_str()
        ));
    }
    let family = families
        .entry(name.to_owned())
        .or_insert_with(|| ParsedFamily::new(prom_type));
    if !family.samples.is_empty() {
        return Err(format!("TYPE line for {name:?} after its samples"));
    }
    family.prom_type = prom_type;
    Ok(())
}

fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The family a sample belongs to, and that family's type.
fn family_of(sample: &str, declared: &HashMap<String, PromType>) -> (String, PromType) {
    if let Some(prom_type) = declared.get(sample) {
        return (sample.to_owned(), *prom_type);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            match declared.get(base) {
                Some(PromType::Histogram) => return (base.to_owned(), PromType::Histogram),
                Some(PromType::Summary) if suffix != "_bucket" => {
                    return (base.to_owned(), PromType::Summary)
                }
                _ => {}
            }
        }
    }
    (sample.to_owned(), PromType::Untyped)
}

fn check_sample_shape(sample: &Sample, family: &str, prom_type: PromType) -> Result<(), String> {
    let counts = prom_type == PromType::Histogram
        && (sample.name.ends_with("_bucket") || sample.name.ends_with("_count"));
    if counts && sample.value < 0.0 {
        return Err(format!(
            "negative count {} on {:?} of histogram {family:?}",
            sample.value, sample.name
        ));
    }
    let needs = match prom_type {
        PromType::Histogram if sample.name == family => {
            return Err(format!(
                "histogram {family:?} has a sample without _bucket, _sum or _count"
            ))
        }
        PromType::Histogram if sample.name.ends_with("_bucket") => Some("le"),
        PromType::Summary if sample.name == family => Some("quantile"),
        _ => None,
    };
    if let Some(label) = needs {
        let value = sample.labels.iter().find(|(k, _)| k == label);
        match value {
            Some((_, v)) if v.parse::<f64>().is_ok() => {}
            Some((_, v)) => {
                return Err(format!(
                    "{label}={v:?} on {:?} is not a number",
                    sample.name
                ))
            }
            None => return Err(format!("{:?} has no {label} label", sample.name)),
        }
    }
    Ok(())
}

struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp: Option<i64>,
}

impl Sample {
    /// Normal form: labels sorted by name, with `le`/`quantile` last, as the
    /// registry writes its own.
    fn normalize(mut self) -> ParsedSample {
        self.labels
            .sort_by_key(|(k, _)| (k == "le" || k == "quantile", k.clone()));
        let mut key = self.name;
        if !self.labels.is_empty() {
            key.push('{');
            text::write_label_pairs(
                &mut key,
                self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            key.push('}');
        }
        ParsedSample {
            key,
            value: self.value,
            timestamp: self.timestamp,
        }
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_valid_metric_name(name) {
        return Err(format!("invalid metric name at the start of {line:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    // Blanks may stand between the name and `{`, and need not follow `}`.
    let mut after_labels = false;
    if let Some(after_brace) = rest.trim_start_matches([' ', '\t']).strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
        after_labels = true;
    }
    let mut fields = rest.split_whitespace();
    let value_text = fields
        .next()
        .ok_or_else(|| format!("sample {name:?} has no value"))?;
    let value = value_text
        .parse::<f64>()
        .map_err(|_| format!("sample {name:?} has value {value_text:?}, not a number"))?;
    let timestamp = fields
        .next()
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| format!("sample {name:?} has timestamp {t:?}, not an integer"))
        })
        .transpose()?;
    if let Some(extra) = fields.next() {
        return Err(format!(
            "sample {name:?} has unexpected text {extra:?} after its value"
        ));
    }
    if !after_labels && !rest.starts_with([' ', '\t']) {
        return Err(format!(
            "sample {name:?}: expected a space before the value"
        ));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
        timestamp,
    })
}

/// Parses `a="x",b="y"}` and returns what follows the closing brace.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("unterminated label set")?;
        let name = &s[..name_end];
        if !is_valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        if name == "__name__" {
            return Err("label name \"__name__\" is reserved".to_owned());
        }
        if labels.iter().any(|(k, _)| k == name) {
            return Err(format!("label {name:?} given twice"));
        }
        s = s[name_end..].trim_start();
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("label {name:?} is not followed by '='"))?
            .trim_start();
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("value of label {name:?} is not quoted"))?;
        let (value, rest) = read_quoted(s).ok_or_else(|| {
            format!("value of label {name:?} is not terminated or has a bad escape")
        })?;
        labels.push((name.to_owned(), value));
        s = rest.trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {name:?}"));
        }
    }
}

/// A sample key `name{a="x",b="y"}` (as [`Sample::normalize`] writes it)
/// back into its name and unescaped labels.
pub(crate) fn split_key(key: &str) -> (String, Vec<(String, String)>) {
    let mut labels = Vec::new();
    match key.split_once('{') {
        Some((name, rest)) => {
            // Our own output: it parses; were it not to, no labels.
            if parse_labels(rest, &mut labels).is_err() {
                labels.clear();
            }
            (name.to_owned(), labels)
        }
        None => (key.to_owned(), labels),
    }
}

/// Reads an escaped label value up to its closing quote.
pub(crate) fn read_quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                '\\' => value.push('\\'),
                '"' => value.push('"'),
                _ => return None,
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
#[path = "expfmt_conformance.rs"]
mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_families_and_normalizes_samples() {
        let text = "# HELP vllm:tokens Tokens \\\\ seen\\n.\n# TYPE vllm:tokens counter\n\
                    vllm:tokens{model=\"m\\\"1\",a=\"x\"} 12 1700000000\n\
                    # TYPE lat histogram\nlat_bucket{le=\"0.5\"} 1\nlat_bucket{le=\"+Inf\"} 2\n\
                    lat_sum 1.5\nlat_count 2\nbare 3\n";
        let families = parse(text).unwrap();
        let tokens = &families["vllm:tokens"];
        assert_eq!(tokens.prom_type, PromType::Counter);
        assert_eq!(tokens.help.as_deref(), Some("Tokens \\ seen\n."));
        assert_eq!(
            tokens.samples,
            vec![ParsedSample {
                key: "vllm:tokens{a=\"x\",model=\"m\\\"1\"}".to_owned(),
                value: 12.0,
                timestamp: Some(1700000000),
            }]
        );
        assert_eq!(families["lat"].prom_type, PromType::Histogram);
        assert_eq!(families["lat"].samples.len(), 4);
        assert_eq!(families["bare"].prom_type, PromType::Untyped);
    }

    #[test]
    fn malformed_text_names_the_line() {
        for (text, line) in [
            ("ok 1\nbad{x=\"1\" 2\n", 2),
            ("x{a=\"1\",a=\"2\"} 1", 1),
            ("x one", 1),
            ("# TYPE x sometimes", 1),
            ("# TYPE h histogram\nh_bucket 1", 2),
            ("# TYPE h histogram\nh 1", 2),
            ("x{a=\"\\q\"} 1", 1),
            ("x 1 2 3", 1),
            ("x{9=\"a\"} 1", 1),
            ("# TYPE x counter\n# TYPE x gauge", 2),
            ("x{__name__=\"y\"} 1", 1),
            ("x-1 2", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn accepts_what_the_reference_parsers_accept() {
        // Blanks between the name and `{`, none between `}` and the value,
        // bare HELP and TYPE lines: all valid for Go's and Python's parsers.
        let families =
            parse("# HELP\n# TYPE\na {x=\"1\"} 1\nb{y=\"2\"}2\n\tc 3\n# HELP d\nd 4\n").unwrap();
        assert_eq!(families["a"].samples[0].key, "a{x=\"1\"}");
        assert_eq!(families["b"].samples[0].value, 2.0);
        assert_eq!(families["c"].samples[0].value, 3.0);
        assert_eq!(families["d"].help, None, "a HELP with no text is a comment");
    }

    #[test]
    fn merge_joins_families_drops_repeats_and_reports_type_conflicts() {
        let mut all = ExternalFamilies::default();
        assert!(all
            .merge(parse("# TYPE a counter\na{x=\"1\"} 1\n").unwrap())
            .is_empty());
        let conflicts = all.merge(
            parse("# TYPE a counter\na{x=\"1\"} 5\na{x=\"2\"} 2\n# TYPE b gauge\nb 1\n").unwrap(),
        );
        assert!(conflicts.is_empty());
        assert_eq!(
            all.families["a"].samples.len(),
            2,
            "the repeated series is kept once"
        );
        assert_eq!(
            all.families["a"].samples[0].value, 1.0,
            "the first value wins"
        );
        let conflicts = all.merge(parse("# TYPE b counter\nb 1\n").unwrap());
        assert_eq!(conflicts, vec!["b".to_owned()]);
        assert_eq!(all.families["b"].prom_type, PromType::Gauge);
    }
}
