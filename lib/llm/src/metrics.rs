//! The frontend's LLM metrics (docs/frontend.md: the seven `dynamo_frontend_*`
//! metrics of the design proposal, with a `model` label), measured on the
//! real response stream, and the guard that records one request exactly once.
//!
//! Buckets follow what vLLM users already use (vLLM's time-to-first-token,
//! time-per-output-token and end-to-end latency buckets, and its 1-2-5
//! sequence-length buckets), extended down to the millisecond so that fast
//! engines and mocks resolve too.

use dynamo_runtime::prometheus::IntGauge;
use dynamo_runtime::prometheus_names::{frontend as names, FRONTEND_PREFIX};
use dynamo_runtime::LocalHistogram;
use dynamo_runtime::{Exemplar, Histogram, RequestMeta};
use dynamo_runtime::{HistogramVec, IntCounterVec, IntGaugeVec, MetricsError, MetricsScope};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
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

/// Inter-token latencies are gathered per request without atomics and added
/// to the shared histogram every this many tokens (and when the request
/// ends): the atomic work of one observation is shared by this many tokens.
pub const ITL_FLUSH_EVERY: u64 = 16;

/// The closed set of `error_type` values of `dynamo_frontend_request_errors_total`.
pub use dynamo_runtime::prometheus_names::frontend::error_type;
use dynamo_runtime::prometheus_names::frontend::status;

/// The frontend's metrics.
#[derive(Clone)]
pub struct FrontendMetrics {
    families: Arc<Families>,
    /// Off only for the benchmark that measures what the metrics cost.
    enabled: bool,
    /// Per-token timestamps: a TSC read is ~10 ns here, `Instant::now` ~25 ns.
    clock: quanta::Clock,
}

/// The seven families, and each model's children of the per-model ones, so
/// that starting a request costs one lookup instead of six.
struct Families {
    requests: IntCounterVec,
    errors: IntCounterVec,
    inflight: IntGaugeVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    itl: HistogramVec,
    isl: HistogramVec,
    osl: HistogramVec,
    models: RwLock<HashMap<String, Arc<ModelMetrics>>>,
}

/// One model's children of the families labelled by `model` alone.
struct ModelMetrics {
    model: String,
    inflight: IntGauge,
    duration: Histogram,
    ttft: Histogram,
    itl: Histogram,
    isl: Histogram,
    osl: Histogram,
}

impl Families {
    fn model(&self, model: &str) -> Arc<ModelMetrics> {
        let cached = self
            .models
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model)
            .cloned();
        if let Some(m) = cached {
            return m;
        }
        let labels = [model];
        let m = Arc::new(ModelMetrics {
            model: model.to_owned(),
            inflight: self.inflight.with_label_values(&labels),
            duration: self.duration.with_label_values(&labels),
            ttft: self.ttft.with_label_values(&labels),
            itl: self.itl.with_label_values(&labels),
            isl: self.isl.with_label_values(&labels),
            osl: self.osl.with_label_values(&labels),
        });
        self.models
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(model.to_owned())
            .or_insert(m)
            .clone()
    }
}

impl std::fmt::Debug for FrontendMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontendMetrics")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl FrontendMetrics {
    /// Registers the metrics at `scope` (the runtime level: no hierarchy labels).
    pub fn new(scope: &MetricsScope) -> Result<Self, MetricsError> {
        Self::with_recording(scope, true)
    }

    /// [`Self::new`], recording only when `enabled`. Hidden from the docs: it
    /// exists for the benchmark that measures what the metrics cost.
    #[doc(hidden)]
    pub fn with_recording(scope: &MetricsScope, enabled: bool) -> Result<Self, MetricsError> {
        let s = scope.with_prefix(FRONTEND_PREFIX)?;
        let m = [names::MODEL];
        let families = Families {
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
                &[names::MODEL, names::ENDPOINT, names::ERROR_TYPE],
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
            models: RwLock::default(),
        };
        Ok(Self {
            families: Arc::new(families),
            enabled,
            clock: quanta::Clock::new(),
        })
    }

    /// Counts a request refused before it reached an engine.
    pub fn rejected(&self, model: &str, endpoint: &str, request_type: &str, error_type: &str) {
        if !self.enabled {
            return;
        }
        let f = &self.families;
        f.requests
            .with_label_values(&[model, endpoint, request_type, status::ERROR])
            .inc();
        f.errors
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
            let model = self.families.model(model);
            model.inflight.inc();
            Handles {
                itl: model.itl.local(),
                model,
                families: Arc::clone(&self.families),
                endpoint,
                request_type,
            }
        });
        RequestTimer {
            handles,
            clock: self.clock.clone(),
            start,
            last_token: None,
            last_itl: 0.0,
            output_tokens: 0,
            error: Some(error_type::CLIENT_DISCONNECTED),
            exemplar: None,
        }
    }
}

struct Handles {
    /// This request's inter-token latencies not yet in the shared histogram.
    itl: LocalHistogram,
    model: Arc<ModelMetrics>,
    families: Arc<Families>,
    endpoint: &'static str,
    request_type: &'static str,
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
    /// The last inter-token latency observed (seconds): the ITL exemplar's value.
    last_itl: f64,
    output_tokens: u64,
    error: Option<&'static str>,
    /// The request's id and trace id, as the exemplar of its TTFT, ITL and
    /// duration observations.
    exemplar: Option<Exemplar>,
}

impl std::fmt::Debug for RequestTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTimer")
            .field("output_tokens", &self.output_tokens)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl RequestTimer {
    /// Records this request's id and trace id (see
    /// [`RequestMeta::exemplar`]) as the exemplar of its time to first token,
    /// its last inter-token latency and its duration.
    pub fn set_exemplar(&mut self, meta: &RequestMeta) {
        if self.handles.is_some() {
            self.exemplar = meta.exemplar();
        }
    }

    /// The prompt's length.
    pub fn input_tokens(&self, n: usize) {
        if let Some(h) = &self.handles {
            h.model.isl.observe(n as f64);
        }
    }

    /// `n` tokens were sent to the client now. The first token observes the
    /// time to first token; every later token one inter-token latency (a
    /// chunk of n tokens after the first chunk: n observations of Δ/n).
    /// Inter-token latencies reach `/metrics` every [`ITL_FLUSH_EVERY`]
    /// tokens and when the request ends.
    pub fn tokens_sent(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let now = self.clock.raw();
        self.output_tokens += n as u64;
        if let Some(h) = &self.handles {
            match self.last_token {
                None => h.model.ttft.observe_with_optional_exemplar(
                    self.start.elapsed().as_secs_f64(),
                    self.exemplar.as_ref(),
                ),
                Some(prev) => {
                    let each = self.clock.delta_as_nanos(prev, now) as f64 * 1e-9 / n as f64;
                    for _ in 0..n {
                        h.itl.observe(each);
                    }
                    self.last_itl = each;
                    if h.itl.get_sample_count() >= ITL_FLUSH_EVERY {
                        h.itl.flush();
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
        let m = &h.model;
        h.itl.flush();
        m.duration.observe_with_optional_exemplar(
            self.start.elapsed().as_secs_f64(),
            self.exemplar.as_ref(),
        );
        // One exemplar per request for its inter-token latencies (counted
        // through the local histogram): the last one.
        if let Some(e) = self.exemplar.as_ref().filter(|_| self.output_tokens > 1) {
            m.itl.record_exemplar(self.last_itl, e);
        }
        m.osl.observe(self.output_tokens as f64);
        let status = if self.error.is_some() {
            status::ERROR
        } else {
            status::SUCCESS
        };
        h.families
            .requests
            .with_label_values(&[&m.model, h.endpoint, h.request_type, status])
            .inc();
        if let Some(error_type) = self.error {
            h.families
                .errors
                .with_label_values(&[&m.model, h.endpoint, error_type])
                .inc();
        }
        // In flight goes down last: a scrape that sees the request gone also
        // sees its totals, its error and its histograms.
        m.inflight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn itl_count(metrics: &FrontendMetrics, model: &str) -> u64 {
        metrics
            .families
            .itl
            .with_label_values(&[model])
            .get_sample_count()
    }

    #[test]
    fn inter_token_latencies_reach_the_shared_histogram_in_batches_and_at_the_end() {
        let drt = dynamo_runtime::DistributedRuntime::from_config(Default::default()).unwrap();
        let metrics = FrontendMetrics::new(drt.metrics()).unwrap();
        let mut t = metrics.start("m", "chat_completions", "stream", Instant::now());
        t.tokens_sent(1); // the first token: time to first token, no ITL
        for _ in 0..ITL_FLUSH_EVERY - 1 {
            t.tokens_sent(1);
        }
        assert_eq!(itl_count(&metrics, "m"), 0, "held until a batch is full");
        t.tokens_sent(3); // a chunk of 3 tokens: 3 observations
        let first_batch = ITL_FLUSH_EVERY + 2;
        assert_eq!(itl_count(&metrics, "m"), first_batch);
        t.tokens_sent(1);
        assert_eq!(itl_count(&metrics, "m"), first_batch);
        t.succeed();
        drop(t);
        assert_eq!(
            itl_count(&metrics, "m"),
            first_batch + 1,
            "flushed at the end"
        );
        assert_eq!(t_count(&metrics, "m", "success"), 1);
    }

    #[test]
    fn a_dropped_timer_counts_a_disconnect_and_model_children_are_shared() {
        let drt = dynamo_runtime::DistributedRuntime::from_config(Default::default()).unwrap();
        let metrics = FrontendMetrics::new(drt.metrics()).unwrap();
        let a = metrics.start("m", "completions", "unary", Instant::now());
        let b = metrics.start("m", "completions", "unary", Instant::now());
        let inflight = metrics.families.inflight.with_label_values(&["m"]);
        assert_eq!(inflight.get(), 2);
        drop(a);
        drop(b);
        assert_eq!(inflight.get(), 0);
        assert_eq!(t_count(&metrics, "m", "error"), 2);
        let disconnects = metrics.families.errors.with_label_values(&[
            "m",
            "completions",
            error_type::CLIENT_DISCONNECTED,
        ]);
        assert_eq!(disconnects.get(), 2);
    }

    fn t_count(metrics: &FrontendMetrics, model: &str, status: &str) -> u64 {
        let endpoints = ["chat_completions", "completions"];
        let types = ["stream", "unary"];
        let mut n = 0;
        for e in endpoints {
            for t in types {
                n += metrics
                    .families
                    .requests
                    .with_label_values(&[model, e, t, status])
                    .get();
            }
        }
        n
    }
}
