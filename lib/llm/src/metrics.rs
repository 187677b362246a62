//! The frontend's LLM metrics (DECISIONS.md: the seven `dynamo_frontend_*`
//! metrics of the design proposal, with a `model` label), measured on the
//! real response stream, and the guard that records one request exactly once.
//!
//! Buckets follow what vLLM users already use (vLLM's time-to-first-token,
//! time-per-output-token and end-to-end latency buckets, and its 1-2-5
//! sequence-length buckets), extended down to the millisecond so that fast
//! engines and mocks resolve too.

use dynamo_runtime::prometheus::{Histogram, IntCounter, IntGauge};
use dynamo_runtime::prometheus_names::{frontend as names, FRONTEND_PREFIX};
use dynamo_runtime::{HistogramVec, IntCounterVec, IntGaugeVec, MetricsError, MetricsScope};
use std::time::Instant;

/// Time to first token: 1 ms to 2560 s.
pub const TTFT_BUCKETS: [f64; 22] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// Inter-token latency: 1 ms to 80 s.
pub const ITL_BUCKETS: [f64; 22] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 80.0,
];
/// Request duration: 10 ms to 7680 s.
pub const DURATION_BUCKETS: [f64; 24] = [
    0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
    60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
];
/// Sequence lengths in tokens: 1 to 200,000 (1-2-5).
pub const SEQUENCE_BUCKETS: [f64; 17] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
    50000.0, 100000.0, 200000.0,
];

/// The closed set of `error_type` values of `dynamo_frontend_request_errors_total`.
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
}

/// The frontend's metrics.
#[derive(Clone)]
pub struct FrontendMetrics {
    requests: IntCounterVec,
    errors: IntCounterVec,
    inflight: IntGaugeVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    itl: HistogramVec,
    isl: HistogramVec,
    osl: HistogramVec,
    /// Off only for the benchmark that measures what the metrics cost.
    enabled: bool,
    /// Per-token timestamps: a TSC read is ~10 ns here, `Instant::now` ~25 ns.
    clock: quanta::Clock,
}

impl FrontendMetrics {
    /// Registers the metrics at `scope` (the runtime level: no hierarchy labels).
    pub fn new(scope: &MetricsScope, enabled: bool) -> Result<Self, MetricsError> {
        let s = scope.with_prefix(FRONTEND_PREFIX)?;
        let m = [names::MODEL];
        Ok(Self {
            requests: s.create_intcountervec(
                names::REQUESTS_TOTAL,
                "Total LLM requests",
                &[
                    names::MODEL,
                    names::ENDPOINT,
                    names::REQUEST_TYPE,
                    names::STATUS,
                ],
                &[],
            )?,
            errors: s.create_intcountervec(
                names::REQUEST_ERRORS_TOTAL,
                "LLM requests that failed, by error type",
                &[names::MODEL, names::ENDPOINT, "error_type"],
                &[],
            )?,
            inflight: s.create_intgaugevec(
                names::INFLIGHT_REQUESTS,
                "Inflight requests",
                &m,
                &[],
            )?,
            duration: s.create_histogramvec(
                names::REQUEST_DURATION_SECONDS,
                "LLM request duration",
                &m,
                &[],
                Some(DURATION_BUCKETS.to_vec()),
            )?,
            ttft: s.create_histogramvec(
                names::TIME_TO_FIRST_TOKEN_SECONDS,
                "Time to first token",
                &m,
                &[],
                Some(TTFT_BUCKETS.to_vec()),
            )?,
            itl: s.create_histogramvec(
                names::INTER_TOKEN_LATENCY_SECONDS,
                "Inter-token latency",
                &m,
                &[],
                Some(ITL_BUCKETS.to_vec()),
            )?,
            isl: s.create_histogramvec(
                names::INPUT_SEQUENCE_TOKENS,
                "Input sequence length",
                &m,
                &[],
                Some(SEQUENCE_BUCKETS.to_vec()),
            )?,
            osl: s.create_histogramvec(
                names::OUTPUT_SEQUENCE_TOKENS,
                "Output sequence length",
                &m,
                &[],
                Some(SEQUENCE_BUCKETS.to_vec()),
            )?,
            enabled,
            clock: quanta::Clock::new(),
        })
    }

    /// Counts a request refused before it reached an engine.
    pub fn rejected(&self, model: &str, endpoint: &str, request_type: &str, error_type: &str) {
        if !self.enabled {
            return;
        }
        self.requests
            .with_label_values(&[model, endpoint, request_type, "error"])
            .inc();
        self.errors
            .with_label_values(&[model, endpoint, error_type])
            .inc();
    }

    /// Starts timing an accepted request (from its arrival at `start`).
    pub fn start(
        &self,
        model: &str,
        endpoint: &'static str,
        request_type: &'static str,
        start: Instant,
    ) -> RequestTimer {
        let handles = self.enabled.then(|| {
            let inflight = self.inflight.with_label_values(&[model]);
            inflight.inc();
            Handles {
                inflight,
                ttft: self.ttft.with_label_values(&[model]),
                itl: self.itl.with_label_values(&[model]),
                osl: self.osl.with_label_values(&[model]),
                isl: self.isl.with_label_values(&[model]),
                duration: self.duration.with_label_values(&[model]),
                success: self.requests.with_label_values(&[
                    model,
                    endpoint,
                    request_type,
                    "success",
                ]),
                failed: self
                    .requests
                    .with_label_values(&[model, endpoint, request_type, "error"]),
                errors: self.errors.clone(),
                model: model.to_owned(),
                endpoint,
            }
        });
        RequestTimer {
            handles,
            clock: self.clock.clone(),
            start,
            last_token: None,
            output_tokens: 0,
            error: Some(error_type::CLIENT_DISCONNECTED),
        }
    }
}

struct Handles {
    inflight: IntGauge,
    ttft: Histogram,
    itl: Histogram,
    osl: Histogram,
    isl: Histogram,
    duration: Histogram,
    success: IntCounter,
    failed: IntCounter,
    errors: IntCounterVec,
    model: String,
    endpoint: &'static str,
}

/// One accepted request's measurements. Dropped without [`RequestTimer::succeed`]
/// or [`RequestTimer::fail`] (the client went away), it counts as
/// `client_disconnected`. Inflight goes back down on drop in every case.
pub struct RequestTimer {
    handles: Option<Handles>,
    clock: quanta::Clock,
    start: Instant,
    /// Raw clock reading at the last token sent.
    last_token: Option<u64>,
    output_tokens: u64,
    error: Option<&'static str>,
}

impl RequestTimer {
    /// The prompt's length.
    pub fn input_tokens(&self, n: usize) {
        if let Some(h) = &self.handles {
            h.isl.observe(n as f64);
        }
    }

    /// `n` tokens were sent to the client now. The first token observes the
    /// time to first token; every later token one inter-token latency (a
    /// chunk of n tokens after the first chunk: n observations of Δ/n).
    pub fn tokens_sent(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let now = self.clock.raw();
        self.output_tokens += n as u64;
        if let Some(h) = &self.handles {
            match self.last_token {
                None => h.ttft.observe(self.start.elapsed().as_secs_f64()),
                Some(prev) => {
                    let each = self.clock.delta_as_nanos(prev, now) as f64 * 1e-9 / n as f64;
                    for _ in 0..n {
                        h.itl.observe(each);
                    }
                }
            }
        }
        self.last_token = Some(now);
    }

    /// Tokens sent so far.
    pub fn output_tokens(&self) -> u64 {
        self.output_tokens
    }

    /// The response ended normally.
    pub fn succeed(&mut self) {
        self.error = None;
    }

    /// The response ended with an error of this type.
    pub fn fail(&mut self, error_type: &'static str) {
        self.error = Some(error_type);
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        let Some(h) = &self.handles else { return };
        h.inflight.dec();
        h.duration.observe(self.start.elapsed().as_secs_f64());
        h.osl.observe(self.output_tokens as f64);
        match self.error {
            None => h.success.inc(),
            Some(error_type) => {
                h.failed.inc();
                h.errors
                    .with_label_values(&[&h.model, h.endpoint, error_type])
                    .inc();
            }
        }
    }
}
