//! What defines a metric: its family's Prometheus type and the [`MetricSpec`]
//! one creation asks for. Depends on no other module.

use prometheus::{HistogramOpts, Opts};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Called with a family's name each time the family refuses a new label set
/// because it is full (the registry counts it).
#[derive(Clone)]
pub(crate) struct OnRefused(pub Arc<dyn Fn(&str) + Send + Sync>);

impl fmt::Debug for OnRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnRefused")
    }
}

/// The Prometheus type of a family, as written on its `# TYPE` line. The
/// registry creates the first three; text callbacks may hand in all five.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PromType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl PromType {
    /// Every type, as the text format names them.
    pub(crate) const ALL: [PromType; 5] = [
        PromType::Counter,
        PromType::Gauge,
        PromType::Histogram,
        PromType::Summary,
        PromType::Untyped,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PromType::Counter => "counter",
            PromType::Gauge => "gauge",
            PromType::Histogram => "histogram",
            PromType::Summary => "summary",
            PromType::Untyped => "untyped",
        }
    }

    /// The type named `name` on a `# TYPE` line.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// Everything needed to build one metric.
#[derive(Debug, Clone)]
pub(crate) struct MetricSpec {
    /// The exposed name.
    pub name: String,
    pub help: String,
    /// Automatic and user constant labels, sorted by name.
    pub const_labels: Vec<(String, String)>,
    /// Variable label names of a vec, in the order the user gave.
    pub var_labels: Vec<String>,
    /// Histogram buckets (resolved: never empty for a histogram).
    pub buckets: Vec<f64>,
    /// A vec's series limit (see `MetricVec::set_series_limit`).
    pub series_limit: usize,
    /// Where a vec counts the label sets it refuses.
    pub on_refused: Option<OnRefused>,
}

impl Default for MetricSpec {
    /// No name, no labels, no limit: the fields a creation does not set.
    fn default() -> Self {
        Self {
            name: String::new(),
            help: String::new(),
            const_labels: Vec::new(),
            var_labels: Vec::new(),
            buckets: Vec::new(),
            series_limit: usize::MAX,
            on_refused: None,
        }
    }
}

impl MetricSpec {
    /// The `prometheus` crate's options for a plain metric.
    pub(crate) fn opts(&self) -> Opts {
        let labels: HashMap<String, String> = self.const_labels.iter().cloned().collect();
        Opts::new(self.name.clone(), self.help.clone()).const_labels(labels)
    }

    /// The `prometheus` crate's options for a plain histogram.
    pub(crate) fn histogram_opts(&self) -> HistogramOpts {
        HistogramOpts::from(self.opts()).buckets(self.buckets.clone())
    }
}
