//! The automatic per-endpoint metrics (docs/request-plane.md), and
//! the guard that records one request exactly once however it ends.

use crate::metrics::prometheus_names::{labels, work_handler as names};
use crate::metrics::Histogram;
use crate::metrics::{IntCounterVec, MetricsScope};
use crate::{MetricsError, RequestMeta};
use prometheus::{IntCounter, IntGauge};
use std::sync::Arc;
use std::time::Instant;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Failed(&'static str),
}

/// The six metrics of one served endpoint.
pub(crate) struct EndpointMetrics {
    requests: IntCounter,
    request_bytes: IntCounter,
    response_bytes: IntCounter,
    errors: IntCounterVec,
    duration: Histogram,
    concurrent: IntGauge,
}

impl EndpointMetrics {
    /// Creates (or gets) the metrics at the endpoint's scope.
    pub(crate) fn new(scope: &MetricsScope) -> Result<Arc<Self>, MetricsError> {
        // Marked automatic: a user metric of the same series shares it (with a warning).
        let scope = scope.automatic();
        let errors = scope.create_intcountervec(
            names::ERRORS_TOTAL,
            "Requests to the component endpoint that ended in an error, by error type",
            &[labels::ERROR_TYPE],
            &[],
        )?;
        // Every error type exists from the start, so rate() works from the first scrape.
        for error_type in names::error_type::ALL {
            errors.with_label_values(&[error_type]);
        }
        Ok(Arc::new(Self {
            requests: scope.create_intcounter(
                names::REQUESTS_TOTAL,
                "Total number of requests processed by component endpoint",
                &[],
            )?,
            request_bytes: scope.create_intcounter(
                names::REQUEST_BYTES_TOTAL,
                "Total bytes of serialized requests received by component endpoint",
                &[],
            )?,
            response_bytes: scope.create_intcounter(
                names::RESPONSE_BYTES_TOTAL,
                "Total bytes of serialized responses sent by component endpoint",
                &[],
            )?,
            errors,
            duration: scope.create_histogram(
                names::REQUEST_DURATION_SECONDS,
                "Time spent processing requests by component endpoint",
                &[],
                Some(names::REQUEST_DURATION_BUCKETS.to_vec()),
            )?,
            concurrent: scope.create_intgauge(
                names::CONCURRENT_REQUESTS,
                "Number of requests currently processed by component endpoint",
                &[],
            )?,
        }))
    }

    /// Counts a request that arrived with `request_bytes` of payload.
    pub(crate) fn start(&self, request_bytes: usize, meta: Arc<RequestMeta>) -> RequestGuard<'_> {
        self.requests.inc();
        self.request_bytes.inc_by(request_bytes as u64);
        self.concurrent.inc();
        RequestGuard {
            metrics: self,
            start: Instant::now(),
            outcome: None,
            meta,
        }
    }
}

/// Records the end of one request when dropped: the duration once, the
/// concurrency back down, and the error type if it failed. A request whose
/// guard is dropped without an outcome (its task was dropped) counts as cancelled.
pub(crate) struct RequestGuard<'a> {
    /// Borrowed from the request's driver (no reference count per request).
    metrics: &'a EndpointMetrics,
    start: Instant,
    outcome: Option<Outcome>,
    /// The request's id and trace context: the duration's exemplar.
    meta: Arc<RequestMeta>,
}

impl RequestGuard<'_> {
    /// Counts bytes of one serialized response item.
    pub(crate) fn response_bytes(&self, n: usize) {
        self.metrics.response_bytes.inc_by(n as u64);
    }

    /// Sets how the request ended; the first outcome set wins.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        self.outcome.get_or_insert(outcome);
    }
}

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        let m = &self.metrics;
        // Concurrency goes down last: a scrape that sees the request gone
        // also sees its error and its duration.
        let outcome = self
            .outcome
            .unwrap_or(Outcome::Failed(names::error_type::CANCELLED));
        if let Outcome::Failed(error_type) = outcome {
            m.errors.with_label_values(&[error_type]).inc();
        }
        m.duration.observe_with_optional_exemplar(
            self.start.elapsed().as_secs_f64(),
            self.meta.shared_exemplar().as_ref(),
        );
        m.concurrent.dec();
    }
}
