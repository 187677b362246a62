//! [`Histogram`]: the `prometheus` crate's histogram (its buckets, sum and
//! count, and what `observe` costs) with an exemplar per bucket beside it,
//! and [`Exemplar`], the labels one carries.
//!
//! Exemplars are written in OpenMetrics only (text 0.0.4 has no syntax for
//! them). Each bucket keeps the last exemplar recorded in it; the slots are
//! allocated on the first exemplar, so a histogram that never gets one costs
//! nothing more than the crate's.

use super::text::write_label_pairs;
use crate::MetricsError;
use parking_lot::Mutex;
use prometheus::HistogramOpts;
use std::ops::Deref;
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

/// A histogram: the `prometheus` crate's [`prometheus::Histogram`] (every
/// method of it works through `Deref`: `observe`, `local`, `start_timer`,
/// `get_sample_count`, ...) with exemplars beside it.
///
/// ```
/// use dynamo_runtime::{DistributedRuntime, Exemplar, ExpositionFormat, MetricsRegistry};
///
/// let drt = DistributedRuntime::new()?;
/// let h = drt.create_histogram("wait_seconds", "Wait", &[], Some(vec![0.1, 1.0]))?;
/// h.observe(0.05);
/// h.observe_with_exemplar(0.5, &Exemplar::new(&[("request_id", "r-1")])?);
/// assert_eq!(h.get_sample_count(), 2);
/// let om = drt.metrics().render(ExpositionFormat::OpenMetrics)?;
/// assert!(om.contains(r#"dynamo_component_wait_seconds_bucket{le="1"} 2 # {request_id="r-1"} 0.5 "#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Histogram {
    inner: prometheus::Histogram,
    exemplars: Arc<ExemplarSlots>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.inner.get_sample_count())
            .field("sum", &self.inner.get_sample_sum())
            .finish_non_exhaustive()
    }
}

impl Deref for Histogram {
    type Target = prometheus::Histogram;
    fn deref(&self) -> &prometheus::Histogram {
        &self.inner
    }
}

impl Histogram {
    /// A histogram of the crate's options (`opts.buckets` resolved).
    pub(crate) fn with_opts(opts: HistogramOpts) -> prometheus::Result<Self> {
        let bounds = opts.buckets.clone();
        Ok(Self {
            inner: prometheus::Histogram::with_opts(opts)?,
            exemplars: Arc::new(ExemplarSlots::new(&bounds)),
        })
    }

    /// Observes `value` and keeps `exemplar` as the exemplar of the bucket
    /// the value falls in (replacing the one before).
    pub fn observe_with_exemplar(&self, value: f64, exemplar: &Exemplar) {
        self.inner.observe(value);
        self.exemplars.record(value, exemplar);
    }

    /// Observes `value`, with `exemplar` when there is one (for a caller
    /// that has an exemplar for some observations and not others).
    pub fn observe_with_optional_exemplar(&self, value: f64, exemplar: Option<&Exemplar>) {
        match exemplar {
            Some(exemplar) => self.observe_with_exemplar(value, exemplar),
            None => self.inner.observe(value),
        }
    }

    /// Keeps `exemplar` for `value` without observing it: for a value counted
    /// another way already (a [`prometheus::local::LocalHistogram`] of this
    /// histogram, flushed).
    pub fn record_exemplar(&self, value: f64, exemplar: &Exemplar) {
        self.exemplars.record(value, exemplar);
    }

    /// The crate's histogram inside.
    pub fn inner(&self) -> &prometheus::Histogram {
        &self.inner
    }

    pub(crate) fn exemplar_slots(&self) -> &ExemplarSlots {
        &self.exemplars
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
