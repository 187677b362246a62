//! The OpenAI-compatible HTTP frontend: `POST /v1/chat/completions`,
//! `POST /v1/completions` (streaming and not), `GET /v1/models`, `/metrics`,
//! `/health`, and `GET /discovery/prometheus`: every process's metrics address
//! as a Prometheus HTTP service-discovery endpoint. Requests are preprocessed here and routed to an engine worker
//! over the request plane; the LLM metrics are measured on the real stream.

use crate::metrics::{error_type, FrontendMetrics, RequestTimer};
use crate::preprocessor::Preprocessor;
use crate::protocols::{
    ChatCompletionRequest, CompletionRequest, EngineOutput, EngineRequest, SamplingOptions, Stop,
    StopConditions,
};
use crate::registry::{ModelEntry, ModelRegistry};
use crate::response::{EngineStream, ResponseMeta, SseBody};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dynamo_runtime::http_server::{self, HttpLimits};
use dynamo_runtime::metrics_http;
use dynamo_runtime::request_plane::{CallError, Client, TransportError};
use dynamo_runtime::{DistributedRuntime, RecordLease, RequestMeta, ScrapeTarget, TraceParent};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Limits of the frontend.
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest prompt accepted, in bytes (after the chat template): a larger
    /// one is a 400 counted as `invalid_request`.
    pub max_prompt_bytes: usize,
    /// Largest `max_tokens` accepted.
    pub max_tokens_limit: u32,
    /// The API port's limits: header-read (and keep-alive idle) timeout,
    /// header size, open connections (lowered to half the process's
    /// open-file limit if it is higher).
    pub http: HttpLimits,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: u32,
    /// Record the LLM metrics (default true). Hidden from the docs: turning
    /// them off exists only for the benchmark that measures what they cost
    /// (`benches/frontend.rs`).
    #[doc(hidden)]
    pub metrics_enabled: bool,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_prompt_bytes: 256 * 1024,
            max_tokens_limit: 8192,
            http: HttpLimits::default(),
            default_max_tokens: 16,
            metrics_enabled: true,
        }
    }
}

type EngineClient = Client<EngineRequest, EngineOutput>;

/// The frontend's state.
pub struct Frontend {
    drt: DistributedRuntime,
    registry: ModelRegistry,
    preprocessor: Preprocessor,
    metrics: FrontendMetrics,
    config: FrontendConfig,
    clients: Mutex<HashMap<String, EngineClient>>,
    /// This frontend's `/metrics`, published for Prometheus when the process
    /// has no system server (which would serve the same metrics).
    scrape_lease: Mutex<Option<RecordLease>>,
    /// Cancelled to drain the API port.
    shutdown: tokio_util::sync::CancellationToken,
    /// The API port's server task, which ends once drained.
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

use dynamo_runtime::prometheus_names::frontend::{
    endpoint::{CHAT_COMPLETIONS as CHAT, COMPLETIONS},
    request_type as rtype_value, UNKNOWN_MODEL,
};

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Frontend {
    /// The `model` label value for a model named by a request: the name when
    /// it is served, else [`UNKNOWN_MODEL`] (names from requests are untrusted).
    async fn model_label<'a>(&self, model: &'a str) -> &'a str {
        if self.registry.get(model).await.is_some() {
            model
        } else {
            UNKNOWN_MODEL
        }
    }

    /// A frontend on `drt` routing the models of `registry`.
    pub fn new(
        drt: DistributedRuntime,
        registry: ModelRegistry,
        config: FrontendConfig,
    ) -> Result<Arc<Self>, dynamo_runtime::MetricsError> {
        let metrics = FrontendMetrics::with_recording(drt.metrics(), config.metrics_enabled)?;
        let preprocessor = Preprocessor::new(drt.metrics())?;
        Ok(Arc::new(Self {
            drt,
            registry,
            preprocessor,
            metrics,
            config,
            clients: Mutex::new(HashMap::new()),
            scrape_lease: Mutex::new(None),
            shutdown: tokio_util::sync::CancellationToken::new(),
            server: Mutex::new(None),
        }))
    }

    /// The routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/completions", post(completions))
            .route("/v1/models", get(models))
            .route("/metrics", get(metrics))
            .route("/health", get(health))
            .route("/discovery/prometheus", get(prometheus_discovery))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(axum::middleware::from_fn(limit_header_bytes))
            .layer(DefaultBodyLimit::disable())
            .with_state(self.clone())
    }

    /// Serves on `addr` until the process ends; returns the bound address.
    pub async fn serve(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        // Open the discovery views before taking traffic, so that no request
        // waits for their first read (over NATS, a 150 ms gather each).
        if let Err(e) = self.registry.open().await {
            tracing::warn!(error = %e, "discovery not reachable yet; the first requests open it");
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        // `serve` sets TCP_NODELAY: streamed tokens are small writes, and
        // Nagle's algorithm would hold them back until the client acknowledges.
        let app = self.router();
        let limits = self.config.http.clone().within_open_file_limit();
        let shutdown = self.shutdown.clone().cancelled_owned();
        let server = tokio::spawn(http_server::serve(listener, app, limits, shutdown));
        *self.server.lock() = Some(server);
        tracing::info!(address = %bound, "HTTP frontend listening (/v1/chat/completions, /v1/completions, /v1/models, /metrics, /health, /discovery/prometheus)");
        if self.drt.system_server_addr().is_none() {
            let target = self.drt.scrape_target(bound, "frontend");
            match self.drt.publish_scrape_target(&target).await {
                Ok(lease) => *self.scrape_lease.lock() = Some(lease),
                Err(e) => tracing::warn!(error = %e, address = %target.address,
                    "could not publish the frontend's /metrics for Prometheus discovery"),
            }
        }
        Ok(bound)
    }

    /// Drains the API port: stops accepting connections, lets the requests
    /// in progress finish (up to `FrontendConfig::http`'s `drain_timeout`),
    /// then returns.
    pub async fn drain(&self) {
        self.shutdown.cancel();
        let server = self.server.lock().take();
        if let Some(server) = server {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "the HTTP frontend's server task failed");
            }
        }
        *self.scrape_lease.lock() = None;
    }

    async fn client(&self, model: &str, entry: &ModelEntry) -> Result<EngineClient, CallError> {
        if let Some(c) = self.clients.lock().get(model) {
            return Ok(c.clone());
        }
        let endpoint = self
            .drt
            .namespace(&entry.namespace)
            .component(&entry.component)
            .endpoint(&entry.endpoint);
        let client = endpoint.client::<EngineRequest, EngineOutput>().await?;
        self.clients.lock().insert(model.to_owned(), client.clone());
        Ok(client)
    }
}

/// An OpenAI-style error response.
fn error_response(status: StatusCode, kind: &str, message: String, code: Option<&str>) -> Response {
    let body =
        json!({"error": {"message": message, "type": kind, "param": Value::Null, "code": code}});
    (status, Json(body)).into_response()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What both endpoints hand to [`generate`].
struct Job {
    model: String,
    endpoint: &'static str,
    prompt: String,
    max_tokens: Option<u32>,
    sampling: SamplingOptions,
    stop: Vec<String>,
    stream: bool,
    include_usage: bool,
    start: Instant,
    /// The W3C trace context the request came with (a valid `traceparent`
    /// header), passed on to the worker and recorded in exemplars.
    traceparent: Option<TraceParent>,
}

/// The request's W3C trace context: its `traceparent` header, when valid.
fn traceparent(headers: &axum::http::HeaderMap) -> Option<TraceParent> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
}

fn request_type(stream: bool) -> &'static str {
    if stream {
        rtype_value::STREAM
    } else {
        rtype_value::UNARY
    }
}

/// The `error_type` of a request its engine call failed: `worker_lost` when
/// the worker died or became unreachable, else `engine`.
fn failure_type(e: &CallError) -> &'static str {
    match e {
        CallError::Transport {
            source: TransportError::WorkerLost { .. } | TransportError::StreamCut,
            ..
        } => error_type::WORKER_LOST,
        _ => error_type::ENGINE,
    }
}

/// Counts a failed engine call and answers it: 503 when the worker was
/// lost, 500 when the engine failed.
fn engine_failed(timer: &mut RequestTimer, e: &CallError) -> Response {
    let kind = failure_type(e);
    timer.fail(kind);
    let status = if kind == error_type::WORKER_LOST {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    error_response(status, "internal_error", e.to_string(), None)
}

/// Headers the API port reads; a request with more gets a JSON 431 (past
/// the server's hard limit, [`HttpLimits::max_header_bytes`], the server
/// answers 431 itself, without a body).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

async fn limit_header_bytes(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + request.uri().to_string().len();
    if bytes > MAX_HEADER_BYTES {
        return error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request_error",
            format!("request headers of {bytes} bytes are larger than the {MAX_HEADER_BYTES} bytes this frontend reads"),
            None,
        );
    }
    next.run(request).await
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let path: String = uri.path().chars().take(200).collect();
    error_response(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("no route {path:?}; the routes are /v1/chat/completions, /v1/completions, /v1/models, /metrics, /health, /discovery/prometheus"),
        None,
    )
}

async fn method_not_allowed(method: axum::http::Method) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("method {method} is not allowed on this route"),
        None,
    )
}

/// True for a `Content-Type` of JSON (`application/json`, any parameters).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads the body with the size limit; on failure, the response to send.
// The error is the HTTP response itself, handed straight back to axum.
#[allow(clippy::result_large_err)]
async fn read_body(fe: &Frontend, body: Body, endpoint: &'static str) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, fe.config.max_body_bytes)
        .await
        .map_err(|_| {
            refuse(
                fe,
                (UNKNOWN_MODEL, endpoint, rtype_value::UNARY),
                error_type::PAYLOAD_TOO_LARGE,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body larger than {} bytes",
                    fe.config.max_body_bytes
                ),
            )
        })
}

/// A request body that did not parse: what the error response and its
/// metrics need.
struct Unparsed {
    /// The model the body names, if it is JSON with a `model` string.
    model: Option<String>,
    stream: bool,
    message: String,
}

/// Parses a request body.
fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Unparsed> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Unparsed {
        model: None,
        stream: false,
        message: format!("invalid request body: {e}"),
    })?;
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let stream = value
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    serde_json::from_value(value).map_err(|e| Unparsed {
        model,
        stream,
        message: format!("invalid request: {e}"),
    })
}

/// Counts an invalid request (under its model only if that model is served)
/// and answers 400.
async fn invalid(
    fe: &Frontend,
    model: Option<&str>,
    endpoint: &'static str,
    stream: bool,
    message: String,
) -> Response {
    let label = match model {
        Some(m) => fe.model_label(m).await,
        None => UNKNOWN_MODEL,
    };
    refuse(
        fe,
        (label, endpoint, request_type(stream)),
        error_type::INVALID_REQUEST,
        StatusCode::BAD_REQUEST,
        message,
    )
}

/// Counts a request refused before it reached an engine, under `(model,
/// endpoint, request_type)`, and answers it with an OpenAI error (code
/// `model_not_found` for that error type).
fn refuse(
    fe: &Frontend,
    (model, endpoint, request_type): (&str, &str, &str),
    error_type: &str,
    status: StatusCode,
    message: String,
) -> Response {
    fe.metrics
        .rejected(model, endpoint, request_type, error_type);
    let code = (error_type == error_type::MODEL_NOT_FOUND).then_some(error_type::MODEL_NOT_FOUND);
    error_response(status, "invalid_request_error", message, code)
}

/// Reads and parses a request body; on failure, the error response to send.
#[allow(clippy::result_large_err)]
async fn read_request<T: serde::de::DeserializeOwned>(
    fe: &Frontend,
    headers: &axum::http::HeaderMap,
    body: Body,
    endpoint: &'static str,
) -> Result<T, Response> {
    if !is_json(headers) {
        return Err(refuse(
            fe,
            (UNKNOWN_MODEL, endpoint, rtype_value::UNARY),
            error_type::INVALID_REQUEST,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON (Content-Type: application/json)".to_owned(),
        ));
    }
    let bytes = read_body(fe, body, endpoint).await?;
    match parse_body(&bytes) {
        Ok(request) => Ok(request),
        Err(u) => Err(invalid(fe, u.model.as_deref(), endpoint, u.stream, u.message).await),
    }
}

async fn chat_completions(
    State(fe): State<Arc<Frontend>>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let req: ChatCompletionRequest = match read_request(&fe, &headers, body, CHAT).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.messages.is_empty() {
        return invalid(
            &fe,
            Some(&req.model),
            CHAT,
            req.stream,
            "messages must not be empty".to_owned(),
        )
        .await;
    }
    let job = Job {
        prompt: Preprocessor::apply_chat_template(&req.messages),
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        sampling: SamplingOptions {
            temperature: req.temperature,
            top_p: req.top_p,
        },
        stop: req.stop.map(Stop::into_vec).unwrap_or_default(),
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
        model: req.model,
        endpoint: CHAT,
        start,
        traceparent: traceparent(&headers),
    };
    generate(fe, job).await
}

async fn completions(
    State(fe): State<Arc<Frontend>>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let req: CompletionRequest = match read_request(&fe, &headers, body, COMPLETIONS).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let job = Job {
        prompt: req.prompt,
        max_tokens: req.max_tokens,
        sampling: SamplingOptions {
            temperature: req.temperature,
            top_p: req.top_p,
        },
        stop: req.stop.map(Stop::into_vec).unwrap_or_default(),
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
        model: req.model,
        endpoint: COMPLETIONS,
        start,
        traceparent: traceparent(&headers),
    };
    generate(fe, job).await
}

async fn generate(fe: Arc<Frontend>, mut job: Job) -> Response {
    let rtype = request_type(job.stream);
    if job.prompt.len() > fe.config.max_prompt_bytes {
        return invalid(
            &fe,
            Some(&job.model),
            job.endpoint,
            job.stream,
            format!(
                "prompt of {} bytes is larger than the {} bytes this frontend accepts",
                job.prompt.len(),
                fe.config.max_prompt_bytes
            ),
        )
        .await;
    }
    let limit = fe.config.max_tokens_limit;
    let max_tokens = job.max_tokens.unwrap_or(fe.config.default_max_tokens);
    if max_tokens == 0 || max_tokens > limit {
        return invalid(
            &fe,
            Some(&job.model),
            job.endpoint,
            job.stream,
            format!("max_tokens must be between 1 and {limit}, got {max_tokens}"),
        )
        .await;
    }
    let Some(entry) = fe.registry.get(&job.model).await else {
        return refuse(
            &fe,
            (UNKNOWN_MODEL, job.endpoint, rtype),
            error_type::MODEL_NOT_FOUND,
            StatusCode::NOT_FOUND,
            format!("The model `{}` does not exist.", job.model),
        );
    };
    // Tokenizing is CPU work that grows with the prompt: off the async threads,
    // so one long prompt stalls neither other streams nor a scrape.
    let prompt = std::mem::take(&mut job.prompt);
    let (pre, model) = (fe.clone(), job.model.clone());
    let tokenized =
        tokio::task::spawn_blocking(move || pre.preprocessor.tokenize(&model, &prompt)).await;
    let token_ids = match tokenized {
        Ok(Ok(ids)) => ids,
        Ok(Err(e)) => {
            return invalid(
                &fe,
                Some(&job.model),
                job.endpoint,
                job.stream,
                e.to_string(),
            )
            .await
        }
        Err(e) => {
            tracing::error!(error = %e, "the tokenizer task failed");
            let message = "the prompt could not be tokenized".to_owned();
            return invalid(&fe, Some(&job.model), job.endpoint, job.stream, message).await;
        }
    };
    let prompt_tokens = token_ids.len();
    let id = format!(
        "{}-{:016x}",
        if job.endpoint == CHAT {
            "chatcmpl"
        } else {
            "cmpl"
        },
        fastrand::u64(..)
    );
    let request_meta = RequestMeta::new(&id, job.traceparent.take());
    let mut timer = fe.metrics.start(&job.model, job.endpoint, rtype, job.start);
    timer.set_exemplar(&request_meta);
    timer.input_tokens(prompt_tokens);
    let engine = match fe.client(&job.model, &entry).await {
        Ok(c) => {
            c.round_robin_with(
                EngineRequest {
                    token_ids,
                    max_tokens,
                    stop_conditions: StopConditions {
                        max_tokens,
                        stop: std::mem::take(&mut job.stop),
                    },
                    sampling_options: job.sampling.clone(),
                },
                &request_meta,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let engine = match engine {
        Ok(s) => s,
        Err(e @ (CallError::NoInstances { .. } | CallError::InstanceNotFound { .. })) => {
            timer.fail(error_type::NO_WORKER);
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                format!("no worker serves `{}`: {e}", job.model),
                None,
            );
        }
        Err(e @ CallError::RequestTooLarge { .. }) => {
            timer.fail(error_type::PAYLOAD_TOO_LARGE);
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                e.to_string(),
                None,
            );
        }
        Err(e) => return engine_failed(&mut timer, &e),
    };
    let meta = ResponseMeta {
        id,
        created: now_secs(),
        model: job.model.clone(),
        chat: job.endpoint == CHAT,
        prompt_tokens,
    };
    let decoder = fe.preprocessor.decoder(&job.model);
    if job.stream {
        stream_response(meta, engine, decoder, timer, job.include_usage)
    } else {
        unary_response(meta, engine, decoder, timer).await
    }
}

fn stream_response(
    meta: ResponseMeta,
    engine: EngineStream,
    decoder: crate::preprocessor::Decoder,
    timer: RequestTimer,
    include_usage: bool,
) -> Response {
    let body = SseBody::new(meta, engine, decoder, timer, include_usage, failure_type);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

async fn unary_response(
    meta: ResponseMeta,
    mut engine: EngineStream,
    mut decoder: crate::preprocessor::Decoder,
    mut timer: RequestTimer,
) -> Response {
    let mut text = String::new();
    let mut finish = None;
    while let Some(item) = engine.next().await {
        match item {
            Ok(out) => {
                text.push_str(decoder.push(&out.token_ids));
                finish = out.finish_reason.clone().or(finish);
                timer.tokens_sent(out.token_ids.len());
            }
            Err(e) => return engine_failed(&mut timer, &e),
        }
    }
    let finish = finish.unwrap_or_else(|| "stop".to_owned());
    let usage = meta.usage(timer.output_tokens());
    let body = if meta.chat {
        json!({
            "id": meta.id, "object": "chat.completion", "created": meta.created, "model": meta.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": usage,
        })
    } else {
        json!({
            "id": meta.id, "object": "text_completion", "created": meta.created, "model": meta.model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
            "usage": usage,
        })
    };
    timer.succeed();
    Json(body).into_response()
}

async fn models(State(fe): State<Arc<Frontend>>) -> Response {
    let created = now_secs();
    let data: Vec<Value> = fe
        .registry
        .names()
        .await
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "dynamo"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn metrics(State(fe): State<Arc<Frontend>>, headers: axum::http::HeaderMap) -> Response {
    let scope = fe.drt.metrics().clone();
    let gzip = metrics_http::request_accepts_gzip(&headers);
    let format = metrics_http::request_format(&headers);
    let render = move || {
        scope
            .render(format)
            .map(|text| metrics_http::Body::new(text, gzip))
    };
    match tokio::task::spawn_blocking(render).await {
        Ok(Ok(body)) => body.into_response(format.content_type()),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics rendering failed\n",
        )
            .into_response(),
    }
}

/// Prometheus HTTP service discovery: the published metrics address of every
/// live process, grouped by the kind of server (`dynamo_server` label).
async fn prometheus_discovery(State(fe): State<Arc<Frontend>>) -> Response {
    match fe.drt.scrape_targets().await {
        Ok(targets) => Json(ScrapeTarget::http_sd_groups(&targets)).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("listing scrape targets failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn health(State(fe): State<Arc<Frontend>>) -> Response {
    let report = fe.drt.health();
    let code = match report.status {
        dynamo_runtime::HealthStatus::Ready => StatusCode::OK,
        dynamo_runtime::HealthStatus::NotReady => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(report)).into_response()
}
