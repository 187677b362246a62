//! `dynamo.llm`: an engine written in Python behind the frontend.
//! `register_llm` publishes that an endpoint serves a model (the frontend
//! then routes the model's requests to it); `EngineMetrics` sets the engine's
//! KV-cache and scheduler gauges on the endpoint.

use crate::errors::value_error;
use crate::runtime::PyEndpoint;
use dynamo_llm::engine_metrics::{self, KvStats};
use dynamo_llm::RegisterError;
use dynamo_runtime::RecordLease;
use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Model cards published from Python: they stay until `unregister()` or the
/// end of the process, whatever becomes of the Python object.
static CARDS: Mutex<Option<HashMap<u64, RecordLease>>> = Mutex::new(None);
static NEXT_CARD: AtomicU64 = AtomicU64::new(1);

fn register_error(e: RegisterError) -> PyErr {
    match e {
        RegisterError::ModelName { .. } | RegisterError::Endpoint(_) => value_error(e),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// Publishes that `endpoint` serves `model_name`: every frontend of the
/// deployment routes requests for it there. The handler served on the
/// endpoint receives the preprocessed request (`token_ids`, `max_tokens`,
/// `stop_conditions`, `sampling_options`) and yields
/// `{"token_ids": [...], "finish_reason": None | "stop" | "length"}`.
/// Returns a `RegisteredModel`; the model stays registered until its
/// `unregister()` or the end of the process.
#[pyfunction]
pub fn register_llm<'py>(
    py: Python<'py>,
    endpoint: &PyEndpoint,
    model_name: String,
) -> PyResult<Bound<'py, PyAny>> {
    let endpoint = endpoint.inner.clone();
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let lease = dynamo_llm::register_llm(&endpoint, &model_name)
            .await
            .map_err(register_error)?;
        let id = NEXT_CARD.fetch_add(1, Ordering::Relaxed);
        CARDS
            .lock()
            .get_or_insert_with(HashMap::new)
            .insert(id, lease);
        Ok(RegisteredModel {
            id,
            model: model_name,
        })
    })
}

/// A model published by `register_llm`.
#[pyclass(module = "dynamo.llm", name = "RegisteredModel", frozen)]
pub struct RegisteredModel {
    id: u64,
    model: String,
}

#[pymethods]
impl RegisteredModel {
    /// The model's name.
    #[getter]
    fn model(&self) -> String {
        self.model.clone()
    }

    /// Withdraws the model card now (frontends stop routing the model here).
    fn unregister<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let lease = CARDS.lock().as_mut().and_then(|c| c.remove(&self.id));
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            if let Some(lease) = lease {
                lease.revoke().await;
            }
            Ok(())
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let name = pyo3::types::PyString::new(py, &self.model).repr()?;
        Ok(format!("RegisteredModel({name})"))
    }
}

/// The engine gauges of an endpoint: `dynamo_component_kvstats_*` and
/// `dynamo_component_num_requests_waiting`, with the endpoint's hierarchy labels.
#[pyclass(module = "dynamo.llm", name = "EngineMetrics", frozen)]
pub struct EngineMetrics {
    inner: engine_metrics::EngineMetrics,
}

#[pymethods]
impl EngineMetrics {
    #[new]
    fn new(endpoint: &PyEndpoint) -> PyResult<Self> {
        Ok(Self {
            inner: engine_metrics::EngineMetrics::new(&endpoint.inner).map_err(value_error)?,
        })
    }

    /// Sets the KV-cache gauges; the usage is `active_blocks / total_blocks`.
    #[pyo3(signature = (active_blocks, total_blocks, prefix_cache_hit_rate=0.0))]
    fn set_kv_stats(
        &self,
        active_blocks: u64,
        total_blocks: u64,
        prefix_cache_hit_rate: f64,
    ) -> PyResult<()> {
        if active_blocks > total_blocks {
            return Err(PyValueError::new_err(format!(
                "active_blocks {active_blocks} is more than total_blocks {total_blocks}"
            )));
        }
        if !(0.0..=1.0).contains(&prefix_cache_hit_rate) {
            return Err(PyValueError::new_err(format!(
                "prefix_cache_hit_rate must be from 0 to 1, got {prefix_cache_hit_rate}"
            )));
        }
        self.inner.set_kv_stats(KvStats {
            active_blocks,
            total_blocks,
            prefix_cache_hit_rate,
        });
        Ok(())
    }

    /// Sets the number of requests waiting for admission.
    fn set_waiting(&self, waiting: u64) {
        self.inner.set_waiting(waiting);
    }
}
