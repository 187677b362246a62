//! The ten metric kinds the hierarchy can create, and how each is built from a
//! [`MetricSpec`] and kept in the registry as a [`Handle`].

use super::vec::{CounterVec, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, MetricVec};
use prometheus::{Counter, Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Opts};
use std::collections::HashMap;

/// The Prometheus type of a family, as written on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PromType {
    Counter,
    Gauge,
    Histogram,
}

impl PromType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PromType::Counter => "counter",
            PromType::Gauge => "gauge",
            PromType::Histogram => "histogram",
        }
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
}

impl MetricSpec {
    fn opts(&self) -> Opts {
        let labels: HashMap<String, String> = self.const_labels.iter().cloned().collect();
        Opts::new(self.name.clone(), self.help.clone()).const_labels(labels)
    }

    fn histogram_opts(&self) -> HistogramOpts {
        HistogramOpts::from(self.opts()).buckets(self.buckets.clone())
    }
}

/// A registered metric, as the registry keeps it for rendering.
#[derive(Clone)]
pub(crate) enum Handle {
    Counter(Counter),
    IntCounter(IntCounter),
    Gauge(Gauge),
    IntGauge(IntGauge),
    Histogram(Histogram),
    CounterVec(CounterVec),
    IntCounterVec(IntCounterVec),
    GaugeVec(GaugeVec),
    IntGaugeVec(IntGaugeVec),
    HistogramVec(HistogramVec),
}

/// A metric type the hierarchy can create.
pub(crate) trait MetricKind: Sized + Clone {
    /// The Rust type's name, for error messages.
    const NAME: &'static str;
    const PROM_TYPE: PromType;
    fn build(spec: &MetricSpec) -> prometheus::Result<Self>;
    fn into_handle(self) -> Handle;
    fn from_handle(handle: &Handle) -> Option<Self>;
}

macro_rules! metric_kind {
    ($ty:ident, $prom:ident, |$spec:ident| $build:expr) => {
        impl MetricKind for $ty {
            const NAME: &'static str = stringify!($ty);
            const PROM_TYPE: PromType = PromType::$prom;
            fn build($spec: &MetricSpec) -> prometheus::Result<Self> {
                $build
            }
            fn into_handle(self) -> Handle {
                Handle::$ty(self)
            }
            fn from_handle(handle: &Handle) -> Option<Self> {
                match handle {
                    Handle::$ty(m) => Some(m.clone()),
                    _ => None,
                }
            }
        }
    };
}

metric_kind!(Counter, Counter, |s| Counter::with_opts(s.opts()));
metric_kind!(IntCounter, Counter, |s| IntCounter::with_opts(s.opts()));
metric_kind!(Gauge, Gauge, |s| Gauge::with_opts(s.opts()));
metric_kind!(IntGauge, Gauge, |s| IntGauge::with_opts(s.opts()));
metric_kind!(Histogram, Histogram, |s| Histogram::with_opts(
    s.histogram_opts()
));
metric_kind!(CounterVec, Counter, |s| MetricVec::new(s));
metric_kind!(IntCounterVec, Counter, |s| MetricVec::new(s));
metric_kind!(GaugeVec, Gauge, |s| MetricVec::new(s));
metric_kind!(IntGaugeVec, Gauge, |s| MetricVec::new(s));
metric_kind!(HistogramVec, Histogram, |s| MetricVec::new(s));

impl Handle {
    /// The Rust type's name, for error messages.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Handle::Counter(_) => Counter::NAME,
            Handle::IntCounter(_) => IntCounter::NAME,
            Handle::Gauge(_) => Gauge::NAME,
            Handle::IntGauge(_) => IntGauge::NAME,
            Handle::Histogram(_) => Histogram::NAME,
            Handle::CounterVec(_) => CounterVec::NAME,
            Handle::IntCounterVec(_) => IntCounterVec::NAME,
            Handle::GaugeVec(_) => GaugeVec::NAME,
            Handle::IntGaugeVec(_) => IntGaugeVec::NAME,
            Handle::HistogramVec(_) => HistogramVec::NAME,
        }
    }
}
