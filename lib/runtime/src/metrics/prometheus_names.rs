//! Every metric name, label name and prefix the project emits, and the
//! functions that turn user input into valid Prometheus names.
//!
//! No other file spells a project metric name as a string literal: code that
//! emits a metric takes its name from here, and the documentation table is
//! checked against this module.
//!
//! ```
//! use dynamo_runtime::prometheus_names::{sanitize_metric_name, COMPONENT_PREFIX};
//! assert_eq!(sanitize_metric_name("requests-total"), "requests_total");
//! assert_eq!(COMPONENT_PREFIX, "dynamo_component_");
//! ```

/// Prefix of every metric created through the runtime hierarchy.
pub const COMPONENT_PREFIX: &str = "dynamo_component_";
/// Prefix of the HTTP frontend's LLM metrics.
pub const FRONTEND_PREFIX: &str = "dynamo_frontend_";
/// Prefix of the preprocessor's metrics.
pub const PREPROCESSOR_PREFIX: &str = "dynamo_preprocessor_";

/// The automatic hierarchy labels, one for each level above and at the object
/// a metric is created on.
pub mod labels {
    /// Namespace name, on metrics created at a namespace or below.
    pub const NAMESPACE: &str = "dynamo_namespace";
    /// Component name, on metrics created at a component or below.
    pub const COMPONENT: &str = "dynamo_component";
    /// Endpoint name, on metrics created at an endpoint.
    pub const ENDPOINT: &str = "dynamo_endpoint";
    /// The hierarchy labels, from the top level down.
    pub const HIERARCHY: [&str; 3] = [NAMESPACE, COMPONENT, ENDPOINT];

    /// Label of [`super::work_handler::ERRORS_TOTAL`]: one of [`super::work_handler::error_type`].
    pub const ERROR_TYPE: &str = "error_type";
    /// Label of [`super::callback::FAILURES_TOTAL`]: which kind of callback failed.
    pub const CALLBACK: &str = "callback";
    /// Label of [`super::callback::FAILURES_TOTAL`]: how it failed.
    pub const FAILURE: &str = "failure";
    /// Label of [`super::series_limit::REFUSED_TOTAL`]: the family that refused.
    pub const METRIC: &str = "metric";

    /// Label names Prometheus reserves for histogram and summary samples.
    pub const RESERVED: [&str; 2] = ["le", "quantile"];
}

/// The metrics every served endpoint records with no code from its author
/// (hierarchy labels of the endpoint).
pub mod work_handler {
    /// Requests received (counter).
    pub const REQUESTS_TOTAL: &str = "dynamo_component_requests_total";
    /// Bytes of serialized request payloads received (counter).
    pub const REQUEST_BYTES_TOTAL: &str = "dynamo_component_request_bytes_total";
    /// Bytes of serialized response items sent (counter).
    pub const RESPONSE_BYTES_TOTAL: &str = "dynamo_component_response_bytes_total";
    /// Requests that ended in an error, by `error_type` (counter).
    pub const ERRORS_TOTAL: &str = "dynamo_component_errors_total";
    /// Time from receiving a request to its last response (histogram).
    pub const REQUEST_DURATION_SECONDS: &str = "dynamo_component_request_duration_seconds";
    /// Requests being processed now (gauge).
    pub const CONCURRENT_REQUESTS: &str = "dynamo_component_concurrent_requests";

    /// Buckets of [`REQUEST_DURATION_SECONDS`]: 1 ms to 10 minutes, since a
    /// streamed LLM request can last minutes.
    pub const REQUEST_DURATION_BUCKETS: [f64; 18] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        120.0, 300.0, 600.0,
    ];

    /// The closed set of `error_type` values of [`ERRORS_TOTAL`].
    pub mod error_type {
        /// The request payload did not deserialize into the endpoint's request type.
        pub const INVALID_REQUEST: &str = "invalid_request";
        /// The handler returned an error, before or during its response stream.
        pub const HANDLER: &str = "handler";
        /// The handler panicked, before or during its response stream.
        pub const PANIC: &str = "panic";
        /// A response item could not be serialized.
        pub const RESPONSE_ENCODING: &str = "response_encoding";
        /// The caller cancelled (dropped the response stream) or went away before the end.
        pub const CANCELLED: &str = "cancelled";
        /// A response could not be handed to the transport.
        pub const TRANSPORT: &str = "transport";
        /// Every value, in the order above.
        pub const ALL: [&str; 6] = [
            INVALID_REQUEST,
            HANDLER,
            PANIC,
            RESPONSE_ENCODING,
            CANCELLED,
            TRANSPORT,
        ];
    }
}

/// The HTTP frontend's LLM metrics (no hierarchy labels; a `model` label).
pub mod frontend {
    /// Requests, by `model`, `endpoint`, `request_type` and `status` (counter).
    pub const REQUESTS_TOTAL: &str = "dynamo_frontend_requests_total";
    /// Requests being processed (gauge).
    pub const INFLIGHT_REQUESTS: &str = "dynamo_frontend_inflight_requests";
    /// From request arrival to the last byte of the response (histogram).
    pub const REQUEST_DURATION_SECONDS: &str = "dynamo_frontend_request_duration_seconds";
    /// From request arrival to the first token sent (histogram).
    pub const TIME_TO_FIRST_TOKEN_SECONDS: &str = "dynamo_frontend_time_to_first_token_seconds";
    /// Between consecutive output tokens (histogram; one observation per token after the first).
    pub const INTER_TOKEN_LATENCY_SECONDS: &str = "dynamo_frontend_inter_token_latency_seconds";
    /// Prompt length in tokens (histogram).
    pub const INPUT_SEQUENCE_TOKENS: &str = "dynamo_frontend_input_sequence_tokens";
    /// Generated length in tokens (histogram).
    pub const OUTPUT_SEQUENCE_TOKENS: &str = "dynamo_frontend_output_sequence_tokens";
    /// Requests that failed, by `model`, `endpoint` and `error_type` (counter).
    pub const REQUEST_ERRORS_TOTAL: &str = "dynamo_frontend_request_errors_total";

    /// Label: the model asked for.
    pub const MODEL: &str = "model";
    /// Label: `chat_completions` or `completions`.
    pub const ENDPOINT: &str = "endpoint";
    /// Label: `stream` or `unary`.
    pub const REQUEST_TYPE: &str = "request_type";
    /// Label: `success` or `error`.
    pub const STATUS: &str = "status";
    /// Label of [`REQUEST_ERRORS_TOTAL`]: one of [`error_type`].
    pub const ERROR_TYPE: &str = "error_type";

    /// The `model` value of a request that names no model this deployment
    /// serves (a body too large or not JSON, no `model` field, or a model
    /// that is not served): a name from a request becomes a label value only
    /// when it names a served model, so what clients send cannot grow the
    /// number of series.
    pub const UNKNOWN_MODEL: &str = "unknown";

    /// Values of the [`ENDPOINT`] label.
    pub mod endpoint {
        /// `POST /v1/chat/completions`.
        pub const CHAT_COMPLETIONS: &str = "chat_completions";
        /// `POST /v1/completions`.
        pub const COMPLETIONS: &str = "completions";
    }

    /// Values of the [`REQUEST_TYPE`] label.
    pub mod request_type {
        /// A streamed (server-sent events) response.
        pub const STREAM: &str = "stream";
        /// One JSON response.
        pub const UNARY: &str = "unary";
    }

    /// Values of the [`STATUS`] label.
    pub mod status {
        /// The response ended as it should.
        pub const SUCCESS: &str = "success";
        /// The request failed (see [`super::REQUEST_ERRORS_TOTAL`]).
        pub const ERROR: &str = "error";
    }

    /// The closed set of [`ERROR_TYPE`] values of [`REQUEST_ERRORS_TOTAL`].
    pub mod error_type {
        /// The body was not valid JSON or missed fields, or a value was out of range.
        pub const INVALID_REQUEST: &str = "invalid_request";
        /// The body was larger than the frontend accepts.
        pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
        /// No worker serves the model asked for.
        pub const MODEL_NOT_FOUND: &str = "model_not_found";
        /// The model is registered but no instance of its endpoint serves.
        pub const NO_WORKER: &str = "no_worker";
        /// The engine failed the request.
        pub const ENGINE: &str = "engine";
        /// The client disconnected before the response ended.
        pub const CLIENT_DISCONNECTED: &str = "client_disconnected";
        /// The worker serving the request died or became unreachable: it sent
        /// nothing, not even its heartbeat, for the stream liveness deadline
        /// (`DYN_STREAM_LIVENESS_MS`), or its stream was cut.
        pub const WORKER_LOST: &str = "worker_lost";
    }
}

/// The preprocessor's metrics (a `model` label).
pub mod preprocessor {
    /// Prompts tokenized (counter).
    pub const REQUESTS_TOTAL: &str = "dynamo_preprocessor_requests_total";
    /// Prompt tokens produced by the tokenizer (counter).
    pub const INPUT_TOKENS_TOTAL: &str = "dynamo_preprocessor_input_tokens_total";
    /// Output tokens detokenized (counter).
    pub const OUTPUT_TOKENS_TOTAL: &str = "dynamo_preprocessor_output_tokens_total";
    /// Time spent applying the chat template and tokenizing (histogram).
    pub const TOKENIZE_SECONDS: &str = "dynamo_preprocessor_tokenize_seconds";
}

/// An engine worker's KV-cache and scheduler statistics, as the original
/// runtime names them (gauges on the engine's endpoint, so they carry its
/// hierarchy labels). Set through `dynamo_llm::engine_metrics::EngineMetrics`
/// from Rust, `dynamo.llm.EngineMetrics` from Python.
pub mod kvstats {
    /// KV-cache blocks held by running requests.
    pub const ACTIVE_BLOCKS: &str = "dynamo_component_kvstats_active_blocks";
    /// KV-cache blocks the engine has in all.
    pub const TOTAL_BLOCKS: &str = "dynamo_component_kvstats_total_blocks";
    /// Share of the KV cache in use, 0 to 1 (active / total blocks).
    pub const GPU_CACHE_USAGE_PERCENT: &str = "dynamo_component_kvstats_gpu_cache_usage_percent";
    /// Share of prompt blocks found in the prefix cache, 0 to 1.
    pub const GPU_PREFIX_CACHE_HIT_RATE: &str =
        "dynamo_component_kvstats_gpu_prefix_cache_hit_rate";
    /// Requests waiting for the engine to admit them (vLLM's `num_requests_waiting`).
    pub const NUM_REQUESTS_WAITING: &str = "dynamo_component_num_requests_waiting";
}

/// The labels of the exemplars the runtime and the frontend record
/// (OpenMetrics only).
pub mod exemplar {
    /// The request's id (the frontend's response id, e.g. `chatcmpl-...`).
    pub const REQUEST_ID: &str = "request_id";
    /// The W3C trace id, when the request came with a `traceparent` header.
    pub const TRACE_ID: &str = "trace_id";
}

/// Metrics of the runtime itself (no hierarchy labels).
pub mod runtime {
    /// Seconds since the `DistributedRuntime` was created (gauge).
    pub const SYSTEM_UPTIME_SECONDS: &str = "dynamo_component_system_uptime_seconds";
}

/// The metric that counts failed scrape-time callbacks.
pub mod callback {
    /// Scrape-time callbacks that failed, by `callback` (`update` or `expfmt`) and
    /// `failure` (`error`, `panic`, `malformed` or `conflict`) (counter).
    pub const FAILURES_TOTAL: &str = "dynamo_component_metrics_callback_failures_total";

    /// `callback` value of a callback given to `register_callback`.
    pub const KIND_UPDATE: &str = "update";
    /// `callback` value of a callback given to `register_prometheus_expfmt_callback`.
    pub const KIND_EXPFMT: &str = "expfmt";
    /// `failure` value: the callback returned an error.
    pub const FAILURE_ERROR: &str = "error";
    /// `failure` value: the callback panicked.
    pub const FAILURE_PANIC: &str = "panic";
    /// `failure` value: the text callback returned text that does not parse.
    pub const FAILURE_MALFORMED: &str = "malformed";
    /// `failure` value: the text callback returned a family that conflicts with
    /// one already in the scrape (another type), so that family was dropped.
    pub const FAILURE_CONFLICT: &str = "conflict";
}

/// The series limit of every labelled family: past it, new label sets go to
/// one overflow series, and the refusal is counted.
pub mod series_limit {
    /// Label sets refused by a full labelled family, by `metric` (the
    /// family's name): each update that asked for a new series past the
    /// limit counts once (counter).
    pub const REFUSED_TOTAL: &str = "dynamo_component_metrics_series_refused_total";
    /// Series a labelled family holds before it refuses new label sets,
    /// unless set otherwise (`DYN_METRICS_SERIES_LIMIT`, or per family).
    pub const DEFAULT: usize = 1000;
    /// The value of every variable label of a family's overflow series.
    pub const OVERFLOW_VALUE: &str = "__overflow__";
}

/// True for a valid Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// True for a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every character outside `[a-zA-Z0-9_:]` with `_`, and puts `_` in
/// front of a leading digit. The result may still be empty or all underscores;
/// [`build_component_metric_name`] rejects those.
///
/// ```
/// use dynamo_runtime::prometheus_names::sanitize_metric_name;
/// assert_eq!(sanitize_metric_name("9lives.count"), "_9lives_count");
/// ```
pub fn sanitize_metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// Like [`sanitize_metric_name`] but for label names, which may not hold `:`.
///
/// ```
/// use dynamo_runtime::prometheus_names::sanitize_label_name;
/// assert_eq!(sanitize_label_name("gpu:id"), "gpu_id");
/// ```
pub fn sanitize_label_name(name: &str) -> String {
    sanitize(name, false)
}

fn sanitize(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':') {
            c
        } else {
            '_'
        }
    }));
    out
}

/// The name a metric created through the hierarchy is exposed under:
/// `dynamo_component_<sanitized name>`, never prefixed twice. Returns `None`
/// when nothing but underscores is left after sanitizing.
///
/// ```
/// use dynamo_runtime::prometheus_names::build_component_metric_name;
/// assert_eq!(build_component_metric_name("requests").as_deref(), Some("dynamo_component_requests"));
/// assert_eq!(
///     build_component_metric_name("dynamo_component_requests").as_deref(),
///     Some("dynamo_component_requests")
/// );
/// assert_eq!(build_component_metric_name("--"), None);
/// ```
pub fn build_component_metric_name(name: &str) -> Option<String> {
    build_metric_name(COMPONENT_PREFIX, name)
}

/// Like [`build_component_metric_name`] with another prefix
/// ([`FRONTEND_PREFIX`], [`PREPROCESSOR_PREFIX`]).
///
/// ```
/// use dynamo_runtime::prometheus_names::{build_metric_name, FRONTEND_PREFIX};
/// assert_eq!(build_metric_name(FRONTEND_PREFIX, "inflight_requests").as_deref(), Some("dynamo_frontend_inflight_requests"));
/// ```
pub fn build_metric_name(prefix: &str, name: &str) -> Option<String> {
    let sanitized = sanitize_metric_name(name);
    let base = sanitized.strip_prefix(prefix).unwrap_or(&sanitized);
    if base.chars().all(|c| c == '_') {
        return None;
    }
    Some(format!("{prefix}{base}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_replaces_invalid_characters_and_guards_leading_digit() {
        assert_eq!(sanitize_metric_name("a-b.c d"), "a_b_c_d");
        assert_eq!(sanitize_metric_name("ns:rate"), "ns:rate");
        assert_eq!(sanitize_metric_name("1st"), "_1st");
        assert_eq!(sanitize_metric_name("é"), "_");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
        assert_eq!(sanitize_label_name("0x"), "_0x");
    }

    #[test]
    fn component_name_is_prefixed_once_and_rejects_empty() {
        assert_eq!(
            build_component_metric_name("latency seconds").unwrap(),
            "dynamo_component_latency_seconds"
        );
        assert_eq!(
            build_component_metric_name("dynamo_component_x").unwrap(),
            "dynamo_component_x"
        );
        assert_eq!(build_component_metric_name(""), None);
        assert_eq!(build_component_metric_name("___"), None);
        assert_eq!(build_component_metric_name("!!"), None);
        assert_eq!(build_component_metric_name("dynamo_component_"), None);
        assert_eq!(
            build_component_metric_name("7").unwrap(),
            "dynamo_component__7"
        );
    }

    #[test]
    fn name_validity() {
        assert!(is_valid_metric_name("a:b_c9"));
        assert!(!is_valid_metric_name("9a"));
        assert!(!is_valid_metric_name(""));
        assert!(is_valid_label_name("_x9"));
        assert!(!is_valid_label_name("a:b"));
        assert!(!is_valid_label_name("a-b"));
    }

    #[test]
    fn project_names_are_valid_and_prefixed() {
        for name in [runtime::SYSTEM_UPTIME_SECONDS, callback::FAILURES_TOTAL] {
            assert!(is_valid_metric_name(name), "{name}");
            assert!(name.starts_with(COMPONENT_PREFIX), "{name}");
        }
        for label in labels::HIERARCHY {
            assert!(is_valid_label_name(label));
        }
    }
}
