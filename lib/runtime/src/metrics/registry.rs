//! The metrics registry of one runtime: the families, the callbacks, and the
//! scrape that renders a subtree of the hierarchy.

use super::callbacks::{self, Callback, FailureCounter};
use super::encoder::{
    self, openmetrics::OpenMetricsEncoder, protobuf::ProtobufEncoder, text::TextEncoder, Encoder,
    Written,
};
use super::expfmt::ExternalFamilies;
use super::format::ExpositionFormat;
use super::kind::MetricKind;
use super::prometheus_names::{
    callback as cb_names, labels, runtime as rt_names, series_limit as limit_names,
};
use super::scope::ScopePath;
use super::spec::{MetricSpec, OnRefused};
use super::store::{Origin, Store};
use super::vec::IntCounterVec;
use crate::MetricsError;
use parking_lot::RwLock;
use prometheus::Gauge;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The registry shared by every object of one runtime.
pub(crate) struct Registry {
    store: Store,
    callbacks: RwLock<Vec<(ScopePath, Callback)>>,
    failures: FailureCounter,
    uptime: Gauge,
    /// [`limit_names::REFUSED_TOTAL`].
    refused: IntCounterVec,
    series_limit: usize,
    start: Instant,
    /// Size of the last scrape, to size the next one's buffer.
    last_len: AtomicUsize,
}

impl Registry {
    /// A registry whose labelled families hold `series_limit` series each
    /// (unless set otherwise per family).
    pub(crate) fn new(start: Instant, series_limit: usize) -> Result<Self, MetricsError> {
        let store = Store::default();
        let root = ScopePath::root();
        let uptime = store.get_or_create::<Gauge>(
            &root,
            MetricSpec {
                name: rt_names::SYSTEM_UPTIME_SECONDS.to_owned(),
                help: "Seconds since the DistributedRuntime was created".to_owned(),
                ..MetricSpec::default()
            },
            built_in(),
        )?;
        // One series per labelled family that ever refused: bounded by the
        // families the code creates, so this family itself has no limit.
        let refused = store.get_or_create::<IntCounterVec>(
            &root,
            MetricSpec {
                name: limit_names::REFUSED_TOTAL.to_owned(),
                help: "Label sets refused by a labelled family that held its series limit, \
                       by family (each refused update counts once)"
                    .to_owned(),
                var_labels: vec![labels::METRIC.to_owned()],
                ..MetricSpec::default()
            },
            built_in(),
        )?;
        let failures = FailureCounter(
            store.get_or_create::<IntCounterVec>(
                &root,
                MetricSpec {
                    name: cb_names::FAILURES_TOTAL.to_owned(),
                    help: "Scrape-time metrics callbacks that failed, by callback kind and failure"
                        .to_owned(),
                    var_labels: vec![labels::CALLBACK.to_owned(), labels::FAILURE.to_owned()],
                    ..MetricSpec::default()
                },
                built_in(),
            )?,
        );
        failures.touch_all();
        Ok(Self {
            store,
            callbacks: RwLock::new(Vec::new()),
            failures,
            uptime,
            refused,
            series_limit,
            start,
            last_len: AtomicUsize::new(4096),
        })
    }

    /// The series limit of a labelled family created now.
    pub(crate) fn series_limit(&self) -> usize {
        self.series_limit
    }

    /// What a full family calls to count a refused label set.
    pub(crate) fn on_refused(&self) -> OnRefused {
        let refused = self.refused.clone();
        OnRefused(Arc::new(move |family: &str| {
            refused.with_label_values(&[family]).inc();
        }))
    }

    pub(crate) fn get_or_create<M: MetricKind>(
        &self,
        scope: &ScopePath,
        spec: MetricSpec,
        origin: Origin,
    ) -> Result<M, MetricsError> {
        self.store.get_or_create(scope, spec, origin)
    }

    pub(crate) fn add_callback(&self, scope: ScopePath, callback: Callback) {
        self.callbacks.write().push((scope, callback));
    }

    /// Renders everything at `filter` and below in text format 0.0.4, after
    /// running the callbacks registered there.
    pub(crate) fn scrape(&self, filter: &ScopePath) -> String {
        let capacity = self.last_len.load(Ordering::Relaxed) + 1024;
        self.scrape_with(filter, TextEncoder::with_capacity(capacity))
    }

    /// Renders everything at `filter` and below in `format`, after running
    /// the callbacks registered there.
    pub(crate) fn scrape_as(&self, filter: &ScopePath, format: ExpositionFormat) -> Vec<u8> {
        let capacity = self.last_len.load(Ordering::Relaxed) + 1024;
        match format {
            ExpositionFormat::Text => self
                .scrape_with(filter, TextEncoder::with_capacity(capacity))
                .into_bytes(),
            ExpositionFormat::OpenMetrics => self
                .scrape_with(filter, OpenMetricsEncoder::with_capacity(capacity))
                .into_bytes(),
            ExpositionFormat::Protobuf => {
                self.scrape_with(filter, ProtobufEncoder::with_capacity(capacity))
            }
        }
    }

    /// Runs the callbacks at `filter` and below and encodes with `enc`.
    fn scrape_with<E: Encoder>(&self, filter: &ScopePath, enc: E) -> E::Output
    where
        E::Output: AsRef<[u8]>,
    {
        self.uptime.set(self.start.elapsed().as_secs_f64());
        let callbacks: Vec<(ScopePath, Callback)> = self
            .callbacks
            .read()
            .iter()
            .filter(|(scope, _)| filter.contains(scope))
            .cloned()
            .collect();
        let external = callbacks::run(&callbacks, &self.failures);
        let (out, written) = self.encode(enc, filter, external);
        let len = out.as_ref().len();
        tracing::trace!(
            scope = %filter,
            format = std::any::type_name::<E>(),
            families = written.families,
            series = written.series,
            bytes = len,
            "scrape encoded"
        );
        self.last_len.store(len, Ordering::Relaxed);
        out
    }

    /// Encodes with `enc`; returns the exposition and what it holds.
    fn encode<E: Encoder>(
        &self,
        mut enc: E,
        filter: &ScopePath,
        external: ExternalFamilies,
    ) -> (E::Output, Written) {
        let written = encoder::encode(&mut enc, &self.store, filter, external, |family| {
            tracing::warn!(family = %family, "text callback family dropped: its type differs from the registered family");
            self.failures
                .count(cb_names::KIND_EXPFMT, cb_names::FAILURE_CONFLICT);
        });
        (enc.finish(), written)
    }
}

fn built_in() -> Origin {
    Origin {
        place: "the runtime (built in)".to_owned(),
        automatic: false,
    }
}
