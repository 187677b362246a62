//! `dynamo.prometheus_metrics`: the metric classes, and the `metrics`
//! object of every hierarchy level that creates them.

use crate::errors::value_error;
use dynamo_runtime::prometheus::core::Collector;
use dynamo_runtime::{MetricVec, MetricsScope, VecChild};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::collections::HashMap;

/// The `metrics` object of a runtime, namespace, component or endpoint.
#[pyclass(module = "dynamo.runtime", name = "Metrics", frozen)]
pub struct PyMetrics {
    pub(crate) scope: MetricsScope,
}

fn const_labels_of(desc: &dynamo_runtime::prometheus::core::Desc) -> HashMap<String, String> {
    desc.const_label_pairs
        .iter()
        .map(|p| (p.name().to_owned(), p.value().to_owned()))
        .collect()
}

/// A Python metric class made from the runtime's metric it wraps.
trait Wrap {
    type Inner;
    fn wrap(py: Python<'_>, inner: Self::Inner) -> Self;
}

/// Defines a plain metric class with `name()` and `const_labels()`.
macro_rules! plain_metric {
    ($py_name:literal, $ty:ident, $inner:ty) => {
        #[doc = concat!("A `", $py_name, "`, created by a `metrics.create_*` method.")]
        #[pyclass(module = "dynamo.prometheus_metrics", name = $py_name, frozen)]
        pub struct $ty {
            inner: $inner,
        }

        impl $ty {
            fn desc(&self) -> &dynamo_runtime::prometheus::core::Desc {
                self.inner.desc()[0]
            }
        }

        impl Wrap for $ty {
            type Inner = $inner;
            fn wrap(_py: Python<'_>, inner: $inner) -> Self {
                Self { inner }
            }
        }

        #[pymethods]
        impl $ty {
            /// The name as exposed, e.g. `dynamo_component_requests_total`.
            fn name(&self) -> String {
                self.desc().fq_name.clone()
            }

            /// The constant labels, automatic ones included.
            fn const_labels(&self) -> HashMap<String, String> {
                const_labels_of(self.desc())
            }

            fn __repr__(&self) -> String {
                format!("<{} {}>", $py_name, self.desc().fq_name)
            }
        }
    };
}

plain_metric!("Counter", Counter, dynamo_runtime::prometheus::Counter);
plain_metric!(
    "IntCounter",
    IntCounter,
    dynamo_runtime::prometheus::IntCounter
);
plain_metric!("Gauge", Gauge, dynamo_runtime::prometheus::Gauge);
plain_metric!("IntGauge", IntGauge, dynamo_runtime::prometheus::IntGauge);
plain_metric!("Histogram", Histogram, dynamo_runtime::Histogram);

fn non_negative_f64(metric: &str, v: f64) -> PyResult<f64> {
    if v >= 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(PyValueError::new_err(format!(
            "counter {metric:?}: cannot add {v}: a counter only goes up by a finite amount >= 0"
        )))
    }
}

fn non_negative_u64(metric: &str, v: i64) -> PyResult<u64> {
    u64::try_from(v).map_err(|_| {
        PyValueError::new_err(format!(
            "counter {metric:?}: cannot add {v}: a counter only goes up (amount >= 0)"
        ))
    })
}

#[pymethods]
impl Counter {
    /// Adds 1.
    fn inc(&self) {
        self.inner.inc()
    }
    /// Adds `value` (>= 0).
    fn inc_by(&self, value: f64) -> PyResult<()> {
        self.inner
            .inc_by(non_negative_f64(&self.desc().fq_name, value)?);
        Ok(())
    }
    /// The current value.
    fn get(&self) -> f64 {
        self.inner.get()
    }
}

#[pymethods]
impl IntCounter {
    /// Adds 1.
    fn inc(&self) {
        self.inner.inc()
    }
    /// Adds `value` (>= 0).
    fn inc_by(&self, value: i64) -> PyResult<()> {
        self.inner
            .inc_by(non_negative_u64(&self.desc().fq_name, value)?);
        Ok(())
    }
    /// The current value.
    fn get(&self) -> u64 {
        self.inner.get()
    }
}

/// The methods of a gauge holding `$value`s (float and integer gauges alike).
macro_rules! gauge_methods {
    ($ty:ident, $value:ty) => {
        #[pymethods]
        impl $ty {
            /// Sets the value.
            fn set(&self, value: $value) {
                self.inner.set(value)
            }
            /// Adds 1.
            fn inc(&self) {
                self.inner.inc()
            }
            /// Subtracts 1.
            fn dec(&self) {
                self.inner.dec()
            }
            /// Adds `value`.
            fn inc_by(&self, value: $value) {
                self.inner.add(value)
            }
            /// Subtracts `value`.
            fn dec_by(&self, value: $value) {
                self.inner.sub(value)
            }
            /// The current value.
            fn get(&self) -> $value {
                self.inner.get()
            }
        }
    };
}

gauge_methods!(Gauge, f64);
gauge_methods!(IntGauge, i64);

#[pymethods]
impl Histogram {
    /// Records one observation.
    fn observe(&self, value: f64) {
        self.inner.observe(value)
    }
    /// Records one observation and keeps `exemplar` (label names to values,
    /// e.g. `{"trace_id": "..."}`) as the exemplar of its bucket, written in
    /// OpenMetrics scrapes. `ValueError` for an invalid label name or labels
    /// over 128 characters together.
    fn observe_with_exemplar(&self, value: f64, exemplar: HashMap<String, String>) -> PyResult<()> {
        let mut labels: Vec<(&str, &str)> = exemplar
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        labels.sort_unstable();
        let exemplar = dynamo_runtime::Exemplar::new(&labels).map_err(value_error)?;
        self.inner.observe_with_exemplar(value, &exemplar);
        Ok(())
    }
    /// How many observations were recorded.
    fn get_sample_count(&self) -> u64 {
        self.inner.get_sample_count()
    }
    /// The sum of the observations.
    fn get_sample_sum(&self) -> f64 {
        self.inner.get_sample_sum()
    }
}

/// What every vec class shares: the vec and its label names, interned once so
/// that looking up a label dict costs no string creation.
struct VecCore<M: VecChild> {
    vec: MetricVec<M>,
    label_keys: Vec<Py<PyString>>,
}

impl<M: VecChild> VecCore<M> {
    fn new(py: Python<'_>, vec: MetricVec<M>) -> Self {
        let label_keys = vec
            .label_names()
            .iter()
            .map(|n| PyString::intern(py, n).unbind())
            .collect();
        Self { vec, label_keys }
    }

    /// The child for a dict of label values.
    fn child(&self, labels: &Bound<'_, PyDict>) -> PyResult<M> {
        let py = labels.py();
        if labels.len() != self.label_keys.len() {
            return Err(self.wrong_labels(labels));
        }
        let mut values: Vec<Bound<'_, PyAny>> = Vec::with_capacity(self.label_keys.len());
        for key in &self.label_keys {
            match labels.get_item(key.bind(py))? {
                Some(v) => values.push(v),
                None => return Err(self.wrong_labels(labels)),
            }
        }
        let mut strs: Vec<&str> = Vec::with_capacity(values.len());
        for (value, key) in values.iter().zip(self.vec.label_names()) {
            let s = value.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "metric {:?}: the value of label {key:?} must be a str, not {}",
                    self.vec.name(),
                    value
                        .get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?;
            strs.push(s.to_str()?);
        }
        self.vec
            .get_metric_with_label_values(&strs)
            .map_err(value_error)
    }

    fn wrong_labels(&self, labels: &Bound<'_, PyDict>) -> PyErr {
        let mut given: Vec<String> = labels.keys().iter().map(|k| k.to_string()).collect();
        given.sort();
        PyValueError::new_err(format!(
            "metric {:?}: expected the labels {:?}, got {:?}",
            self.vec.name(),
            self.vec.label_names(),
            given
        ))
    }

    fn const_labels(&self) -> HashMap<String, String> {
        self.vec.const_labels().iter().cloned().collect()
    }
}

/// Defines a vec class with `name()`, `const_labels()`, `variable_labels()`, `remove()`.
macro_rules! vec_metric {
    ($py_name:literal, $ty:ident, $child:ty) => {
        #[doc = concat!("A `", $py_name, "`: one series per combination of label values, given as a dict.")]
        #[pyclass(module = "dynamo.prometheus_metrics", name = $py_name, frozen)]
        pub struct $ty {
            core: VecCore<$child>,
        }

        impl Wrap for $ty {
            type Inner = MetricVec<$child>;
            fn wrap(py: Python<'_>, inner: MetricVec<$child>) -> Self {
                Self {
                    core: VecCore::new(py, inner),
                }
            }
        }

        #[pymethods]
        impl $ty {
            /// The name as exposed.
            fn name(&self) -> String {
                self.core.vec.name().to_owned()
            }
            /// The constant labels, automatic ones included.
            fn const_labels(&self) -> HashMap<String, String> {
                self.core.const_labels()
            }
            /// The variable label names.
            fn variable_labels(&self) -> Vec<String> {
                self.core.vec.label_names().to_vec()
            }
            /// How many series this family holds before new label sets go to
            /// its overflow series (every variable label `__overflow__`).
            fn series_limit(&self) -> usize {
                self.core.vec.series_limit()
            }
            /// Sets the series limit of this family (at least 1). Past it, new
            /// label sets go to the overflow series and are counted in
            /// `dynamo_component_metrics_series_refused_total`.
            fn set_series_limit(&self, limit: usize) -> PyResult<()> {
                self.core.vec.set_series_limit(limit).map_err(value_error)
            }
            /// Removes the series of these label values.
            fn remove(&self, labels: &Bound<'_, PyDict>) -> PyResult<()> {
                let values: Vec<String> = self
                    .core
                    .vec
                    .label_names()
                    .iter()
                    .map(|n| labels.get_item(n).ok().flatten().map(|v| v.to_string()).unwrap_or_default())
                    .collect();
                self.core.vec.remove_label_values(&values).map_err(value_error)
            }
            fn __repr__(&self) -> String {
                format!("<{} {} {:?}>", $py_name, self.core.vec.name(), self.core.vec.label_names())
            }
        }
    };
}

vec_metric!(
    "CounterVec",
    CounterVec,
    dynamo_runtime::prometheus::Counter
);
vec_metric!(
    "IntCounterVec",
    IntCounterVec,
    dynamo_runtime::prometheus::IntCounter
);
vec_metric!("GaugeVec", GaugeVec, dynamo_runtime::prometheus::Gauge);
vec_metric!(
    "IntGaugeVec",
    IntGaugeVec,
    dynamo_runtime::prometheus::IntGauge
);
vec_metric!("HistogramVec", HistogramVec, dynamo_runtime::Histogram);

#[pymethods]
impl CounterVec {
    /// Adds 1 to the series of `labels`.
    fn inc(&self, labels: &Bound<'_, PyDict>) -> PyResult<()> {
        self.core.child(labels)?.inc();
        Ok(())
    }
    /// Adds `value` (>= 0) to the series of `labels`.
    fn inc_by(&self, value: f64, labels: &Bound<'_, PyDict>) -> PyResult<()> {
        let v = non_negative_f64(self.core.vec.name(), value)?;
        self.core.child(labels)?.inc_by(v);
        Ok(())
    }
    /// The value of the series of `labels`.
    fn get(&self, labels: &Bound<'_, PyDict>) -> PyResult<f64> {
        Ok(self.core.child(labels)?.get())
    }
}

#[pymethods]
impl IntCounterVec {
    /// Adds 1 to the series of `labels`.
    fn inc(&self, labels: &Bound<'_, PyDict>) -> PyResult<()> {
        self.core.child(labels)?.inc();
        Ok(())
    }
    /// Adds `value` (>= 0) to the series of `labels`.
    fn inc_by(&self, value: i64, labels: &Bound<'_, PyDict>) -> PyResult<()> {
        let v = non_negative_u64(self.core.vec.name(), value)?;
        self.core.child(labels)?.inc_by(v);
        Ok(())
    }
    /// The value of the series of `labels`.
    fn get(&self, labels: &Bound<'_, PyDict>) -> PyResult<u64> {
        Ok(self.core.child(labels)?.get())
    }
}

/// The methods of a gauge vec holding `$value`s (float and integer alike).
macro_rules! gauge_vec_methods {
    ($ty:ident, $value:ty) => {
        #[pymethods]
        impl $ty {
            /// Sets the series of `labels` to `value`.
            fn set(&self, value: $value, labels: &Bound<'_, PyDict>) -> PyResult<()> {
                self.core.child(labels)?.set(value);
                Ok(())
            }
            /// Adds 1.
            fn inc(&self, labels: &Bound<'_, PyDict>) -> PyResult<()> {
                self.core.child(labels)?.inc();
                Ok(())
            }
            /// Subtracts 1.
            fn dec(&self, labels: &Bound<'_, PyDict>) -> PyResult<()> {
                self.core.child(labels)?.dec();
                Ok(())
            }
            /// Adds `value`.
            fn inc_by(&self, value: $value, labels: &Bound<'_, PyDict>) -> PyResult<()> {
                self.core.child(labels)?.add(value);
                Ok(())
            }
            /// Subtracts `value`.
            fn dec_by(&self, value: $value, labels: &Bound<'_, PyDict>) -> PyResult<()> {
                self.core.child(labels)?.sub(value);
                Ok(())
            }
            /// The value of the series of `labels`.
            fn get(&self, labels: &Bound<'_, PyDict>) -> PyResult<$value> {
                Ok(self.core.child(labels)?.get())
            }
        }
    };
}

gauge_vec_methods!(GaugeVec, f64);
gauge_vec_methods!(IntGaugeVec, i64);

#[pymethods]
impl HistogramVec {
    /// Records one observation in the series of `labels`.
    fn observe(&self, value: f64, labels: &Bound<'_, PyDict>) -> PyResult<()> {
        self.core.child(labels)?.observe(value);
        Ok(())
    }
    /// How many observations the series of `labels` has.
    fn get_sample_count(&self, labels: &Bound<'_, PyDict>) -> PyResult<u64> {
        Ok(self.core.child(labels)?.get_sample_count())
    }
    /// The sum of the observations of the series of `labels`.
    fn get_sample_sum(&self, labels: &Bound<'_, PyDict>) -> PyResult<f64> {
        Ok(self.core.child(labels)?.get_sample_sum())
    }
}

type Pairs = Option<Vec<(String, String)>>;

fn pairs(labels: &Pairs) -> Vec<(&str, &str)> {
    labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn names(label_names: &[String]) -> Vec<&str> {
    label_names.iter().map(String::as_str).collect()
}

/// The ten `create_*` methods, generated from the runtime's one list of them
/// (`for_each_create_method!`), each calling the `MetricsScope` method of the
/// same name. `const_labels` is a list of (name, value) pairs.
macro_rules! py_create_methods {
    ($($method:ident $ty:ident [$($var:ident)?] [$($bk:ident)?] $doc:literal;)*) => {
        #[pymethods]
        impl PyMetrics {$(
            #[doc = $doc]
            #[pyo3(signature = (name, description, $($var,)? const_labels=None $(, $bk=None)?))]
            fn $method(
                &self,
                py: Python<'_>,
                name: &str,
                description: &str,
                $($var: Vec<String>,)?
                const_labels: Pairs,
                $($bk: Option<Vec<f64>>,)?
            ) -> PyResult<$ty> {
                let inner = self
                    .scope
                    .$method(name, description, $(&names(&$var),)? &pairs(&const_labels) $(, $bk)?)
                    .map_err(value_error)?;
                Ok(<$ty as Wrap>::wrap(py, inner))
            }
        )*}
    };
}

dynamo_runtime::for_each_create_method!(py_create_methods);

#[pymethods]
impl PyMetrics {
    /// Runs `callback()` before every scrape that includes this object. An
    /// exception is logged and counted, and the scrape goes on.
    fn register_callback(&self, callback: Py<PyAny>) {
        self.scope.register_callback(move || {
            if crate::python_exiting() {
                return Err("the Python interpreter is exiting".to_owned());
            }
            Python::attach(|py| callback.call0(py).map(|_| ()).map_err(|e| describe(py, e)))
        });
    }

    /// Merges the Prometheus text `callback()` returns into every scrape that
    /// includes this object, as it is.
    fn register_prometheus_expfmt_callback(&self, callback: Py<PyAny>) {
        self.scope.register_prometheus_expfmt_callback(move || {
            if crate::python_exiting() {
                return Err("the Python interpreter is exiting".to_owned());
            }
            Python::attach(|py| {
                callback
                    .call0(py)
                    .and_then(|text| text.extract::<String>(py))
                    .map_err(|e| describe(py, e))
            })
        });
    }

    /// This object's metrics and everything below it, in Prometheus text format.
    /// Renders without holding the GIL.
    fn prometheus_metrics_fmt(&self, py: Python<'_>) -> PyResult<String> {
        let scope = self.scope.clone();
        py.detach(move || scope.prometheus_metrics_fmt())
            .map_err(value_error)
    }

    fn __repr__(&self) -> String {
        let h = self.scope.hierarchy();
        format!("<Metrics {}>", if h.is_empty() { "runtime" } else { &h })
    }
}

/// An exception as text, with its type, for the callback-failure log.
fn describe(py: Python<'_>, e: PyErr) -> String {
    let kind = e
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".to_owned());
    format!("{kind}: {}", e.value(py))
}
