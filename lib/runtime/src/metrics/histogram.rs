//! [`Histogram`]: classic buckets, sum and count, with an exemplar per
//! bucket and native buckets ([`super::native`]) beside them;
//! [`LocalHistogram`], its thread-local buffer; and [`Exemplar`], the labels
//! one carries.
//!
//! Exemplars are written in OpenMetrics only (text 0.0.4 has no syntax for
//! them). Each bucket keeps the last exemplar recorded in it; the slots are
//! allocated on the first exemplar, so a histogram that never gets one costs
//! nothing for them.

use super::native::{NativeBuckets, NativeSnapshot};
use super::text::write_label_pairs;
use crate::MetricsError;
use parking_lot::Mutex;
use prometheus::HistogramOpts;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The most characters the label names and values of one exemplar may hold
/// together (the OpenMetrics limit).
pub const EXEMPLAR_MAX_CHARS: usize = 128;

/// The labels of an exemplar, validated and escaped once.
///
/// ```
/// use dynamo_runtime::Exemplar;
///
/// let e = Exemplar::new(&[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")])?;
/// assert!(Exemplar::new(&[("bad name", "x")]).is_err());
/// assert!(Exemplar::new(&[("id", &"x".repeat(200))]).is_err());
/// # Ok::<(), dynamo_runtime::MetricsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Exemplar {
    labels: Labels,
}

/// An exemplar's labels: written out once, or a request's id and trace
/// context, shared with the request and written out only when a scrape
/// reads them (a request's exemplar is recorded far more often than read).
#[derive(Debug, Clone)]
enum Labels {
    /// `a="x",b="y"`, escaped; shared, so recording one is no copy.
    Text(Arc<str>),
    /// `request_id` and `trace_id` of a request that has at least one.
    Request(Arc<crate::RequestMeta>),
}

impl PartialEq for Exemplar {
    fn eq(&self, other: &Self) -> bool {
        self.label_text() == other.label_text()
    }
}

impl Eq for Exemplar {}

impl Exemplar {
    /// An exemplar with these labels. Errors name the label that is not a
    /// valid label name, or the length when the names and values together
    /// exceed [`EXEMPLAR_MAX_CHARS`] characters.
    pub fn new(labels: &[(&str, &str)]) -> Result<Self, MetricsError> {
        let mut bytes = 0;
        for (name, value) in labels {
            if !valid_label_name(name) {
                return Err(MetricsError::InvalidExemplar {
                    reason: format!("invalid label name {name:?}"),
                });
            }
            bytes += name.len() + value.len();
        }
        // Characters are counted only when the bytes could exceed the limit
        // (a request's exemplar never does: this runs once per request).
        if bytes > EXEMPLAR_MAX_CHARS {
            let chars: usize = labels
                .iter()
                .map(|(name, value)| name.chars().count() + value.chars().count())
                .sum();
            if chars > EXEMPLAR_MAX_CHARS {
                return Err(MetricsError::InvalidExemplar {
                    reason: format!(
                        "labels of {chars} characters, more than the {EXEMPLAR_MAX_CHARS} allowed"
                    ),
                });
            }
        }
        let mut text = String::with_capacity(bytes + 4 * labels.len());
        write_label_pairs(&mut text, labels.iter().copied());
        Ok(Self {
            labels: Labels::Text(text.into()),
        })
    }

    /// The exemplar of a request: its `request_id` and, with a trace
    /// context, its `trace_id`; `None` when it has neither. Valid by
    /// construction (a bounded id, a checked trace id: within
    /// [`EXEMPLAR_MAX_CHARS`]), and written out only when read.
    pub(crate) fn of_request(meta: &Arc<crate::RequestMeta>) -> Option<Self> {
        (!meta.is_empty()).then(|| Self {
            labels: Labels::Request(meta.clone()),
        })
    }

    /// The labels as written: `a="x",b="y"`.
    pub fn label_text(&self) -> std::borrow::Cow<'_, str> {
        match &self.labels {
            Labels::Text(text) => std::borrow::Cow::Borrowed(text),
            Labels::Request(_) => {
                let mut text = String::with_capacity(96);
                self.write_labels(&mut text);
                std::borrow::Cow::Owned(text)
            }
        }
    }

    /// Appends [`Self::label_text`] to `out`.
    pub(crate) fn write_labels(&self, out: &mut String) {
        use crate::metrics::prometheus_names::exemplar as names;
        match &self.labels {
            Labels::Text(text) => out.push_str(text),
            Labels::Request(meta) => {
                let pairs = [
                    meta.request_id().map(|id| (names::REQUEST_ID, id)),
                    meta.trace_id().map(|trace| (names::TRACE_ID, trace)),
                ];
                write_label_pairs(out, pairs.into_iter().flatten());
            }
        }
    }
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An exemplar as recorded in a bucket: its labels, the observed value and
/// when (seconds since the epoch).
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub exemplar: Exemplar,
    pub value: f64,
    pub timestamp: f64,
}

/// One slot per bucket, the `+Inf` bucket last. (`pub` in a private module:
/// the sealed value type names it.)
#[derive(Debug, Default)]
pub struct ExemplarSlots {
    bounds: Box<[f64]>,
    slots: OnceLock<Box<[Mutex<Option<Recorded>>]>>,
    /// Bit `i` set once slot `i` holds an exemplar (bit 63: any slot from
    /// 63 on), so a scrape locks only the slots that have one.
    filled: AtomicU64,
}

impl ExemplarSlots {
    fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.into(),
            slots: OnceLock::new(),
            filled: AtomicU64::new(0),
        }
    }

    fn record(&self, value: f64, exemplar: &Exemplar) {
        let slots = self
            .slots
            .get_or_init(|| (0..=self.bounds.len()).map(|_| Mutex::new(None)).collect());
        let i = classic_bucket(&self.bounds, value);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        *slots[i].lock() = Some(Recorded {
            exemplar: exemplar.clone(),
            value,
            timestamp,
        });
        // A read first: once a bucket has had one, no write per exemplar.
        let bit = Self::bit(i);
        if self.filled.load(Ordering::Relaxed) & bit == 0 {
            self.filled.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// The exemplar of bucket `i` (`bounds.len()` for `+Inf`), if any.
    pub(crate) fn get(&self, i: usize) -> Option<Recorded> {
        self.with(i, Recorded::clone)
    }

    /// Calls `f` with the exemplar of bucket `i`, if any, under its lock
    /// (no copy).
    #[inline]
    pub(crate) fn with<R>(&self, i: usize, f: impl FnOnce(&Recorded) -> R) -> Option<R> {
        if self.filled.load(Ordering::Relaxed) & Self::bit(i) == 0 {
            return None;
        }
        self.slots.get()?.get(i)?.lock().as_ref().map(f)
    }

    fn bit(i: usize) -> u64 {
        1 << i.min(63)
    }

    /// True once any exemplar was recorded.
    pub(crate) fn any(&self) -> bool {
        self.slots.get().is_some()
    }
}

/// The classic bucket of `value` among increasing `bounds`: the first bound
/// at or above it, `bounds.len()` (`+Inf`) for a larger value or NaN.
#[inline]
fn classic_bucket(bounds: &[f64], value: f64) -> usize {
    // `b < value` would put NaN in the first bucket; this puts it in +Inf.
    bounds.partition_point(|b| {
        b.partial_cmp(&value) == Some(std::cmp::Ordering::Less) || value.is_nan()
    })
}

/// What a [`Histogram`] handle shares.
struct Core {
    desc: prometheus::core::Desc,
    /// Upper bounds of the classic buckets, `+Inf` implied.
    bounds: Box<[f64]>,
    /// Observations per classic bucket (not cumulative), `+Inf` last.
    counts: Box<[AtomicU64]>,
    /// The sum of the observations, as `f64` bits.
    sum: AtomicU64,
    native: NativeBuckets,
    exemplars: ExemplarSlots,
}

/// A histogram: classic buckets (the same buckets, sum and count in every
/// format), native buckets beside them (written in the protobuf exposition;
/// see [`super::native`]), and an exemplar per classic bucket.
///
/// An observation is two atomic adds and a compare-and-swap (bucket, native
/// bucket, sum); the count is the sum of the buckets, so a scrape always
/// sees the two agree.
///
/// ```
/// use dynamo_runtime::{DistributedRuntime, Exemplar, ExpositionFormat, MetricsRegistry};
///
/// let drt = DistributedRuntime::new()?;
/// let h = drt.create_histogram("wait_seconds", "Wait", &[], Some(vec![0.1, 1.0]))?;
/// h.observe(0.05);
/// h.observe_with_exemplar(0.5, &Exemplar::new(&[("request_id", "r-1")])?);
/// assert_eq!(h.get_sample_count(), 2);
/// assert_eq!(h.native_snapshot().count(), 2);
/// let om = String::from_utf8(drt.metrics().render(ExpositionFormat::OpenMetrics)?)?;
/// assert!(om.contains(r#"dynamo_component_wait_seconds_bucket{le="1"} 2 # {request_id="r-1"} 0.5 "#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Histogram {
    core: Arc<Core>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("name", &self.core.desc.fq_name)
            .field("count", &self.get_sample_count())
            .field("sum", &self.get_sample_sum())
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// A histogram of the crate's options: its name, help and constant
    /// labels (validated as the crate does), and its buckets (checked by the
    /// caller: finite and increasing; `+Inf` is implied).
    pub(crate) fn with_opts(opts: HistogramOpts) -> prometheus::Result<Self> {
        use prometheus::core::Describer as _;
        let desc = opts.describe()?;
        let bounds: Box<[f64]> = opts
            .buckets
            .iter()
            .copied()
            .filter(|b| b.is_finite())
            .collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Ok(Self {
            core: Arc::new(Core {
                desc,
                exemplars: ExemplarSlots::new(&bounds),
                bounds,
                counts,
                sum: AtomicU64::new(0f64.to_bits()),
                native: NativeBuckets::default(),
            }),
        })
    }

    /// Observes `value`, in the classic and the native buckets.
    #[inline]
    pub fn observe(&self, value: f64) {
        let core = &*self.core;
        let i = classic_bucket(&core.bounds, value);
        core.counts[i].fetch_add(1, Ordering::Relaxed);
        add_f64(&core.sum, value);
        core.native.observe(value);
    }

    /// Observes `value` and keeps `exemplar` as the exemplar of the bucket
    /// the value falls in (replacing the one before).
    pub fn observe_with_exemplar(&self, value: f64, exemplar: &Exemplar) {
        self.observe(value);
        self.core.exemplars.record(value, exemplar);
    }

    /// Observes `value`, with `exemplar` when there is one (for a caller
    /// that has an exemplar for some observations and not others).
    pub fn observe_with_optional_exemplar(&self, value: f64, exemplar: Option<&Exemplar>) {
        match exemplar {
            Some(exemplar) => self.observe_with_exemplar(value, exemplar),
            None => self.observe(value),
        }
    }

    /// Keeps `exemplar` for `value` without observing it: for a value counted
    /// another way already (through a [`LocalHistogram`] of this histogram).
    pub fn record_exemplar(&self, value: f64, exemplar: &Exemplar) {
        self.core.exemplars.record(value, exemplar);
    }

    /// A buffer for one thread's observations, added to this histogram when
    /// flushed (or dropped): for a hot loop.
    ///
    /// ```
    /// # let drt = dynamo_runtime::DistributedRuntime::new()?;
    /// # use dynamo_runtime::MetricsRegistry;
    /// let h = drt.create_histogram("gap_seconds", "Gaps", &[], None)?;
    /// let local = h.local();
    /// local.observe(0.01);
    /// local.observe(0.02);
    /// assert_eq!(h.get_sample_count(), 0);
    /// local.flush();
    /// assert_eq!(h.get_sample_count(), 2);
    /// assert_eq!(h.native_snapshot().count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local(&self) -> LocalHistogram {
        LocalHistogram {
            histogram: self.clone(),
            pending: Default::default(),
        }
    }

    /// Observations so far: the sum of the buckets.
    pub fn get_sample_count(&self) -> u64 {
        self.core
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of the observations so far.
    pub fn get_sample_sum(&self) -> f64 {
        f64::from_bits(self.core.sum.load(Ordering::Relaxed))
    }

    /// The name, help and constant labels (as the `prometheus` crate's
    /// `Collector::desc` gives them).
    pub fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.core.desc]
    }

    /// A read of the native buckets.
    pub fn native_snapshot(&self) -> NativeSnapshot {
        self.core.native.snapshot()
    }

    /// The upper bounds of the classic buckets (`+Inf` implied).
    pub(crate) fn bounds(&self) -> &[f64] {
        &self.core.bounds
    }

    /// Calls `f(i, cumulative count)` for each classic bucket, `+Inf` last
    /// (`i == bounds().len()`), and returns the count: the last cumulative.
    #[inline]
    pub(crate) fn for_each_cumulative(&self, mut f: impl FnMut(usize, u64)) -> u64 {
        let mut cumulative = 0;
        for (i, c) in self.core.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            f(i, cumulative);
        }
        cumulative
    }

    pub(crate) fn native(&self) -> &NativeBuckets {
        &self.core.native
    }

    pub(crate) fn exemplar_slots(&self) -> &ExemplarSlots {
        &self.core.exemplars
    }
}

/// Adds `v` to the `f64` whose bits `cell` holds.
#[inline]
fn add_f64(cell: &AtomicU64, v: f64) {
    let mut old = cell.load(Ordering::Relaxed);
    loop {
        let new = (f64::from_bits(old) + v).to_bits();
        match cell.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => old = now,
        }
    }
}

/// Observations of one [`Histogram`] buffered in one thread, added to it on
/// [`flush`](Self::flush) and on drop.
pub struct LocalHistogram {
    histogram: Histogram,
    pending: std::cell::RefCell<LocalCounts>,
}

/// What a [`LocalHistogram`] holds until it flushes.
#[derive(Default)]
struct LocalCounts {
    /// Per classic bucket, allocated on the first observation.
    counts: Vec<u64>,
    sum: f64,
    /// The values buffered (not yet in the native buckets): their number is
    /// the buffered count.
    values: Vec<f64>,
}

impl std::fmt::Debug for LocalHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHistogram")
            .field("pending", &self.pending.borrow().values.len())
            .finish_non_exhaustive()
    }
}

impl LocalHistogram {
    /// Buffers one observation.
    #[inline]
    pub fn observe(&self, value: f64) {
        let bounds = self.histogram.bounds();
        let mut p = self.pending.borrow_mut();
        if p.counts.is_empty() {
            p.counts = vec![0; bounds.len() + 1];
        }
        p.counts[classic_bucket(bounds, value)] += 1;
        p.sum += value;
        p.values.push(value);
    }

    /// Observations buffered since the last flush.
    pub fn get_sample_count(&self) -> u64 {
        self.pending.borrow().values.len() as u64
    }

    /// Adds the buffered observations to the histogram.
    pub fn flush(&self) {
        let mut p = self.pending.borrow_mut();
        if p.values.is_empty() {
            return;
        }
        let core = &*self.histogram.core;
        for (cell, n) in core.counts.iter().zip(p.counts.iter_mut()) {
            if *n > 0 {
                cell.fetch_add(std::mem::take(n), Ordering::Relaxed);
            }
        }
        add_f64(&core.sum, std::mem::take(&mut p.sum));
        for v in p.values.drain(..) {
            core.native.observe(v);
        }
    }
}

impl Drop for LocalHistogram {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cumulative(h: &Histogram) -> Vec<u64> {
        let mut out = Vec::new();
        h.for_each_cumulative(|_, c| out.push(c));
        out
    }

    #[test]
    fn values_land_in_the_first_bucket_at_or_above_them() {
        let h = Histogram::with_opts(HistogramOpts::new("h", "h").buckets(vec![1.0, 2.0])).unwrap();
        for v in [0.5, 1.0, 1.5, 2.0, 3.0, f64::INFINITY, f64::NAN, -7.0] {
            h.observe(v);
        }
        // le=1: 0.5, 1, -7; le=2: + 1.5, 2; +Inf: + 3, inf, NaN.
        assert_eq!(cumulative(&h), vec![3, 5, 8]);
        assert_eq!(h.get_sample_count(), 8);
        assert!(h.get_sample_sum().is_nan());
    }

    #[test]
    fn a_local_histogram_adds_on_flush_and_on_drop() {
        let h = Histogram::with_opts(HistogramOpts::new("h", "h").buckets(vec![1.0])).unwrap();
        let local = h.local();
        local.observe(0.5);
        local.observe(4.0);
        assert_eq!(local.get_sample_count(), 2);
        assert_eq!(h.get_sample_count(), 0);
        local.flush();
        assert_eq!((cumulative(&h), h.get_sample_sum()), (vec![1, 2], 4.5));
        assert_eq!(local.get_sample_count(), 0);
        local.observe(0.25);
        drop(local);
        assert_eq!((cumulative(&h), h.get_sample_sum()), (vec![2, 3], 4.75));
        assert_eq!(h.native_snapshot().count(), 3);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = Histogram::with_opts(HistogramOpts::new("h", "h").buckets(vec![0.5])).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let h = h.clone();
                s.spawn(move || {
                    for i in 0..10_000 {
                        h.observe(f64::from((t + i) % 2));
                    }
                });
            }
        });
        assert_eq!(cumulative(&h), vec![20_000, 40_000]);
        assert_eq!(h.get_sample_sum(), 20_000.0);
        assert_eq!(h.native_snapshot().count(), 40_000);
    }

    #[test]
    fn an_exemplar_lands_in_the_bucket_of_its_value() {
        let h = Histogram::with_opts(HistogramOpts::new("h", "h").buckets(vec![1.0, 2.0])).unwrap();
        assert!(!h.exemplar_slots().any());
        let e = |id: &str| Exemplar::new(&[("id", id)]).unwrap();
        h.observe_with_exemplar(1.0, &e("a"));
        h.observe_with_exemplar(1.5, &e("b"));
        h.observe_with_exemplar(1.7, &e("c"));
        h.record_exemplar(9.0, &e("d"));
        let slots = h.exemplar_slots();
        assert_eq!(slots.get(0).unwrap().exemplar.label_text(), "id=\"a\"");
        assert_eq!(slots.get(1).unwrap().value, 1.7);
        assert_eq!(slots.get(2).unwrap().exemplar.label_text(), "id=\"d\"");
        assert!(slots.get(2).unwrap().timestamp > 1.6e9);
        assert_eq!(h.get_sample_count(), 3);
    }

    #[test]
    fn exemplar_labels_are_checked_and_escaped() {
        let e = Exemplar::new(&[("a", "q\"\n"), ("_b2", "")]).unwrap();
        assert_eq!(e.label_text(), "a=\"q\\\"\\n\",_b2=\"\"");
        for bad in ["", "1a", "a-b", "é"] {
            let err = Exemplar::new(&[(bad, "x")]).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        let long = "x".repeat(EXEMPLAR_MAX_CHARS - 2);
        assert!(Exemplar::new(&[("id", &long)]).is_ok());
        let err = Exemplar::new(&[("id", &format!("{long}y"))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("129 characters"), "{err}");
    }
}
