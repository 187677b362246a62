//! The Python package `dynamo`: `dynamo.runtime` (the hierarchy, serving and
//! calling endpoints), `dynamo.llm` (engines in Python behind the frontend)
//! and `dynamo.prometheus_metrics` (the metric classes), on top of
//! `dynamo-runtime` and `dynamo-llm`. Built with maturin as `dynamo._core`.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod errors;
mod llm;
mod metrics;
mod runtime;
mod serving;

use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set when the interpreter starts exiting: from then on, runtime threads no
/// longer call into Python (a callback or handler is skipped with an error).
static PYTHON_EXITING: AtomicBool = AtomicBool::new(false);

/// True once the interpreter is exiting.
pub(crate) fn python_exiting() -> bool {
    PYTHON_EXITING.load(Ordering::Acquire)
}

/// Registered with `atexit` by `dynamo/__init__.py`. CPython 3.11 ends a thread
/// that tries to take the GIL during finalization with `pthread_exit`, which
/// aborts the process when it unwinds through Rust frames. So: stop new calls
/// into Python from runtime threads, then release the GIL for a moment so that
/// a thread already handing a result to asyncio can finish while it still can.
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    PYTHON_EXITING.store(true, Ordering::Release);
    py.detach(|| std::thread::sleep(Duration::from_millis(50)));
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Logs of the Rust side: stderr, DYN_LOG (or RUST_LOG), info by default.
    dynamo_runtime::logging::init();
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    m.add_class::<runtime::PyDistributedRuntime>()?;
    m.add_class::<runtime::PyNamespace>()?;
    m.add_class::<runtime::PyComponent>()?;
    m.add_class::<runtime::PyEndpoint>()?;
    m.add_class::<metrics::PyMetrics>()?;
    m.add_function(wrap_pyfunction!(llm::register_llm, m)?)?;
    m.add_class::<llm::RegisteredModel>()?;
    m.add_class::<llm::EngineMetrics>()?;
    m.add_class::<serving::PyServedEndpoint>()?;
    m.add_class::<serving::PyContext>()?;
    m.add_class::<serving::PyClient>()?;
    m.add_class::<serving::PyResponseStream>()?;
    m.add_class::<metrics::Counter>()?;
    m.add_class::<metrics::IntCounter>()?;
    m.add_class::<metrics::Gauge>()?;
    m.add_class::<metrics::IntGauge>()?;
    m.add_class::<metrics::Histogram>()?;
    m.add_class::<metrics::CounterVec>()?;
    m.add_class::<metrics::IntCounterVec>()?;
    m.add_class::<metrics::GaugeVec>()?;
    m.add_class::<metrics::IntGaugeVec>()?;
    m.add_class::<metrics::HistogramVec>()?;
    Ok(())
}
