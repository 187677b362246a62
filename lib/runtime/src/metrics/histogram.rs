//! [`Histogram`]: the `prometheus` crate's histogram (its buckets, sum and
//! count) with an exemplar per bucket and native buckets
//! ([`super::native`]) beside it; [`LocalHistogram`], its thread-local
//! buffer; and [`Exemplar`], the labels one carries.
//!
//! Exemplars are written in OpenMetrics only (text 0.0.4 has no syntax for
//! them). Each bucket keeps the last exemplar recorded in it; the slots are
//! allocated on the first exemplar, so a histogram that never gets one costs
//! nothing more than the crate's.

use super::native::{NativeBuckets, NativeSnapshot};
use super::text::write_label_pairs;
use crate::MetricsError;
use parking_lot::Mutex;
use prometheus::HistogramOpts;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exemplar {
    /// `a="x",b="y"`, escaped; shared, so recording one is no copy.
    labels: Arc<str>,
}

impl Exemplar {
    /// An exemplar with these labels. Errors name the label that is not a
    /// valid label name, or the length when the names and values together
    /// exceed [`EXEMPLAR_MAX_CHARS`] characters.
    pub fn new(labels: &[(&str, &str)]) -> Result<Self, MetricsError> {
        let mut chars = 0;
        for (name, value) in labels {
            if !valid_label_name(name) {
                return Err(MetricsError::InvalidExemplar {
                    reason: format!("invalid label name {name:?}"),
                });
            }
            chars += name.chars().count() + value.chars().count();
        }
        if chars > EXEMPLAR_MAX_CHARS {
            return Err(MetricsError::InvalidExemplar {
                reason: format!(
                    "labels of {chars} characters, more than the {EXEMPLAR_MAX_CHARS} allowed"
                ),
            });
        }
        let mut text = String::new();
        write_label_pairs(&mut text, labels.iter().copied());
        Ok(Self {
            labels: text.into(),
        })
    }

    /// The labels as written: `a="x",b="y"`.
    pub fn label_text(&self) -> &str {
        &self.labels
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
}

impl ExemplarSlots {
    fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.into(),
            slots: OnceLock::new(),
        }
    }

    fn record(&self, value: f64, exemplar: &Exemplar) {
        let slots = self
            .slots
            .get_or_init(|| (0..=self.bounds.len()).map(|_| Mutex::new(None)).collect());
        // The bucket the value is counted in: the first bound >= value.
        let i = self.bounds.partition_point(|b| *b < value);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        *slots[i].lock() = Some(Recorded {
            exemplar: exemplar.clone(),
            value,
            timestamp,
        });
    }

    /// The exemplar of bucket `i` (`bounds.len()` for `+Inf`), if any.
    pub(crate) fn get(&self, i: usize) -> Option<Recorded> {
        self.slots.get()?.get(i)?.lock().clone()
    }

    /// True once any exemplar was recorded.
    pub(crate) fn any(&self) -> bool {
        self.slots.get().is_some()
    }
}

/// A histogram: classic buckets (the `prometheus` crate's
/// [`prometheus::Histogram`]: the same buckets, sum and count in every
/// format), native buckets beside them (written in the protobuf exposition;
/// see [`super::native`]), and an exemplar per classic bucket.
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
    classic: prometheus::Histogram,
    native: Arc<NativeBuckets>,
    exemplars: Arc<ExemplarSlots>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.classic.get_sample_count())
            .field("sum", &self.classic.get_sample_sum())
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// A histogram of the crate's options (`opts.buckets` resolved).
    pub(crate) fn with_opts(opts: HistogramOpts) -> prometheus::Result<Self> {
        let bounds = opts.buckets.clone();
        Ok(Self {
            classic: prometheus::Histogram::with_opts(opts)?,
            native: Arc::default(),
            exemplars: Arc::new(ExemplarSlots::new(&bounds)),
        })
    }

    /// Observes `value`, in the classic and the native buckets.
    #[inline]
    pub fn observe(&self, value: f64) {
        self.classic.observe(value);
        self.native.observe(value);
    }

    /// Observes `value` and keeps `exemplar` as the exemplar of the bucket
    /// the value falls in (replacing the one before).
    pub fn observe_with_exemplar(&self, value: f64, exemplar: &Exemplar) {
        self.observe(value);
        self.exemplars.record(value, exemplar);
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
        self.exemplars.record(value, exemplar);
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
            classic: self.classic.local(),
            native: self.native.clone(),
            pending: Default::default(),
        }
    }

    /// Observations so far (classic count).
    pub fn get_sample_count(&self) -> u64 {
        self.classic.get_sample_count()
    }

    /// Sum of the observations so far.
    pub fn get_sample_sum(&self) -> f64 {
        self.classic.get_sample_sum()
    }

    /// The name, help and constant labels (as the `prometheus` crate's
    /// `Collector::desc` gives them).
    pub fn desc(&self) -> Vec<&prometheus::core::Desc> {
        use prometheus::core::Collector as _;
        self.classic.desc()
    }

    /// A read of the native buckets.
    pub fn native_snapshot(&self) -> NativeSnapshot {
        self.native.snapshot()
    }

    /// The classic buckets, count and sum, read together.
    pub(crate) fn classic_snapshot(&self) -> prometheus::proto::Metric {
        use prometheus::core::Metric as _;
        self.classic.metric()
    }

    pub(crate) fn native(&self) -> &NativeBuckets {
        &self.native
    }

    pub(crate) fn exemplar_slots(&self) -> &ExemplarSlots {
        &self.exemplars
    }
}

/// Observations of one [`Histogram`] buffered in one thread, added to it on
/// [`flush`](Self::flush) and on drop.
pub struct LocalHistogram {
    classic: prometheus::local::LocalHistogram,
    native: Arc<NativeBuckets>,
    /// Values not yet in the native buckets.
    pending: std::cell::RefCell<Vec<f64>>,
}

impl std::fmt::Debug for LocalHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHistogram")
            .field("pending", &self.pending.borrow().len())
            .finish_non_exhaustive()
    }
}

impl LocalHistogram {
    /// Buffers one observation.
    #[inline]
    pub fn observe(&self, value: f64) {
        self.classic.observe(value);
        self.pending.borrow_mut().push(value);
    }

    /// Observations buffered since the last flush.
    pub fn get_sample_count(&self) -> u64 {
        self.classic.get_sample_count()
    }

    /// Adds the buffered observations to the histogram.
    pub fn flush(&self) {
        self.classic.flush();
        for v in self.pending.borrow_mut().drain(..) {
            self.native.observe(v);
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
