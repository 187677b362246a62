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

//!
//! The layers, each a module that only uses those above it: names and
//! validation (`prometheus_names`, `validate`), the pure text primitives
//! (`text`), what defines a metric (`spec`, `kind`, `vec`), the store of
//! families and series (`store`), the encoders that walk it for a scrape
//! (`encoder`, text format 0.0.4 first), and the registry that runs the
//! callbacks and asks an encoder for a scrape (`registry`). The system
//! status server and the HTTP frontend serve what the registry returns.

mod callbacks;
mod create;
mod encoder;
mod expfmt;
pub mod exposition;
mod format;
mod histogram;
mod kind;
pub mod native;
pub mod prometheus_names;
mod registry;
mod sample;
mod scope;
mod spec;
mod store;
pub(crate) mod text;
mod validate;
pub mod vec;

pub use callbacks::CallbackError;
pub(crate) use create::CreateArgs;
use create::{registry_trait_method, scope_method};
pub(crate) use encoder::text::CONTENT_TYPE as TEXT_CONTENT_TYPE;
pub use format::ExpositionFormat;
pub use histogram::{Exemplar, Histogram, LocalHistogram, EXEMPLAR_MAX_CHARS};
pub(crate) use registry::Registry;
pub(crate) use scope::ScopePath;

use crate::MetricsError;
use kind::MetricKind;
use prometheus::{Counter, Gauge, IntCounter, IntGauge};
use spec::{MetricSpec, PromType};
use std::panic::Location;
use std::sync::Arc;
use store::Origin;
pub use vec::{
    CounterVec, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, MetricVec, VecChild,
};

/// The metrics of one object of the hierarchy: creates metrics that carry the
/// object's hierarchy labels, registers scrape-time callbacks, and renders the
/// object's subtree. Cheap to clone.
///
/// Every `create_*` is get-or-create: asking again with the same definition
/// returns a handle to the same metric. Names are exposed as
/// `dynamo_component_<name>`; docs/metrics.md has the rules.
#[derive(Clone)]
pub struct MetricsScope {
    registry: Arc<Registry>,
    path: ScopePath,
    prefix: &'static str,
    /// True for the scope the runtime creates the automatic endpoint metrics on.
    automatic: bool,
}

impl std::fmt::Debug for MetricsScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsScope")
            .field("path", &self.path)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl MetricsScope {
    pub(crate) fn new(registry: Arc<Registry>, path: ScopePath) -> Self {
        Self {
            registry,
            path,
            prefix: prometheus_names::COMPONENT_PREFIX,
            automatic: false,
        }
    }

    /// The same scope, marking what it creates as the runtime's automatic
    /// endpoint metrics (see [`store::Origin`]).
    pub(crate) fn automatic(&self) -> Self {
        Self {
            automatic: true,
            ..self.clone()
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

    /// The one path every `create_*` method takes.
    #[track_caller]
    pub(crate) fn create<M: MetricKind>(&self, args: CreateArgs<'_>) -> Result<M, MetricsError> {
        let location = Location::caller();
        let CreateArgs {
            name,
            description: help,
            const_labels,
            label_names: var_labels,
            buckets,
        } = args;
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
            series_limit: self.registry.series_limit(),
            on_refused: Some(self.registry.on_refused()),
        };
        let origin = Origin {
            place: format!("{} ({}:{})", self.path, location.file(), location.line()),
            automatic: self.automatic,
        };
        self.registry.get_or_create::<M>(&self.path, spec, origin)
    }

    crate::for_each_create_method!(scope_method);

    /// Renders this object's metrics and everything below it in Prometheus
    /// text format 0.0.4, after running the callbacks registered there.
    pub fn prometheus_metrics_fmt(&self) -> Result<String, MetricsError> {
        self.path.validate()?;
        Ok(self.registry.scrape(&self.path))
    }

    /// Renders this object's metrics and everything below it in `format`
    /// (see [`ExpositionFormat::negotiate`] for choosing one from an
    /// `Accept` header), after running the callbacks registered there.
    ///
    /// ```
    /// use dynamo_runtime::{DistributedRuntime, ExpositionFormat, MetricsRegistry};
    ///
    /// let drt = DistributedRuntime::new()?;
    /// drt.create_intcounter("requests_total", "Requests", &[])?.inc();
    /// let text = String::from_utf8(drt.metrics().render(ExpositionFormat::OpenMetrics)?)?;
    /// assert!(text.contains("# TYPE dynamo_component_requests counter\n"));
    /// assert!(text.contains("\ndynamo_component_requests_total 1\n"));
    /// assert!(text.ends_with("# EOF\n"));
    /// // Protobuf is bytes: length-delimited MetricFamily messages.
    /// let proto = drt.metrics().render(ExpositionFormat::Protobuf)?;
    /// assert!(proto.windows(31).any(|w| w == b"dynamo_component_requests_total"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn render(&self, format: ExpositionFormat) -> Result<Vec<u8>, MetricsError> {
        self.path.validate()?;
        Ok(self.registry.scrape_as(&self.path, format))
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
    crate::for_each_create_method!(registry_trait_method);
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
