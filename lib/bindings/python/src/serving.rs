//! Serving an endpoint with a Python async generator, and calling endpoints
//! from asyncio. Payloads are JSON: Python objects go through the standard
//! `json` module.

use crate::errors::{call_error, serve_error, value_error};
use crate::runtime::PyEndpoint;
use dynamo_runtime::request_plane::{
    Client, Context, HandlerError, ResponseReceiver, ResponseStream, ServedEndpoint,
};
use dynamo_runtime::request_plane::{HealthCheck, ServeOptions};
use futures::StreamExt;
use pyo3::exceptions::{PyStopAsyncIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3_async_runtimes::TaskLocals;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

type Json = Box<RawValue>;

static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn json_fn<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || py.import("json")?.getattr(name).map(Bound::unbind))
        .map(|f| f.bind(py).clone())
}

/// A Python object as JSON (what `json.dumps` accepts).
fn to_json(obj: &Bound<'_, PyAny>) -> PyResult<Json> {
    let py = obj.py();
    let text: String = json_fn(py, &JSON_DUMPS, "dumps")?
        .call1((obj,))?
        .extract()?;
    RawValue::from_string(text).map_err(value_error)
}

/// JSON as a Python object.
fn from_json<'py>(py: Python<'py>, json: &RawValue) -> PyResult<Bound<'py, PyAny>> {
    json_fn(py, &JSON_LOADS, "loads")?.call1((json.get(),))
}

fn handler_error(e: PyErr) -> HandlerError {
    Python::attach(|py| {
        let kind = e
            .get_type(py)
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "Exception".to_owned());
        format!("{kind}: {}", e.value(py)).into()
    })
}

/// What a handler that takes a second argument is given: the request's id,
/// its trace context and whether the caller gave up.
#[pyclass(module = "dynamo.runtime", name = "Context", frozen)]
pub struct PyContext {
    inner: Context,
}

#[pymethods]
impl PyContext {
    /// The request's id: the frontend's response id (`chatcmpl-...`) for
    /// requests from the frontend, else the request plane's own.
    fn id(&self) -> String {
        self.inner.id().to_owned()
    }

    /// The W3C trace id when the request came with a valid `traceparent`.
    fn trace_id(&self) -> Option<String> {
        self.inner.trace_id().map(str::to_owned)
    }

    /// The `traceparent` header value when the request came with a valid one.
    fn traceparent(&self) -> Option<String> {
        self.inner
            .meta()
            .traceparent()
            .map(|t| t.as_str().to_owned())
    }

    /// True once the caller dropped the request (a client that went away):
    /// a long generation can stop early.
    fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// Labels for `Histogram.observe_with_exemplar`: `request_id`, and
    /// `trace_id` when there is one.
    fn exemplar(&self) -> std::collections::HashMap<&'static str, String> {
        let mut labels = std::collections::HashMap::from([("request_id", self.id())]);
        if let Some(t) = self.trace_id() {
            labels.insert("trace_id", t);
        }
        labels
    }

    fn __repr__(&self) -> String {
        format!(
            "<Context id={:?} trace_id={:?}>",
            self.inner.id(),
            self.inner.trace_id()
        )
    }
}

/// True when `handler` takes a second positional argument (the context).
fn takes_context(py: Python<'_>, handler: &Bound<'_, PyAny>) -> PyResult<bool> {
    let signature = match py.import("inspect")?.call_method1("signature", (handler,)) {
        Ok(s) => s,
        // No signature to read (a builtin): the request only.
        Err(_) => return Ok(false),
    };
    let positional = signature
        .getattr("parameters")?
        .call_method0("values")?
        .try_iter()?
        .filter(|p| {
            p.as_ref()
                .ok()
                .and_then(|p| p.getattr("kind").ok())
                .and_then(|k| k.getattr("name").ok())
                .and_then(|n| n.extract::<String>().ok())
                .is_some_and(|n| {
                    matches!(
                        n.as_str(),
                        "POSITIONAL_ONLY" | "POSITIONAL_OR_KEYWORD" | "VAR_POSITIONAL"
                    )
                })
        })
        .count();
    Ok(positional >= 2)
}

/// Calls the Python handler (with the request, and the context when it
/// takes one) and streams what its async generator yields.
fn python_stream(
    handler: &Py<PyAny>,
    locals: &TaskLocals,
    request: Json,
    ctx: Option<Context>,
) -> Result<ResponseStream<Json>, HandlerError> {
    if crate::python_exiting() {
        return Err("the Python interpreter is exiting".into());
    }
    let agen = Python::attach(|py| -> PyResult<Py<PyAny>> {
        let obj = from_json(py, &request)?;
        let agen = match ctx {
            Some(inner) => handler.call1(py, (obj, PyContext { inner }))?,
            None => handler.call1(py, (obj,))?,
        };
        if !agen.bind(py).hasattr("__anext__")? {
            return Err(PyTypeError::new_err(
                "an endpoint handler must be an async generator function (async def ...: yield ...)",
            ));
        }
        Ok(agen)
    })
    .map_err(handler_error)?;
    Ok(Box::pin(Generator {
        agen: Some(agen),
        locals: locals.clone(),
        pending: None,
        tokio: tokio::runtime::Handle::try_current().ok(),
    }))
}

/// How long a generator dropped mid-item waits for that item before it is
/// closed (an engine step may take a while; one that never ends is left to
/// the garbage collector).
const CLOSE_AFTER_ITEM_WAIT: Duration = Duration::from_secs(60);

/// What `__anext__` answers, as a Rust future.
type NextItem = std::pin::Pin<Box<dyn std::future::Future<Output = PyResult<Py<PyAny>>> + Send>>;

/// A handler's async generator as a stream of its items. One dropped before
/// its end (the caller went away, the request was cancelled) is closed on
/// its event loop, so that its `finally` blocks run now (releasing what the
/// engine holds), not whenever the garbage collector gets to it; when an
/// item was being awaited then, only once that `__anext__` has finished (an
/// async generator cannot be closed while it runs).
struct Generator {
    /// `None` once it finished or raised: nothing to close.
    agen: Option<Py<PyAny>>,
    locals: TaskLocals,
    /// The `__anext__` in flight.
    pending: Option<NextItem>,
    /// Where a generator dropped mid-item waits for it before closing it.
    tokio: Option<tokio::runtime::Handle>,
}

impl Generator {
    /// Starts the next `__anext__`.
    fn next_item(&self) -> PyResult<NextItem> {
        Python::attach(|py| {
            let anext = match &self.agen {
                Some(a) => a.bind(py).call_method0("__anext__")?,
                None => return Err(PyStopAsyncIteration::new_err(())),
            };
            let fut = pyo3_async_runtimes::into_future_with_locals(&self.locals, anext)?;
            Ok(Box::pin(fut) as NextItem)
        })
    }

    /// The end of the stream for `__anext__`'s exception: the generator's
    /// end, or the error it raised (either way it is closed).
    fn ended(&mut self, e: PyErr) -> Option<Result<Json, HandlerError>> {
        let agen = self.agen.take();
        let finished = Python::attach(|py| {
            drop(agen);
            e.is_instance_of::<PyStopAsyncIteration>(py)
        });
        if finished {
            None
        } else {
            Some(Err(handler_error(e)))
        }
    }

    /// Closes the generator on its event loop (now: nothing is in flight).
    fn close(&mut self) {
        if let Some(agen) = self.agen.take() {
            close_on_loop(agen, &self.locals);
        }
    }
}

impl futures::Stream for Generator {
    type Item = Result<Json, HandlerError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.agen.is_none() {
            return Poll::Ready(None);
        }
        if crate::python_exiting() {
            self.agen = None;
            return Poll::Ready(Some(Err("the Python interpreter is exiting".into())));
        }
        let mut pending = match self.pending.take() {
            Some(pending) => pending,
            None => match self.next_item() {
                Ok(fut) => fut,
                Err(e) => return Poll::Ready(self.ended(e)),
            },
        };
        let next = match pending.as_mut().poll(cx) {
            Poll::Pending => {
                self.pending = Some(pending);
                return Poll::Pending;
            }
            Poll::Ready(next) => next,
        };
        Poll::Ready(match next {
            // The item is released with the GIL held (not deferred to pyo3's pool).
            Ok(item) => match Python::attach(|py| to_json(item.into_bound(py).as_any())) {
                Ok(json) => Some(Ok(json)),
                Err(e) => {
                    self.close();
                    Some(Err(handler_error(e)))
                }
            },
            Err(e) => self.ended(e),
        })
    }
}

/// Schedules `agen.aclose()` on the handler's event loop.
fn close_on_loop(agen: Py<PyAny>, locals: &TaskLocals) {
    if crate::python_exiting() {
        return;
    }
    Python::attach(|py| {
        let closed = (|| -> PyResult<()> {
            let aclose = agen.bind(py).call_method0("aclose")?;
            py.import("asyncio")?
                .call_method1("run_coroutine_threadsafe", (aclose, locals.event_loop(py)))?;
            Ok(())
        })();
        if let Err(e) = closed {
            tracing::debug!(error = %e, "could not close a handler's generator");
        }
        drop(agen);
    });
}

impl Drop for Generator {
    fn drop(&mut self) {
        let Some(agen) = self.agen.take() else { return };
        let locals = self.locals.clone();
        match (self.pending.take(), &self.tokio) {
            // Mid-item: closing now would fail ("already running"); close
            // once the item is in (it is dropped, with the GIL held).
            (Some(pending), Some(tokio)) => {
                tokio.spawn(async move {
                    match tokio::time::timeout(CLOSE_AFTER_ITEM_WAIT, pending).await {
                        Ok(item) => {
                            Python::attach(|_| drop(item));
                            close_on_loop(agen, &locals);
                        }
                        Err(_) => {
                            tracing::debug!(waited = ?CLOSE_AFTER_ITEM_WAIT, "a dropped handler's item never came; its generator is left to the garbage collector");
                            Python::attach(|_| drop(agen));
                        }
                    }
                });
            }
            (pending, _) => {
                Python::attach(|_| drop(pending));
                close_on_loop(agen, &locals);
            }
        }
    }
}

#[pymethods]
impl PyEndpoint {
    /// Serves this endpoint: `handler(request)` (or `handler(request,
    /// context)`, given a `Context`: the request's id and trace id) is an
    /// async generator function whose yields are the responses. Requests and
    /// responses are JSON values.
    /// Returns a `ServedEndpoint`; the endpoint's automatic metrics are recorded.
    /// With `health_check_payload`, that request goes through the handler every
    /// `health_check_interval` seconds, and `/health` lists the endpoint as
    /// notready while it fails or takes longer than `health_check_timeout`.
    #[pyo3(signature = (handler, health_check_payload=None, health_check_interval=10.0, health_check_timeout=5.0))]
    fn serve_endpoint<'py>(
        &self,
        py: Python<'py>,
        handler: Py<PyAny>,
        health_check_payload: Option<Bound<'py, PyAny>>,
        health_check_interval: f64,
        health_check_timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let locals = pyo3_async_runtimes::tokio::get_current_locals(py)?;
        let endpoint = self.inner.clone();
        let with_context = takes_context(py, handler.bind(py))?;
        let handler = Arc::new(handler);
        let health_check = match health_check_payload {
            None => None,
            Some(payload) => {
                let text: String = py
                    .import("json")?
                    .call_method1("dumps", (payload,))?
                    .extract()?;
                let value = serde_json::from_str(&text).map_err(|e| {
                    PyValueError::new_err(format!("health_check_payload is not JSON: {e}"))
                })?;
                let seconds = |name: &str, v: f64| {
                    std::time::Duration::try_from_secs_f64(v).map_err(|_| {
                        PyValueError::new_err(format!(
                            "{name} must be a number of seconds >= 0, got {v}"
                        ))
                    })
                };
                Some(
                    HealthCheck::new(value)
                        .every(seconds("health_check_interval", health_check_interval)?)
                        .timeout(seconds("health_check_timeout", health_check_timeout)?),
                )
            }
        };
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let options = ServeOptions {
                health_check,
                ..Default::default()
            };
            let served = endpoint
                .serve_with_options(
                    move |request: Json, ctx: Context| {
                        let ctx = with_context.then_some(ctx);
                        let result = python_stream(&handler, &locals, request, ctx);
                        async move { result }
                    },
                    options,
                )
                .await
                .map_err(serve_error)?;
            Ok(PyServedEndpoint {
                inner: tokio::sync::Mutex::new(Some(served)),
            })
        })
    }

    /// A client of this endpoint.
    fn client<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let endpoint = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let inner = endpoint.client::<Json, Json>().await.map_err(call_error)?;
            Ok(PyClient { inner })
        })
    }
}

/// A serving instance.
#[pyclass(module = "dynamo.runtime", name = "ServedEndpoint", frozen)]
pub struct PyServedEndpoint {
    inner: tokio::sync::Mutex<Option<ServedEndpoint>>,
}

#[pymethods]
impl PyServedEndpoint {
    /// Stops serving (requests already running finish).
    fn stop<'py>(slf: Py<Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let served = slf.get().inner.lock().await.take();
            if let Some(served) = served {
                served.stop().await;
            }
            Ok(())
        })
    }

    /// This instance's id.
    fn instance_id(&self) -> Option<u64> {
        self.inner
            .try_lock()
            .ok()?
            .as_ref()
            .map(ServedEndpoint::instance_id)
    }
}

/// A client of one endpoint.
#[pyclass(module = "dynamo.runtime", name = "Client", frozen)]
pub struct PyClient {
    inner: Client<Json, Json>,
}

enum Route {
    RoundRobin,
    Random,
    Direct(u64),
}

impl PyClient {
    fn send<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
        route: Route,
    ) -> PyResult<Bound<'py, PyAny>> {
        let json = to_json(request)?;
        let client = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let stream = match route {
                Route::RoundRobin => client.round_robin(json).await,
                Route::Random => client.random(json).await,
                Route::Direct(id) => client.direct(json, id).await,
            }
            .map_err(call_error)?;
            Ok(PyResponseStream {
                instance: stream.instance(),
                inner: Arc::new(tokio::sync::Mutex::new(stream)),
            })
        })
    }
}

#[pymethods]
impl PyClient {
    /// The ids of the live instances known now.
    fn instance_ids(&self) -> Vec<u64> {
        self.inner.instance_ids()
    }

    /// Waits until an instance serves (raises TimeoutError after `timeout` seconds).
    #[pyo3(signature = (timeout=10.0))]
    fn wait_for_instances<'py>(
        &self,
        py: Python<'py>,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.inner.clone();
        let timeout = Duration::try_from_secs_f64(timeout).map_err(value_error)?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            client.wait_for_instances(timeout).await.map_err(call_error)
        })
    }

    /// Sends `request` to the next instance in turn; returns an async iterator of responses.
    fn round_robin<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.send(py, request, Route::RoundRobin)
    }

    /// Sends `request` with the default routing (round-robin).
    fn generate<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.send(py, request, Route::RoundRobin)
    }

    /// Sends `request` to a random instance.
    fn random<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.send(py, request, Route::Random)
    }

    /// Sends `request` to the instance `instance_id`.
    fn direct<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
        instance_id: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.send(py, request, Route::Direct(instance_id))
    }
}

/// The responses of one request; dropping it before the end cancels the request.
#[pyclass(module = "dynamo.runtime", name = "ResponseStream", frozen)]
pub struct PyResponseStream {
    instance: u64,
    inner: Arc<tokio::sync::Mutex<ResponseReceiver<Json>>>,
}

#[pymethods]
impl PyResponseStream {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let next = inner.lock().await.next().await;
            match next {
                None => Err(PyStopAsyncIteration::new_err(())),
                Some(Err(e)) => Err(call_error(e)),
                Some(Ok(json)) => Python::attach(|py| from_json(py, &json).map(Bound::unbind)),
            }
        })
    }

    /// The instance serving this request.
    fn instance_id(&self) -> u64 {
        self.instance
    }
}
