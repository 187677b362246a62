//! The registry's families and series: get-or-create and the conflict rules
//! of the registration decisions (docs/metrics.md "Registration rules").

use super::kind::{Handle, MetricKind};
use super::scope::ScopePath;
use super::spec::{MetricSpec, PromType};
use super::text;
use crate::MetricsError;
use parking_lot::RwLock;
use std::collections::BTreeMap;

/// Where a registration came from.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// The hierarchy object and source location, for error messages.
    pub place: String,
    /// True for the runtime's automatic endpoint metrics.
    pub automatic: bool,
}

/// One series (or one vec of series) of a family: what a scrape reads, and
/// what only registration reads ([`SeriesMeta`]).
pub(crate) struct Series {
    pub scope: ScopePath,
    /// The constant labels as exposed: `a="x",b="y"` (escaped), empty if none.
    pub label_text: String,
    pub handle: Handle,
    /// Handles of the other numeric kind (integer or float) given out for
    /// this same series when a user metric and an automatic endpoint metric
    /// coincide: the series is exposed once, with the sum of every handle.
    pub aliases: Vec<Handle>,
    /// What only registration reads.
    pub meta: SeriesMeta,
}

/// The part of a [`Series`] that registration reads and scrapes do not.
pub(crate) struct SeriesMeta {
    /// Automatic and user constant labels, sorted by name.
    pub const_labels: Vec<(String, String)>,
    pub var_labels: Vec<String>,
    /// Where it was created.
    pub origin: Origin,
    /// Whether the coincidence with an automatic metric was logged already.
    warned_automatic: bool,
}

/// All series of one exposed name.
pub(crate) struct Family {
    pub prom_type: PromType,
    /// The first help text given; later differing ones are logged once each.
    pub help: String,
    /// Resolved buckets of a histogram family; empty otherwise.
    pub buckets: Vec<f64>,
    /// Where the first series was created.
    pub origin: Origin,
    /// Sorted by `label_text`.
    pub series: Vec<Series>,
    /// Differing help texts already warned about.
    warned_helps: Vec<String>,
}

/// Every family registered in one runtime, by exposed name.
#[derive(Default)]
pub(crate) struct Store {
    families: RwLock<BTreeMap<String, Family>>,
}

impl Store {
    /// Read access for the encoder.
    pub(crate) fn read(&self) -> parking_lot::RwLockReadGuard<'_, BTreeMap<String, Family>> {
        self.families.read()
    }

    /// Returns the metric for `spec` at `scope`, creating it if needed.
    pub(crate) fn get_or_create<M: MetricKind>(
        &self,
        scope: &ScopePath,
        spec: MetricSpec,
        origin: Origin,
    ) -> Result<M, MetricsError> {
        let mut families = self.families.write();
        if let Some(family) = families.get_mut(&spec.name) {
            check_family::<M>(family, &spec)?;
            warn_differing_help(family, &spec);
            if let Some(at) = family
                .series
                .iter()
                .position(|s| s.meta.const_labels == spec.const_labels)
            {
                return same_series::<M>(&mut family.series[at], &spec, origin);
            }
            if let Some(clash) = family.series.iter().find(|s| may_collide(s, &spec)) {
                return Err(conflict(
                    &spec,
                    format!(
                        "series with labels {:?} and variable labels {:?} could repeat series of the one \
                         with labels {:?} and variable labels {:?}",
                        spec.const_labels, spec.var_labels, clash.meta.const_labels, clash.meta.var_labels
                    ),
                    &clash.meta.origin,
                ));
            }
            let metric = build::<M>(&spec)?;
            let series = new_series(scope, spec, metric.clone().into_handle(), origin);
            let at = family
                .series
                .partition_point(|s| s.label_text < series.label_text);
            family.series.insert(at, series);
            return Ok(metric);
        }
        let metric = build::<M>(&spec)?;
        let family = Family {
            prom_type: M::PROM_TYPE,
            help: spec.help.clone(),
            buckets: spec.buckets.clone(),
            origin: origin.clone(),
            series: Vec::new(),
            warned_helps: Vec::new(),
        };
        let name = spec.name.clone();
        let series = new_series(scope, spec, metric.clone().into_handle(), origin);
        families.entry(name).or_insert(family).series.push(series);
        Ok(metric)
    }
}

fn build<M: MetricKind>(spec: &MetricSpec) -> Result<M, MetricsError> {
    M::build(spec).map_err(|source| MetricsError::Prometheus {
        metric: spec.name.clone(),
        source,
    })
}

fn new_series(scope: &ScopePath, spec: MetricSpec, handle: Handle, origin: Origin) -> Series {
    let mut label_text = String::new();
    text::write_label_pairs(
        &mut label_text,
        spec.const_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    Series {
        scope: scope.clone(),
        label_text,
        handle,
        aliases: Vec::new(),
        meta: SeriesMeta {
            const_labels: spec.const_labels,
            var_labels: spec.var_labels,
            origin,
            warned_automatic: false,
        },
    }
}

fn conflict(spec: &MetricSpec, difference: String, first: &Origin) -> MetricsError {
    MetricsError::Conflict {
        family: spec.name.clone(),
        difference,
        first_created_at: first.place.clone(),
    }
}

/// The family-wide rules: every series agrees on type and buckets.
fn check_family<M: MetricKind>(family: &Family, spec: &MetricSpec) -> Result<(), MetricsError> {
    if family.prom_type != M::PROM_TYPE {
        return Err(conflict(
            spec,
            format!(
                "type {} differs from the family's type {}",
                M::PROM_TYPE.as_str(),
                family.prom_type.as_str()
            ),
            &family.origin,
        ));
    }
    if family.buckets != spec.buckets {
        return Err(conflict(
            spec,
            format!(
                "buckets {:?} differ from {:?}",
                spec.buckets, family.buckets
            ),
            &family.origin,
        ));
    }
    Ok(())
}

/// A differing help text is no error: the family keeps its first one, and
/// each other text is logged once.
fn warn_differing_help(family: &mut Family, spec: &MetricSpec) {
    if family.help == spec.help || family.warned_helps.contains(&spec.help) {
        return;
    }
    tracing::warn!(
        family = %spec.name,
        kept = %family.help,
        ignored = %spec.help,
        first_created_at = %family.origin.place,
        "metric created again with another help text; the family keeps its first help text"
    );
    family.warned_helps.push(spec.help.clone());
}

/// A creation of a series that exists: get-or-create when the kind and the
/// variable labels agree; a shared series when a user metric and an
/// automatic endpoint metric coincide with another numeric kind; else a conflict.
fn same_series<M: MetricKind>(
    series: &mut Series,
    spec: &MetricSpec,
    origin: Origin,
) -> Result<M, MetricsError> {
    let automatic_pair = series.meta.origin.automatic != origin.automatic;
    if automatic_pair && !series.meta.warned_automatic {
        series.meta.warned_automatic = true;
        tracing::warn!(
            metric = %spec.name,
            user_metric_at = %if origin.automatic { &series.meta.origin.place } else { &origin.place },
            "the runtime already counts this metric for every served endpoint; \
             the user metric is the same series, so what it adds is added to the runtime's count"
        );
    }
    if series.meta.var_labels != spec.var_labels {
        return Err(conflict(
            spec,
            format!(
                "this series exists already with variable labels {:?}, asked for {:?}",
                series.meta.var_labels, spec.var_labels
            ),
            &series.meta.origin,
        ));
    }
    if let Some(metric) = M::from_handle(&series.handle) {
        return Ok(metric);
    }
    if let Some(metric) = series.aliases.iter().find_map(M::from_handle) {
        return Ok(metric);
    }
    let plain = series.meta.var_labels.is_empty() && series.handle.is_plain() && M::PLAIN;
    if !(automatic_pair && plain) {
        return Err(conflict(
            spec,
            format!(
                "this series exists already as {} with variable labels {:?}, asked for {} with {:?}",
                series.handle.kind_name(),
                series.meta.var_labels,
                M::NAME,
                spec.var_labels
            ),
            &series.meta.origin,
        ));
    }
    let metric = build::<M>(spec)?;
    series.aliases.push(metric.clone().into_handle());
    Ok(metric)
}

/// True when two registrations of one family could expose the same label set:
/// the same label names, and equal values wherever both fix a value.
fn may_collide(series: &Series, spec: &MetricSpec) -> bool {
    fn names<'a>(consts: &'a [(String, String)], vars: &'a [String]) -> Vec<&'a str> {
        let mut all: Vec<&str> = consts
            .iter()
            .map(|(k, _)| k.as_str())
            .chain(vars.iter().map(String::as_str))
            .collect();
        all.sort_unstable();
        all
    }
    if names(&series.meta.const_labels, &series.meta.var_labels)
        != names(&spec.const_labels, &spec.var_labels)
    {
        return false;
    }
    series.meta.const_labels.iter().all(|(k, v)| {
        spec.const_labels
            .iter()
            .find(|(k2, _)| k2 == k)
            .is_none_or(|(_, v2)| v2 == v)
    })
}
