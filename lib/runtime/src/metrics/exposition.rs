//! Reading Prometheus text format 0.0.4 back: the parser the registry uses
//! for text callbacks, for tools that scrape a `/metrics` (`dynamo top`).
//!
//! ```
//! use dynamo_runtime::exposition::{parse, FamilyKind};
//!
//! let families = parse(
//!     "# TYPE x_seconds histogram\n\
//!      x_seconds_bucket{model=\"a\",le=\"0.1\"} 3\n\
//!      x_seconds_bucket{model=\"a\",le=\"+Inf\"} 4\n\
//!      x_seconds_sum{model=\"a\"} 0.9\n\
//!      x_seconds_count{model=\"a\"} 4\n",
//! )?;
//! assert_eq!(families[0].name, "x_seconds");
//! assert_eq!(families[0].kind, FamilyKind::Histogram);
//! let first = &families[0].samples[0];
//! assert_eq!(first.name, "x_seconds_bucket");
//! assert_eq!(first.label("le"), Some("0.1"));
//! assert_eq!(first.value, 3.0);
//! # Ok::<(), dynamo_runtime::exposition::ExpositionParseError>(())
//! ```

use super::expfmt;
use super::spec::PromType;

/// A family's type, as its `# TYPE` line gives it (`Untyped` without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    /// `counter`
    Counter,
    /// `gauge`
    Gauge,
    /// `histogram`
    Histogram,
    /// `summary`
    Summary,
    /// `untyped`, or no `# TYPE` line.
    Untyped,
}

impl From<PromType> for FamilyKind {
    fn from(t: PromType) -> Self {
        match t {
            PromType::Counter => FamilyKind::Counter,
            PromType::Gauge => FamilyKind::Gauge,
            PromType::Histogram => FamilyKind::Histogram,
            PromType::Summary => FamilyKind::Summary,
            PromType::Untyped => FamilyKind::Untyped,
        }
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (`x_seconds_bucket` for a bucket of `x_seconds`).
    pub name: String,
    /// Its labels, unescaped, sorted by name (`le` and `quantile` last).
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
    /// Milliseconds since the epoch, if the line gave one.
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One family: its samples in the order the text gave them (a sample that
/// repeats an earlier one's name and labels is dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family's name (a histogram's, without `_bucket`).
    pub name: String,
    /// Its help text, if the text gave one.
    pub help: Option<String>,
    /// Its type.
    pub kind: FamilyKind,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// Text that is not valid exposition format: the line and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("exposition text, line {line}: {message}")]
pub struct ExpositionParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Parses text format 0.0.4 (what `/metrics` answers a client without an
/// `Accept` header) into families, sorted by name.
pub fn parse(text: &str) -> Result<Vec<Family>, ExpositionParseError> {
    let parsed = expfmt::parse(text).map_err(|e| ExpositionParseError {
        line: e.line,
        message: e.message,
    })?;
    Ok(parsed
        .into_iter()
        .map(|(name, family)| Family {
            name,
            help: family.help,
            kind: family.prom_type.into(),
            samples: family
                .samples
                .into_iter()
                .map(|s| {
                    let (name, labels) = expfmt::split_key(&s.key);
                    Sample {
                        name,
                        labels,
                        value: s.value,
                        timestamp_ms: s.timestamp,
                    }
                })
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_come_back_with_their_labels_unescaped() {
        let families = parse(
            "# HELP c_total Requests\n# TYPE c_total counter\n\
             c_total{b=\"q\\\"\\\\\\n\",a=\"\"} 2 1700000000000\nc_total 1\n\
             g 3.5\n",
        )
        .unwrap();
        assert_eq!(families.len(), 2);
        let c = &families[0];
        assert_eq!((c.name.as_str(), c.kind), ("c_total", FamilyKind::Counter));
        assert_eq!(c.help.as_deref(), Some("Requests"));
        assert_eq!(
            c.samples[0].labels,
            vec![
                ("a".to_owned(), String::new()),
                ("b".to_owned(), "q\"\\\n".to_owned())
            ]
        );
        assert_eq!(c.samples[0].timestamp_ms, Some(1_700_000_000_000));
        assert!(c.samples[1].labels.is_empty());
        assert_eq!(families[1].kind, FamilyKind::Untyped);
        let err = parse("ok 1\nbad{ 2\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
