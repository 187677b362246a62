//! Rust errors as the Python exceptions a Python user expects.

use dynamo_runtime::request_plane::{CallError, ServeError};
use dynamo_runtime::RuntimeError;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::PyErr;

/// Bad input: `ValueError` with Rust's message.
pub fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Starting the runtime: a bad environment variable is a `ValueError`, a port
/// that cannot be bound an `OSError`.
pub fn runtime_error(e: RuntimeError) -> PyErr {
    match e {
        RuntimeError::InvalidEnv { .. } | RuntimeError::Metrics(_) => value_error(e),
        RuntimeError::Bind { .. } => PyOSError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// Serving: a bad name or conflicting metrics are `ValueError`s.
pub fn serve_error(e: ServeError) -> PyErr {
    match e {
        ServeError::Metrics(_) => value_error(e),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// Calling: bad input is a `ValueError`, waiting too long a `TimeoutError`,
/// the rest (no instance, a failed request) a `RuntimeError`.
pub fn call_error(e: CallError) -> PyErr {
    match e {
        CallError::Metrics(_)
        | CallError::RequestEncoding { .. }
        | CallError::RequestTooLarge { .. } => value_error(e),
        CallError::Timeout { .. } => PyTimeoutError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}
