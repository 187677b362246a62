//! The metrics API of the runtime hierarchy.
//!
//! Every object of the hierarchy (`DistributedRuntime`, `Namespace`,
//! `Component`, `Endpoint`) has a [`MetricsScope`], reached with `.metrics()`,
//! and implements [`MetricsRegistry`], so both styles work the same:
//!
//! ```
//! use dynamo_runtime::{DistributedRuntime, MetricsRegistry};
//!
//! let drt = DistributedRuntime::new()?;
//! let endpoint = drt.namespace("ns").component("comp").endpoint("ep");
//! let a = endpoint.create_counter("requests", "Requests", &[])?;
//! let b = endpoint.metrics().create_counter("requests", "Requests", &[])?;
//! a.inc();
//! assert_eq!(b.get(), 1.0); // get-or-create: one value
//! let text = endpoint.prometheus_metrics_fmt()?;
//! assert!(text.contains(
//!     r#"dynamo_component_requests{dynamo_component="comp",dynamo_endpoint="ep",dynamo_namespace="ns"} 1"#
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod callbacks;
mod expfmt;
mod kind;
pub mod prometheus_names;
mod registry;
mod render;
mod scope;
mod store;
mod validate;
pub mod vec;

pub use callbacks::CallbackError;
pub(crate) use registry::Registry;
pub(crate) use scope::ScopePath;

use crate::MetricsError;
use kind::{MetricKind, MetricSpec, PromType};
use prometheus::{Counter, Gauge, Histogram, IntCounter, IntGauge};
use std::panic::Location;
use std::sync::Arc;
pub use vec::{
    CounterVec, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, MetricVec, VecChild,
};

/// The metrics of one object of the hierarchy: creates metrics that carry the
/// object's hierarchy labels, registers scrape-time callbacks, and renders the
/// object's subtree. Cheap to clone.
///
/// Every `create_*` is get-or-create: asking again with the same definition
/// returns a handle to the same metric. Names are exposed as
/// `dynamo_component_<name>`; see DECISIONS.md for the rules.
#[derive(Clone)]
pub struct MetricsScope {
    registry: Arc<Registry>,
    path: ScopePath,
    prefix: &'static str,
}

impl MetricsScope {
    pub(crate) fn new(registry: Arc<Registry>, path: ScopePath) -> Self {
        Self {
            registry,
            path,
            prefix: prometheus_names::COMPONENT_PREFIX,
        }
    }

    /// The same scope, naming what it creates with another of the project's
    /// prefixes instead of `dynamo_component_`: how the HTTP frontend and the
    /// preprocessor create `dynamo_frontend_*` and `dynamo_preprocessor_*`.
    /// Any other prefix is an error.
    ///
    /// ```
    /// use dynamo_runtime::prometheus_names::FRONTEND_PREFIX;
    /// # let drt = dynamo_runtime::DistributedRuntime::new()?;
    /// let frontend = drt.metrics().with_prefix(FRONTEND_PREFIX)?;
    /// let g = frontend.create_intgauge("inflight_requests", "Inflight", &[])?;
    /// # use dynamo_runtime::prometheus::core::Collector;
    /// assert_eq!(g.desc()[0].fq_name, "dynamo_frontend_inflight_requests");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_prefix(&self, prefix: &'static str) -> Result<Self, MetricsError> {
        const ALLOWED: [&str; 3] = [
            prometheus_names::COMPONENT_PREFIX,
            prometheus_names::FRONTEND_PREFIX,
            prometheus_names::PREPROCESSOR_PREFIX,
        ];
        if !ALLOWED.contains(&prefix) {
            return Err(MetricsError::InvalidMetricName {
                name: prefix.to_owned(),
                reason: format!("not one of the project's prefixes {ALLOWED:?}"),
            });
        }
        Ok(Self {
            prefix,
            ..self.clone()
        })
    }

    pub(crate) fn path(&self) -> &ScopePath {
        &self.path
    }

    /// The scope of the level below with the given name.
    pub(crate) fn child(&self, name: &str) -> Self {
        Self {
            path: self.path.child(name),
            ..self.clone()
        }
    }

    /// This level's name; empty for the runtime.
    pub fn basename(&self) -> String {
        self.path.basename().to_owned()
    }

    /// The names from the namespace down to this level, joined with `_`
    /// (`ns_comp_ep` for an endpoint; empty for the runtime).
    pub fn hierarchy(&self) -> String {
        self.path.names().join("_")
    }

    /// The basenames of the levels above this one, from the runtime down
    /// (the runtime's basename is the empty string): `["", "ns", "comp"]` for
    /// an endpoint, `[]` for the runtime.
    pub fn parent_hierarchy(&self) -> Vec<String> {
        let names = self.path.names();
        match names.len() {
            0 => Vec::new(),
            n => std::iter::once(String::new())
                .chain(names[..n - 1].iter().cloned())
                .collect(),
        }
    }

    #[track_caller]
    fn create<M: MetricKind>(
        &self,
        name: &str,
        help: &str,
        const_labels: &[(&str, &str)],
        var_labels: &[&str],
        buckets: Option<Vec<f64>>,
    ) -> Result<M, MetricsError> {
        let location = Location::caller();
        self.path.validate()?;
        let exposed = validate::prefixed_metric_name(self.prefix, name)?;
        if help.is_empty() {
            return Err(MetricsError::EmptyHelp { metric: exposed });
        }
        validate::user_label_names(
            &exposed,
            const_labels
                .iter()
                .map(|(k, _)| *k)
                .chain(var_labels.iter().copied()),
        )?;
        let buckets = match (M::PROM_TYPE, buckets) {
            (PromType::Histogram, Some(b)) => {
                validate::buckets(&exposed, &b)?;
                b
            }
            (PromType::Histogram, None) => prometheus::DEFAULT_BUCKETS.to_vec(),
            _ => Vec::new(),
        };
        let mut all_const: Vec<(String, String)> = self
            .path
            .hierarchy_labels()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .chain(
                const_labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
            .collect();
        all_const.sort();
        let spec = MetricSpec {
            name: exposed,
            help: help.to_owned(),
            const_labels: all_const,
            var_labels: var_labels.iter().map(|s| (*s).to_owned()).collect(),
            buckets,
        };
        let origin = format!("{} ({}:{})", self.path, location.file(), location.line());
        self.registry.get_or_create::<M>(&self.path, spec, origin)
    }

    /// Creates (or gets) a counter with constant labels `labels`.
    #[track_caller]
    pub fn create_counter(
        &self,
        name: &str,
        description: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, MetricsError> {
        self.create(name, description, labels, &[], None)
    }

    /// Creates (or gets) a gauge.
    #[track_caller]
    pub fn create_gauge(
        &self,
        name: &str,
        description: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, MetricsError> {
        self.create(name, description, labels, &[], None)
    }

    /// Creates (or gets) a histogram; `None` buckets means Prometheus's defaults.
    #[track_caller]
    pub fn create_histogram(
        &self,
        name: &str,
        description: &str,
        labels: &[(&str, &str)],
        buckets: Option<Vec<f64>>,
    ) -> Result<Histogram, MetricsError> {
        self.create(name, description, labels, &[], buckets)
    }

    /// Creates (or gets) an integer counter.
    #[track_caller]
    pub fn create_intcounter(
        &self,
        name: &str,
        description: &str,
        labels: &[(&str, &str)],
    ) -> Result<IntCounter, MetricsError> {
        self.create(name, description, labels, &[], None)
    }

    /// Creates (or gets) an integer gauge.
    #[track_caller]
    pub fn create_intgauge(
        &self,
        name: &str,
        description: &str,
        labels: &[(&str, &str)],
    ) -> Result<IntGauge, MetricsError> {
        self.create(name, description, labels, &[], None)
    }

    /// Creates (or gets) a counter with variable labels `label_names` and
    /// constant labels `const_labels`.
    ///
    /// ```
    /// # let drt = dynamo_runtime::DistributedRuntime::new()?;
    /// let ep = drt.namespace("ns").component("c").endpoint("e");
    /// let by_model = ep.metrics().create_countervec("requests_by_model", "Requests by model", &["model"], &[])?;
    /// by_model.with_label_values(&["llama"]).inc();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn create_countervec(
        &self,
        name: &str,
        description: &str,
        label_names: &[&str],
        const_labels: &[(&str, &str)],
    ) -> Result<CounterVec, MetricsError> {
        self.create(name, description, const_labels, label_names, None)
    }

    /// Creates (or gets) an integer counter with variable labels.
    #[track_caller]
    pub fn create_intcountervec(
        &self,
        name: &str,
        description: &str,
        label_names: &[&str],
        const_labels: &[(&str, &str)],
    ) -> Result<IntCounterVec, MetricsError> {
        self.create(name, description, const_labels, label_names, None)
    }

    /// Creates (or gets) a gauge with variable labels.
    #[track_caller]
    pub fn create_gaugevec(
        &self,
        name: &str,
        description: &str,
        label_names: &[&str],
        const_labels: &[(&str, &str)],
    ) -> Result<GaugeVec, MetricsError> {
        self.create(name, description, const_labels, label_names, None)
    }

    /// Creates (or gets) an integer gauge with variable labels.
    #[track_caller]
    pub fn create_intgaugevec(
        &self,
        name: &str,
        description: &str,
        label_names: &[&str],
        const_labels: &[(&str, &str)],
    ) -> Result<IntGaugeVec, MetricsError> {
        self.create(name, description, const_labels, label_names, None)
    }

    /// Creates (or gets) a histogram with variable labels.
    #[track_caller]
    pub fn create_histogramvec(
        &self,
        name: &str,
        description: &str,
        label_names: &[&str],
        const_labels: &[(&str, &str)],
        buckets: Option<Vec<f64>>,
    ) -> Result<HistogramVec, MetricsError> {
        self.create(name, description, const_labels, label_names, buckets)
    }

    /// Renders this object's metrics and everything below it in Prometheus
    /// text format 0.0.4, after running the callbacks registered there.
    pub fn prometheus_metrics_fmt(&self) -> Result<String, MetricsError> {
        self.path.validate()?;
        Ok(self.registry.scrape(&self.path))
    }

    /// Runs `callback` before every scrape that includes this object. An error
    /// or panic is logged and counted in
    /// `dynamo_component_metrics_callback_failures_total`; the scrape goes on.
    ///
    /// ```
    /// # let drt = dynamo_runtime::DistributedRuntime::new()?;
    /// let queue = drt.metrics().create_intgauge("queue_depth", "Queued requests", &[])?;
    /// let q = queue.clone();
    /// drt.metrics().register_callback(move || {
    ///     q.set(7);
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// assert!(drt.metrics().prometheus_metrics_fmt()?.contains("dynamo_component_queue_depth 7"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register_callback<F, E>(&self, callback: F)
    where
        F: Fn() -> Result<(), E> + Send + Sync + 'static,
        E: Into<CallbackError>,
    {
        self.registry
            .add_callback(self.path.clone(), callbacks::Callback::update(callback));
    }

    /// Merges the exposition text `callback` returns into every scrape that
    /// includes this object, as it is (no prefix, no hierarchy labels): the way
    /// to pass through an engine's own Prometheus metrics. Repeated families
    /// are joined and repeated series kept once; text that does not parse is
    /// dropped, logged and counted.
    pub fn register_prometheus_expfmt_callback<F, E>(&self, callback: F)
    where
        F: Fn() -> Result<String, E> + Send + Sync + 'static,
        E: Into<CallbackError>,
    {
        self.registry
            .add_callback(self.path.clone(), callbacks::Callback::expfmt(callback));
    }
}

/// The metrics interface of the design proposal, implemented by every object
/// of the hierarchy (and by [`MetricsScope`]). Each method does what the
/// [`MetricsScope`] method of the same name does.
pub trait MetricsRegistry: Send + Sync {
    /// The object's metrics scope.
    fn metrics(&self) -> &MetricsScope;

    /// See [`MetricsScope::basename`].
    fn basename(&self) -> String {
        self.metrics().basename()
    }
    /// See [`MetricsScope::hierarchy`].
    fn hierarchy(&self) -> String {
        self.metrics().hierarchy()
    }
    /// See [`MetricsScope::parent_hierarchy`].
    fn parent_hierarchy(&self) -> Vec<String> {
        self.metrics().parent_hierarchy()
    }
    /// See [`MetricsScope::create_counter`].
    #[track_caller]
    fn create_counter(
        &self,
        name: &str,
        description: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, MetricsError> {
        self.metrics().create_counter(name, description, labels)
    }
    /// See [`MetricsScope::create_gauge`].
    #[track_caller]
    fn create_gauge(
        &self,
        name: &str,
        description: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, MetricsError> {
        self.metrics().create_gauge(name, description, labels)
    }
    /// See [`MetricsScope::create_histogram`].
    #[track_caller]
    fn create_histogram(
        &self,
        name: &str,
        description: &str,
        labels: &[(&str, &str)],
        buckets: Option<Vec<f64>>,
    ) -> Result<Histogram, MetricsError> {
        self.metrics()
            .create_histogram(name, description, labels, buckets)
    }
    /// See [`MetricsScope::create_intcounter`].
    #[track_caller]
    fn create_intcounter(
        &self,
        name: &str,
        description: &str,
        labels: &[(&str, &str)],
    ) -> Result<IntCounter, MetricsError> {
        self.metrics().create_intcounter(name, description, labels)
    }
    /// See [`MetricsScope::create_intgauge`].
    #[track_caller]
    fn create_intgauge(
        &self,
        name: &str,
        description: &str,
        labels: &[(&str, &str)],
    ) -> Result<IntGauge, MetricsError> {
        self.metrics().create_intgauge(name, description, labels)
    }
    /// See [`MetricsScope::create_countervec`].
    #[track_caller]
    fn create_countervec(
        &self,
        name: &str,
        description: &str,
        label_names: &[&str],
        const_labels: &[(&str, &str)],
    ) -> Result<CounterVec, MetricsError> {
        self.metrics()
            .create_countervec(name, description, label_names, const_labels)
    }
    /// See [`MetricsScope::create_intcountervec`].
    #[track_caller]
    fn create_intcountervec(
        &self,
        name: &str,
        description: &str,
        label_names: &[&str],
        const_labels: &[(&str, &str)],
    ) -> Result<IntCounterVec, MetricsError> {
        self.metrics()
            .create_intcountervec(name, description, label_names, const_labels)
    }
    /// See [`MetricsScope::create_gaugevec`].
    #[track_caller]
    fn create_gaugevec(
        &self,
        name: &str,
        description: &str,
        label_names: &[&str],
        const_labels: &[(&str, &str)],
    ) -> Result<GaugeVec, MetricsError> {
        self.metrics()
            .create_gaugevec(name, description, label_names, const_labels)
    }
    /// See [`MetricsScope::create_intgaugevec`].
    #[track_caller]
    fn create_intgaugevec(
        &self,
        name: &str,
        description: &str,
        label_names: &[&str],
        const_labels: &[(&str, &str)],
    ) -> Result<IntGaugeVec, MetricsError> {
        self.metrics()
            .create_intgaugevec(name, description, label_names, const_labels)
    }
    /// See [`MetricsScope::create_histogramvec`].
    #[track_caller]
    fn create_histogramvec(
        &self,
        name: &str,
        description: &str,
        label_names: &[&str],
        const_labels: &[(&str, &str)],
        buckets: Option<Vec<f64>>,
    ) -> Result<HistogramVec, MetricsError> {
        self.metrics()
            .create_histogramvec(name, description, label_names, const_labels, buckets)
    }
    /// See [`MetricsScope::prometheus_metrics_fmt`].
    fn prometheus_metrics_fmt(&self) -> Result<String, MetricsError> {
        self.metrics().prometheus_metrics_fmt()
    }
}

impl MetricsRegistry for MetricsScope {
    fn metrics(&self) -> &MetricsScope {
        self
    }
}
