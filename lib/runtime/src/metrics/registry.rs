//! The metrics registry of one runtime: the families, the callbacks, and the
//! scrape that renders a subtree of the hierarchy.

use super::callbacks::{self, Callback, FailureCounter};
use super::expfmt::{ExternalFamilies, ParsedFamily};
use super::kind::{MetricKind, MetricSpec};
use super::prometheus_names::{callback as cb_names, labels, runtime as rt_names};
use super::render;
use super::scope::ScopePath;
use super::store::Store;
use super::vec::IntCounterVec;
use crate::MetricsError;
use parking_lot::RwLock;
use prometheus::Gauge;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The registry shared by every object of one runtime.
pub(crate) struct Registry {
    store: Store,
    callbacks: RwLock<Vec<(ScopePath, Callback)>>,
    failures: FailureCounter,
    uptime: Gauge,
    start: Instant,
    /// Size of the last scrape, to size the next one's buffer.
    last_len: AtomicUsize,
}

impl Registry {
    pub(crate) fn new(start: Instant) -> Result<Self, MetricsError> {
        let store = Store::default();
        let root = ScopePath::root();
        let uptime = store.get_or_create::<Gauge>(
            &root,
            MetricSpec {
                name: rt_names::SYSTEM_UPTIME_SECONDS.to_owned(),
                help: "Seconds since the DistributedRuntime was created".to_owned(),
                const_labels: Vec::new(),
                var_labels: Vec::new(),
                buckets: Vec::new(),
            },
            "the runtime (built in)".to_owned(),
        )?;
        let failures = FailureCounter(
            store.get_or_create::<IntCounterVec>(
                &root,
                MetricSpec {
                    name: cb_names::FAILURES_TOTAL.to_owned(),
                    help: "Scrape-time metrics callbacks that failed, by callback kind and failure"
                        .to_owned(),
                    const_labels: Vec::new(),
                    var_labels: vec![labels::CALLBACK.to_owned(), labels::FAILURE.to_owned()],
                    buckets: Vec::new(),
                },
                "the runtime (built in)".to_owned(),
            )?,
        );
        failures.touch_all();
        Ok(Self {
            store,
            callbacks: RwLock::new(Vec::new()),
            failures,
            uptime,
            start,
            last_len: AtomicUsize::new(4096),
        })
    }

    pub(crate) fn get_or_create<M: MetricKind>(
        &self,
        scope: &ScopePath,
        spec: MetricSpec,
        origin: String,
    ) -> Result<M, MetricsError> {
        self.store.get_or_create(scope, spec, origin)
    }

    pub(crate) fn add_callback(&self, scope: ScopePath, callback: Callback) {
        self.callbacks.write().push((scope, callback));
    }

    /// Renders everything at `filter` and below, after running the callbacks
    /// registered there.
    pub(crate) fn scrape(&self, filter: &ScopePath) -> String {
        self.uptime.set(self.start.elapsed().as_secs_f64());
        let callbacks: Vec<(ScopePath, Callback)> = self
            .callbacks
            .read()
            .iter()
            .filter(|(scope, _)| filter.contains(scope))
            .cloned()
            .collect();
        let external = callbacks::run(&callbacks, &self.failures);
        let mut out = String::with_capacity(self.last_len.load(Ordering::Relaxed) + 1024);
        self.render(&mut out, filter, external);
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }

    /// Writes our families and the text callbacks' ones, merged in name order.
    fn render(&self, out: &mut String, filter: &ScopePath, external: ExternalFamilies) {
        let families = self.store.read();
        let mut external = external.families.into_iter().peekable();
        for (name, family) in families.iter() {
            while let Some((ext_name, ext)) = external.next_if(|(n, _)| n < name) {
                write_external(out, &ext_name, &ext);
            }
            let start = out.len();
            let wrote = render::write_family(out, name, family, filter);
            if let Some((_, ext)) = external.next_if(|(n, _)| n == name) {
                if !wrote {
                    write_external(out, name, &ext);
                } else if ext.type_name == family.prom_type.as_str() {
                    let ours: HashSet<&str> = out[start..]
                        .lines()
                        .filter(|l| !l.starts_with('#'))
                        .filter_map(|l| l.rfind(' ').map(|i| &l[..=i]))
                        .collect();
                    let mut extra = String::new();
                    let dropped = ext.write_samples(&mut extra, &ours);
                    if dropped > 0 {
                        tracing::debug!(family = %name, dropped, "text callback repeated series the registry has; kept the registry's");
                    }
                    out.push_str(&extra);
                } else {
                    tracing::warn!(family = %name, theirs = ext.type_name, ours = family.prom_type.as_str(), "text callback family dropped: its type differs from the registered family");
                    self.failures
                        .count(cb_names::KIND_EXPFMT, cb_names::FAILURE_CONFLICT);
                }
            }
        }
        for (name, ext) in external {
            write_external(out, &name, &ext);
        }
    }
}

fn write_external(out: &mut String, name: &str, family: &ParsedFamily) {
    if family.samples.is_empty() {
        return;
    }
    render::write_header(out, name, family.help.as_deref(), family.type_name);
    family.write_samples(out, &HashSet::new());
}
