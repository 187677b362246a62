//! Metrics with variable labels: [`CounterVec`], [`IntCounterVec`],
//! [`GaugeVec`], [`IntGaugeVec`], [`HistogramVec`].
//!
//! They mirror the `prometheus` crate's `MetricVec` API (`with_label_values`,
//! `get_metric_with_label_values`, `with`, `remove_label_values`, `reset`) and
//! hand out the crate's own metric types as children, so updating a child
//! costs what it costs in `prometheus`. Unlike the crate's vecs, each child's
//! full label set is escaped once, when the child is created, and a scrape
//! reads the children directly instead of building a snapshot of every
//! child; and a wrong number of label values never panics.

use super::histogram::Histogram;
use super::prometheus_names::series_limit;
use super::sample::SeriesValue;
use super::spec::{MetricSpec, OnRefused};
use super::text;
use crate::prehashed::PreHashed;
use crate::MetricsError;
use parking_lot::{Mutex, RwLock};
use prometheus::{Counter, Gauge, HistogramOpts, IntCounter, IntGauge, Opts};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A counter with variable labels; children are [`prometheus::Counter`].
pub type CounterVec = MetricVec<Counter>;
/// An integer counter with variable labels; children are [`prometheus::IntCounter`].
pub type IntCounterVec = MetricVec<IntCounter>;
/// A gauge with variable labels; children are [`prometheus::Gauge`].
pub type GaugeVec = MetricVec<Gauge>;
/// An integer gauge with variable labels; children are [`prometheus::IntGauge`].
pub type IntGaugeVec = MetricVec<IntGauge>;
/// A histogram with variable labels; children are [`Histogram`](super::Histogram).
pub type HistogramVec = MetricVec<Histogram>;

mod sealed {
    use super::super::sample::SeriesValue;

    /// What the registry needs of a metric type it holds: how to build one
    /// and how to read its value for an encoder. Public in a private module,
    /// so [`super::VecChild`] cannot be implemented outside the crate.
    pub trait Sealed: Sized {
        /// A metric with no labels of its own (a vec keeps its children's labels).
        fn new_child(name: &str, help: &str, buckets: &[f64]) -> prometheus::Result<Self>;
        /// Calls `f` with the current value.
        fn with_value<R>(&self, f: impl FnOnce(SeriesValue<'_>) -> R) -> R;
        /// The current value of a counter or gauge; `None` for a histogram.
        fn number(&self) -> Option<SeriesValue<'static>>;
    }
}

pub(crate) use sealed::Sealed;

/// A metric type that can be the child of a [`MetricVec`]. Implemented for
/// the five `prometheus` types the hierarchy creates; not implementable outside.
pub trait VecChild: sealed::Sealed + Clone + Send + Sync + 'static {}

impl<M: sealed::Sealed + Clone + Send + Sync + 'static> VecChild for M {}

impl Sealed for Counter {
    fn new_child(name: &str, help: &str, _: &[f64]) -> prometheus::Result<Self> {
        Counter::with_opts(Opts::new(name, help))
    }
    fn with_value<R>(&self, f: impl FnOnce(SeriesValue<'_>) -> R) -> R {
        f(SeriesValue::Float(self.get()))
    }
    fn number(&self) -> Option<SeriesValue<'static>> {
        Some(SeriesValue::Float(self.get()))
    }
}

impl Sealed for Gauge {
    fn new_child(name: &str, help: &str, _: &[f64]) -> prometheus::Result<Self> {
        Gauge::with_opts(Opts::new(name, help))
    }
    fn with_value<R>(&self, f: impl FnOnce(SeriesValue<'_>) -> R) -> R {
        f(SeriesValue::Float(self.get()))
    }
    fn number(&self) -> Option<SeriesValue<'static>> {
        Some(SeriesValue::Float(self.get()))
    }
}

impl Sealed for IntCounter {
    fn new_child(name: &str, help: &str, _: &[f64]) -> prometheus::Result<Self> {
        IntCounter::with_opts(Opts::new(name, help))
    }
    fn with_value<R>(&self, f: impl FnOnce(SeriesValue<'_>) -> R) -> R {
        f(SeriesValue::Int(i128::from(self.get())))
    }
    fn number(&self) -> Option<SeriesValue<'static>> {
        Some(SeriesValue::Int(i128::from(self.get())))
    }
}

impl Sealed for IntGauge {
    fn new_child(name: &str, help: &str, _: &[f64]) -> prometheus::Result<Self> {
        IntGauge::with_opts(Opts::new(name, help))
    }
    fn with_value<R>(&self, f: impl FnOnce(SeriesValue<'_>) -> R) -> R {
        f(SeriesValue::Int(i128::from(self.get())))
    }
    fn number(&self) -> Option<SeriesValue<'static>> {
        Some(SeriesValue::Int(i128::from(self.get())))
    }
}

impl Sealed for Histogram {
    fn new_child(name: &str, help: &str, buckets: &[f64]) -> prometheus::Result<Self> {
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
    }
    fn with_value<R>(&self, f: impl FnOnce(SeriesValue<'_>) -> R) -> R {
        f(SeriesValue::Histogram(self))
    }
    fn number(&self) -> Option<SeriesValue<'static>> {
        None
    }
}

/// FNV-1a over the values, with a separator so that `["ab", "c"]` and
/// `["a", "bc"]` differ.
#[inline]
fn hash_values<V: AsRef<str>>(values: &[V]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    for v in values {
        h.write(v.as_ref().as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

struct Child<M> {
    values: Box<[String]>,
    /// Constant and variable labels, sorted by name, escaped: `a="x",b="y"`.
    /// Shared with the scrape order ([`Sorted`]).
    labels: Arc<str>,
    metric: M,
}

/// One child as a scrape reads it: its labels and its metric, shared with
/// the child.
#[derive(Clone)]
struct Sorted<M> {
    labels: Arc<str>,
    metric: M,
}

struct VecCore<M> {
    name: String,
    help: String,
    label_names: Box<[String]>,
    /// Sorted by name.
    const_labels: Vec<(String, String)>,
    buckets: Vec<f64>,
    /// Handed out for updates with the wrong labels: counts, but is never exported.
    detached: M,
    children: RwLock<Children<M>>,
    /// Children held before new label sets go to the overflow child.
    limit: AtomicUsize,
    on_refused: Option<OnRefused>,
    /// Whether the first refusal was logged.
    warned: AtomicBool,
}

/// Children by the hash of their values. The first child of a hash sits in
/// the map itself (one lookup on the hot path); any other child whose values
/// hash alike goes to `collided`, searched only when the map's child differs.
struct Children<M> {
    by_hash: HashMap<u64, Child<M>, BuildHasherDefault<PreHashed>>,
    collided: Vec<(u64, Child<M>)>,
    /// The children in label order, kept from one scrape to the next and
    /// dropped by every insert and removal: a scrape sorts only after a
    /// change, and reads the children from here without a lookup.
    order: Mutex<Option<Arc<[Sorted<M>]>>>,
}

impl<M> Default for Children<M> {
    fn default() -> Self {
        Self {
            by_hash: HashMap::default(),
            collided: Vec::new(),
            order: Mutex::new(None),
        }
    }
}

impl<M: Clone> Children<M> {
    #[inline]
    fn find<V: AsRef<str>>(&self, hash: u64, values: &[V]) -> Option<&Child<M>> {
        match self.by_hash.get(&hash) {
            Some(c) if same_values(&c.values, values) => Some(c),
            Some(_) => self
                .collided
                .iter()
                .find(|(h, c)| *h == hash && same_values(&c.values, values))
                .map(|(_, c)| c),
            None => None,
        }
    }

    fn insert(&mut self, hash: u64, child: Child<M>) {
        *self.order.get_mut() = None;
        match self.by_hash.entry(hash) {
            Entry::Occupied(_) => self.collided.push((hash, child)),
            Entry::Vacant(slot) => {
                slot.insert(child);
            }
        }
    }

    fn remove<V: AsRef<str>>(&mut self, hash: u64, values: &[V]) -> bool {
        *self.order.get_mut() = None;
        if let Some(at) = self
            .collided
            .iter()
            .position(|(h, c)| *h == hash && same_values(&c.values, values))
        {
            self.collided.swap_remove(at);
            return true;
        }
        if !self
            .by_hash
            .get(&hash)
            .is_some_and(|c| same_values(&c.values, values))
        {
            return false;
        }
        self.by_hash.remove(&hash);
        // Promote a collided child of the same hash into the map.
        if let Some(at) = self.collided.iter().position(|(h, _)| *h == hash) {
            let (_, child) = self.collided.swap_remove(at);
            self.by_hash.insert(hash, child);
        }
        true
    }

    fn len(&self) -> usize {
        self.by_hash.len() + self.collided.len()
    }

    /// Every child, sorted by labels.
    fn sorted(&self) -> Arc<[Sorted<M>]> {
        let mut order = self.order.lock();
        order
            .get_or_insert_with(|| {
                let mut all: Vec<Sorted<M>> = self
                    .by_hash
                    .values()
                    .chain(self.collided.iter().map(|(_, c)| c))
                    .map(|c| Sorted {
                        labels: c.labels.clone(),
                        metric: c.metric.clone(),
                    })
                    .collect();
                all.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
                all.into()
            })
            .clone()
    }
}

/// A metric with variable labels, created by the hierarchy's `create_*vec`
/// methods. Cheap to clone: clones share the children.
///
/// ```
/// # let drt = dynamo_runtime::DistributedRuntime::new()?;
/// let ep = drt.namespace("ns").component("c").endpoint("e");
/// let by_model = ep.metrics().create_intcountervec("requests", "Requests", &["model"], &[])?;
/// by_model.with_label_values(&["llama"]).inc();
/// assert_eq!(by_model.get_metric_with_label_values(&["llama"])?.get(), 1);
/// assert!(by_model.get_metric_with_label_values(&["llama", "extra"]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MetricVec<M: VecChild> {
    core: Arc<VecCore<M>>,
}

impl<M: VecChild> Clone for MetricVec<M> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
        }
    }
}

impl<M: VecChild> std::fmt::Debug for MetricVec<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricVec")
            .field("name", &self.core.name)
            .field("label_names", &self.core.label_names)
            .field("children", &self.core.children.read().len())
            .finish()
    }
}

impl<M: VecChild> MetricVec<M> {
    pub(crate) fn new(spec: &MetricSpec) -> prometheus::Result<Self> {
        // Also lets the crate check the name and help once, as it would per child.
        let detached = M::new_child(&spec.name, &spec.help, &spec.buckets)?;
        Ok(Self {
            core: Arc::new(VecCore {
                name: spec.name.clone(),
                help: spec.help.clone(),
                label_names: spec.var_labels.clone().into_boxed_slice(),
                const_labels: spec.const_labels.clone(),
                buckets: spec.buckets.clone(),
                detached,
                children: RwLock::new(Children::default()),
                limit: AtomicUsize::new(spec.series_limit),
                on_refused: spec.on_refused.clone(),
                warned: AtomicBool::new(false),
            }),
        })
    }

    /// How many series (children) this vec holds before it sends new label
    /// sets to its overflow series: the runtime's limit
    /// (`DYN_METRICS_SERIES_LIMIT`, default
    /// [`series_limit::DEFAULT`](crate::prometheus_names::series_limit::DEFAULT))
    /// unless set here.
    pub fn series_limit(&self) -> usize {
        self.core.limit.load(Ordering::Relaxed)
    }

    /// Sets the series limit of this family. Past it, an update with a new
    /// label set goes to one overflow series, whose every variable label is
    /// [`series_limit::OVERFLOW_VALUE`](crate::prometheus_names::series_limit::OVERFLOW_VALUE);
    /// the refusal is counted in `dynamo_component_metrics_series_refused_total`
    /// and logged once. Existing series keep counting. A limit of 0 is an error.
    ///
    /// ```
    /// # let drt = dynamo_runtime::DistributedRuntime::new()?;
    /// let by_user = drt.metrics().create_intcountervec("logins_total", "Logins", &["user"], &[])?;
    /// by_user.set_series_limit(2)?;
    /// for user in ["ann", "bob", "cy", "dee"] {
    ///     by_user.with_label_values(&[user]).inc();
    /// }
    /// assert_eq!(by_user.with_label_values(&["__overflow__"]).get(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_series_limit(&self, limit: usize) -> Result<(), MetricsError> {
        if limit == 0 {
            return Err(MetricsError::InvalidSeriesLimit {
                metric: self.core.name.clone(),
                limit,
            });
        }
        self.core.limit.store(limit, Ordering::Relaxed);
        Ok(())
    }

    /// The exposed name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The variable label names, in the order label values are given.
    pub fn label_names(&self) -> &[String] {
        &self.core.label_names
    }

    /// The constant labels (automatic and user-given), sorted by name.
    pub fn const_labels(&self) -> &[(String, String)] {
        &self.core.const_labels
    }

    /// The child for these label values (in the order of [`Self::label_names`]),
    /// created on first use. A wrong number of values is an error naming them.
    pub fn get_metric_with_label_values<V: AsRef<str>>(
        &self,
        values: &[V],
    ) -> Result<M, MetricsError> {
        if values.len() != self.core.label_names.len() {
            return Err(
                self.cardinality_error(values.iter().map(|v| v.as_ref().to_owned()).collect())
            );
        }
        let hash = hash_values(values);
        if let Some(metric) = self.find(hash, values) {
            return Ok(metric);
        }
        self.insert(hash, values)
    }

    /// Like [`Self::get_metric_with_label_values`], but never fails: on a
    /// wrong number of values it logs an error and returns a metric that is
    /// not exported (where `prometheus` would panic).
    #[inline]
    pub fn with_label_values<V: AsRef<str>>(&self, values: &[V]) -> M {
        if values.len() == self.core.label_names.len() {
            if let Some(metric) = self.find(hash_values(values), values) {
                return metric;
            }
        }
        self.get_metric_with_label_values(values)
            .unwrap_or_else(|e| self.detached(e))
    }

    /// The child for these labels, given by name. Every variable label must be
    /// given, and no other.
    pub fn get_metric_with<V: AsRef<str>, S: BuildHasher>(
        &self,
        labels: &HashMap<&str, V, S>,
    ) -> Result<M, MetricsError> {
        let values: Option<Vec<&str>> = self
            .core
            .label_names
            .iter()
            .map(|n| labels.get(n.as_str()).map(AsRef::as_ref))
            .collect();
        match values {
            Some(values) if labels.len() == values.len() => {
                self.get_metric_with_label_values(&values)
            }
            _ => {
                let mut given: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}={:?}", v.as_ref()))
                    .collect();
                given.sort();
                Err(self.cardinality_error(given))
            }
        }
    }

    /// Like [`Self::get_metric_with`], but never fails (see [`Self::with_label_values`]).
    pub fn with<V: AsRef<str>, S: BuildHasher>(&self, labels: &HashMap<&str, V, S>) -> M {
        self.get_metric_with(labels)
            .unwrap_or_else(|e| self.detached(e))
    }

    /// Removes the child for these label values; an error if there is none.
    pub fn remove_label_values<V: AsRef<str>>(&self, values: &[V]) -> Result<(), MetricsError> {
        let hash = hash_values(values);
        if self.core.children.write().remove(hash, values) {
            return Ok(());
        }
        Err(MetricsError::LabelValues {
            metric: self.core.name.clone(),
            reason: format!(
                "no child with label values {:?}",
                values.iter().map(AsRef::as_ref).collect::<Vec<_>>()
            ),
        })
    }

    /// Removes every child.
    pub fn reset(&self) {
        *self.core.children.write() = Children::default();
    }

    #[inline]
    fn find<V: AsRef<str>>(&self, hash: u64, values: &[V]) -> Option<M> {
        self.core
            .children
            .read()
            .find(hash, values)
            .map(|c| c.metric.clone())
    }

    /// Adds the child for `values` (the hot path found none), or, when the
    /// vec is full, hands out its overflow child and counts the refusal.
    fn insert<V: AsRef<str>>(&self, hash: u64, values: &[V]) -> Result<M, MetricsError> {
        let core = &*self.core;
        let mut children = core.children.write();
        if let Some(c) = children.find(hash, values) {
            return Ok(c.metric.clone());
        }
        let overflow = vec![series_limit::OVERFLOW_VALUE; core.label_names.len()];
        if same_values(values, &overflow) {
            return add_child(core, &mut children, hash, values);
        }
        let overflow_hash = hash_values(&overflow);
        let existing_overflow = children
            .find(overflow_hash, &overflow)
            .map(|c| c.metric.clone());
        // The overflow series does not count against the limit.
        let held = children.len() - usize::from(existing_overflow.is_some());
        if held < core.limit.load(Ordering::Relaxed) {
            return add_child(core, &mut children, hash, values);
        }
        let metric = match existing_overflow {
            Some(m) => m,
            None => add_child(core, &mut children, overflow_hash, &overflow)?,
        };
        drop(children);
        if let Some(count) = &core.on_refused {
            (count.0)(&core.name);
        }
        if !core.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                metric = %core.name,
                limit = core.limit.load(Ordering::Relaxed),
                "labelled metric holds its series limit; new label sets go to its overflow series \
                 (counted in {})",
                series_limit::REFUSED_TOTAL
            );
        }
        Ok(metric)
    }

    fn cardinality_error(&self, given: Vec<String>) -> MetricsError {
        MetricsError::LabelValues {
            metric: self.core.name.clone(),
            reason: format!(
                "expected values for the labels {:?}, got {:?}",
                self.core.label_names, given
            ),
        }
    }

    fn detached(&self, error: MetricsError) -> M {
        tracing::error!(error = %error, "metric update dropped");
        self.core.detached.clone()
    }

    /// Calls `f` with every child's labels (constant and variable, sorted by
    /// name, escaped: `a="x",b="y"`) and value, sorted by labels.
    pub(crate) fn for_each_sorted(&self, mut f: impl FnMut(&str, SeriesValue<'_>)) {
        let sorted = self.core.children.read().sorted();
        for_each_batched(
            &sorted,
            |c| c.metric.number(),
            |c, number| match number {
                Some(v) => f(&c.labels, v),
                None => c.metric.with_value(|v| f(&c.labels, v)),
            },
        );
    }
}

/// How many values [`for_each_batched`] reads before it writes any.
const BATCH: usize = 16;

/// Calls `each` on every item with its value from `read`, reading the values
/// of [`BATCH`] items before handing any on. A scrape is bound by the cache
/// misses of reading each metric's atomic; read back to back, the misses of a
/// batch overlap, where between formatting one value and the next they would
/// be taken one after another.
pub(crate) fn for_each_batched<T>(
    items: &[T],
    read: impl Fn(&T) -> Option<SeriesValue<'static>>,
    mut each: impl FnMut(&T, Option<SeriesValue<'static>>),
) {
    for chunk in items.chunks(BATCH) {
        let mut values = [None; BATCH];
        for (slot, item) in values.iter_mut().zip(chunk) {
            *slot = read(item);
        }
        for (item, value) in chunk.iter().zip(values) {
            each(item, value);
        }
    }
}

/// Creates the child for `values` and adds it.
fn add_child<M: VecChild, V: AsRef<str>>(
    core: &VecCore<M>,
    children: &mut Children<M>,
    hash: u64,
    values: &[V],
) -> Result<M, MetricsError> {
    let metric = M::new_child(&core.name, &core.help, &core.buckets).map_err(|source| {
        MetricsError::Prometheus {
            metric: core.name.clone(),
            source,
        }
    })?;
    let mut all: Vec<(&str, &str)> = core
        .const_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(
            core.label_names
                .iter()
                .map(String::as_str)
                .zip(values.iter().map(AsRef::as_ref)),
        )
        .collect();
    all.sort_unstable_by_key(|(k, _)| *k);
    let mut labels = String::new();
    text::write_label_pairs(&mut labels, all);
    children.insert(
        hash,
        Child {
            values: values.iter().map(|v| v.as_ref().to_owned()).collect(),
            labels: labels.into(),
            metric: metric.clone(),
        },
    );
    Ok(metric)
}

#[inline]
fn same_values<S: AsRef<str>, V: AsRef<str>>(stored: &[S], values: &[V]) -> bool {
    stored.len() == values.len()
        && stored
            .iter()
            .zip(values)
            .all(|(a, b)| a.as_ref() == b.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The children as the text encoder writes them.
    fn render<M: VecChild>(v: &MetricVec<M>) -> String {
        let mut out = String::new();
        let mut keys = crate::metrics::encoder::text::BucketKeys::default();
        v.for_each_sorted(|labels, value| {
            crate::metrics::encoder::text::write_series(
                &mut out,
                &mut keys,
                v.name(),
                labels,
                value,
            )
        });
        out
    }

    fn spec(var: &[&str]) -> MetricSpec {
        MetricSpec {
            name: "x_total".into(),
            help: "h".into(),
            const_labels: vec![("dynamo_namespace".into(), "ns".into())],
            var_labels: var.iter().map(|s| (*s).to_owned()).collect(),
            buckets: vec![1.0],
            ..MetricSpec::default()
        }
    }

    #[test]
    fn values_that_concatenate_alike_are_different_children() {
        let v = CounterVec::new(&spec(&["a", "b"])).unwrap();
        v.with_label_values(&["ab", "c"]).inc();
        v.with_label_values(&["a", "bc"]).inc_by(2.0);
        assert_eq!(v.with_label_values(&["ab", "c"]).get(), 1.0);
        assert_eq!(v.with_label_values(&["a", "bc"]).get(), 2.0);
    }

    #[test]
    fn children_that_share_a_hash_are_kept_apart() {
        let mut children: Children<u32> = Children::default();
        let child = |v: &str, m| Child {
            values: vec![v.to_owned()].into(),
            labels: "".into(),
            metric: m,
        };
        children.insert(7, child("a", 1));
        children.insert(7, child("b", 2));
        assert_eq!(children.find(7, &["a"]).map(|c| c.metric), Some(1));
        assert_eq!(children.find(7, &["b"]).map(|c| c.metric), Some(2));
        assert!(children.find(7, &["c"]).is_none());
        assert!(children.remove(7, &["a"]));
        assert_eq!(
            children.find(7, &["b"]).map(|c| c.metric),
            Some(2),
            "promoted"
        );
        assert_eq!(children.len(), 1);
        assert!(!children.remove(7, &["a"]));
    }

    #[test]
    fn children_render_sorted_with_all_labels() {
        let v = IntGaugeVec::new(&spec(&["z", "a"])).unwrap();
        v.with_label_values(&["2", "q\""]).set(5);
        v.with_label_values(&["1", "p"]).set(-1);
        let out = render(&v);
        assert_eq!(
            out,
            "x_total{a=\"p\",dynamo_namespace=\"ns\",z=\"1\"} -1\n\
             x_total{a=\"q\\\"\",dynamo_namespace=\"ns\",z=\"2\"} 5\n"
        );
    }

    #[test]
    fn wrong_cardinality_is_an_error_or_a_detached_child() {
        let v = CounterVec::new(&spec(&["a", "b"])).unwrap();
        let e = v
            .get_metric_with_label_values(&["only"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x_total") && e.contains("\"only\"") && e.contains("\"a\""),
            "{e}"
        );
        v.with_label_values(&["only"]).inc(); // no panic, not exported
        let out = render(&v);
        assert_eq!(out, "");
        let mut by_name = HashMap::new();
        by_name.insert("a", "1");
        assert!(v.get_metric_with(&by_name).is_err());
        by_name.insert("b", "2");
        v.with(&by_name).inc();
        assert_eq!(v.with_label_values(&["1", "2"]).get(), 1.0);
        by_name.insert("c", "3");
        assert!(v.get_metric_with(&by_name).is_err());
    }

    #[test]
    fn sorted_order_follows_inserts_and_removals_between_scrapes() {
        let v = IntGaugeVec::new(&spec(&["a"])).unwrap();
        v.with_label_values(&["m"]).set(1);
        v.with_label_values(&["c"]).set(2);
        let first = render(&v);
        assert!(first.find("a=\"c\"") < first.find("a=\"m\""), "{first}");
        v.with_label_values(&["a"]).set(3);
        v.with_label_values(&["z"]).set(4);
        let labels = |out: &str| -> Vec<String> {
            out.lines()
                .map(|l| l[l.find("a=\"").unwrap() + 3..].chars().take(1).collect())
                .collect()
        };
        assert_eq!(labels(&render(&v)), ["a", "c", "m", "z"]);
        v.remove_label_values(&["c"]).unwrap();
        assert_eq!(labels(&render(&v)), ["a", "m", "z"]);
        // Children whose hashes collide are ordered with the rest.
        let mut children: Children<u32> = Children::default();
        let child = |l: &str, m| Child {
            values: vec![l.to_owned()].into(),
            labels: l.into(),
            metric: m,
        };
        children.insert(7, child("b", 1));
        children.insert(7, child("a", 2));
        children.insert(8, child("c", 3));
        let order = |c: &Children<u32>| c.sorted().iter().map(|c| c.metric).collect::<Vec<_>>();
        assert_eq!(order(&children), [2, 1, 3]);
        assert!(children.remove(7, &["b"]));
        assert_eq!(order(&children), [2, 3]);
    }

    #[test]
    fn a_full_vec_sends_new_label_sets_to_one_overflow_child_and_counts_them() {
        use std::sync::Mutex;
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = refused.clone();
        let v = IntCounterVec::new(&MetricSpec {
            series_limit: 2,
            on_refused: Some(OnRefused(Arc::new(move |family: &str| {
                seen.lock().unwrap().push(family.to_owned())
            }))),
            ..spec(&["user", "zone"])
        })
        .unwrap();
        assert_eq!(v.series_limit(), 2);
        v.with_label_values(&["a", "1"]).inc();
        v.with_label_values(&["b", "1"]).inc();
        v.with_label_values(&["c", "1"]).inc_by(5);
        v.get_metric_with_label_values(&["d", "1"]).unwrap().inc();
        v.with_label_values(&["a", "1"]).inc(); // an existing series keeps counting
        let overflow = [series_limit::OVERFLOW_VALUE; 2];
        assert_eq!(v.with_label_values(&overflow).get(), 6);
        assert_eq!(v.with_label_values(&["a", "1"]).get(), 2);
        assert_eq!(*refused.lock().unwrap(), ["x_total", "x_total"]);
        let out = render(&v);
        assert_eq!(out.lines().count(), 3, "limit + the overflow series: {out}");
        assert!(!out.contains("\"c\"") && !out.contains("\"d\""), "{out}");
        // Removing a series makes room again; a larger limit too.
        v.remove_label_values(&["b", "1"]).unwrap();
        v.with_label_values(&["e", "1"]).inc();
        v.set_series_limit(10).unwrap();
        v.with_label_values(&["f", "1"]).inc();
        assert_eq!(
            render(&v).lines().count(),
            4,
            "a, e, f and the overflow series"
        );
        assert_eq!(refused.lock().unwrap().len(), 2);
        let e = v.set_series_limit(0).unwrap_err().to_string();
        assert!(e.contains("x_total") && e.contains('0'), "{e}");
    }

    #[test]
    fn remove_and_reset() {
        let v = HistogramVec::new(&spec(&["a"])).unwrap();
        v.with_label_values(&["x"]).observe(0.5);
        v.with_label_values(&["y"]).observe(2.0);
        v.remove_label_values(&["x"]).unwrap();
        assert!(v.remove_label_values(&["x"]).is_err());
        let out = render(&v);
        assert!(out.contains("a=\"y\"") && !out.contains("a=\"x\""), "{out}");
        assert!(
            out.contains("x_total_bucket{a=\"y\",dynamo_namespace=\"ns\",le=\"1\"} 0"),
            "{out}"
        );
        v.reset();
        let out = render(&v);
        assert_eq!(out, "");
    }
}
