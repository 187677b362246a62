//! The ten metric kinds the hierarchy can create, and how each is built from a
//! [`MetricSpec`] and kept in the registry as a [`Handle`].

use super::histogram::Histogram;
use super::sample::SeriesValue;
use super::spec::{MetricSpec, PromType};
use super::vec::Sealed as _;
use super::vec::{CounterVec, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, MetricVec};
use prometheus::{Counter, Gauge, IntCounter, IntGauge};

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
    /// True for the kinds without variable labels.
    const PLAIN: bool;
    fn build(spec: &MetricSpec) -> prometheus::Result<Self>;
    fn into_handle(self) -> Handle;
    fn from_handle(handle: &Handle) -> Option<Self>;
}

macro_rules! metric_kind {
    ($ty:ident, $prom:ident, $plain:literal, |$spec:ident| $build:expr) => {
        impl MetricKind for $ty {
            const NAME: &'static str = stringify!($ty);
            const PROM_TYPE: PromType = PromType::$prom;
            const PLAIN: bool = $plain;
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

metric_kind!(Counter, Counter, true, |s| Counter::with_opts(s.opts()));
metric_kind!(IntCounter, Counter, true, |s| IntCounter::with_opts(
    s.opts()
));
metric_kind!(Gauge, Gauge, true, |s| Gauge::with_opts(s.opts()));
metric_kind!(IntGauge, Gauge, true, |s| IntGauge::with_opts(s.opts()));
metric_kind!(Histogram, Histogram, true, |s| Histogram::with_opts(
    s.histogram_opts()
));
metric_kind!(CounterVec, Counter, false, |s| MetricVec::new(s));
metric_kind!(IntCounterVec, Counter, false, |s| MetricVec::new(s));
metric_kind!(GaugeVec, Gauge, false, |s| MetricVec::new(s));
metric_kind!(IntGaugeVec, Gauge, false, |s| MetricVec::new(s));
metric_kind!(HistogramVec, Histogram, false, |s| MetricVec::new(s));

impl Handle {
    /// True for a metric without variable labels.
    pub(crate) fn is_plain(&self) -> bool {
        !matches!(
            self,
            Handle::CounterVec(_)
                | Handle::IntCounterVec(_)
                | Handle::GaugeVec(_)
                | Handle::IntGaugeVec(_)
                | Handle::HistogramVec(_)
        )
    }

    /// The value of a plain counter or gauge; `None` for histograms and vecs.
    pub(crate) fn number(&self) -> Option<SeriesValue<'static>> {
        match self {
            Handle::Counter(m) => m.number(),
            Handle::Gauge(m) => m.number(),
            Handle::IntCounter(m) => m.number(),
            Handle::IntGauge(m) => m.number(),
            _ => None,
        }
    }

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
