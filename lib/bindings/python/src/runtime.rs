//! `dynamo.runtime`: the hierarchy.

use crate::errors::runtime_error;
use crate::metrics::PyMetrics;
use dynamo_runtime::{Component, DistributedRuntime, Endpoint, Namespace};
use pyo3::prelude::*;

/// The root of the hierarchy. `DYN_SYSTEM_PORT` starts the system status server.
#[pyclass(module = "dynamo.runtime", name = "DistributedRuntime", frozen)]
pub struct PyDistributedRuntime {
    inner: DistributedRuntime,
}

#[pymethods]
impl PyDistributedRuntime {
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        let inner = py.detach(DistributedRuntime::new).map_err(runtime_error)?;
        Ok(Self { inner })
    }

    /// The namespace of that name.
    fn namespace(&self, name: &str) -> PyNamespace {
        PyNamespace {
            inner: self.inner.namespace(name),
        }
    }

    /// The runtime-level metrics (no hierarchy labels; its scrape shows everything).
    #[getter]
    fn metrics(&self) -> PyMetrics {
        PyMetrics {
            scope: self.inner.metrics().clone(),
        }
    }

    /// `host:port` of the system status server, or None when it does not run.
    fn system_server_address(&self) -> Option<String> {
        self.inner.system_server_addr().map(|a| a.to_string())
    }
}

/// A namespace.
#[pyclass(module = "dynamo.runtime", name = "Namespace", frozen)]
pub struct PyNamespace {
    inner: Namespace,
}

#[pymethods]
impl PyNamespace {
    /// The component of that name.
    fn component(&self, name: &str) -> PyComponent {
        PyComponent {
            inner: self.inner.component(name),
        }
    }
    /// This namespace's metrics.
    #[getter]
    fn metrics(&self) -> PyMetrics {
        PyMetrics {
            scope: self.inner.metrics().clone(),
        }
    }
    /// The name as given.
    #[getter]
    fn name(&self) -> String {
        self.inner.name()
    }
}

/// A component.
#[pyclass(module = "dynamo.runtime", name = "Component", frozen)]
pub struct PyComponent {
    inner: Component,
}

#[pymethods]
impl PyComponent {
    /// The endpoint of that name.
    fn endpoint(&self, name: &str) -> PyEndpoint {
        PyEndpoint {
            inner: self.inner.endpoint(name),
        }
    }
    /// This component's metrics.
    #[getter]
    fn metrics(&self) -> PyMetrics {
        PyMetrics {
            scope: self.inner.metrics().clone(),
        }
    }
    /// The name as given.
    #[getter]
    fn name(&self) -> String {
        self.inner.name()
    }
}

/// An endpoint.
#[pyclass(module = "dynamo.runtime", name = "Endpoint", frozen)]
pub struct PyEndpoint {
    pub(crate) inner: Endpoint,
}

#[pymethods]
impl PyEndpoint {
    /// This endpoint's metrics.
    #[getter]
    fn metrics(&self) -> PyMetrics {
        PyMetrics {
            scope: self.inner.metrics().clone(),
        }
    }
    /// The name as given.
    #[getter]
    fn name(&self) -> String {
        self.inner.name()
    }
}
