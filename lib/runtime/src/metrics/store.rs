//! The registry's families and series: get-or-create and the conflict rules
//! of DECISIONS.md "Registration".

use super::kind::{Handle, MetricKind, MetricSpec, PromType};
use super::render;
use super::scope::ScopePath;
use crate::MetricsError;
use parking_lot::RwLock;
use std::collections::BTreeMap;

/// One series (or one vec of series) of a family.
pub(crate) struct Series {
    pub scope: ScopePath,
    /// Automatic and user constant labels, sorted by name.
    pub const_labels: Vec<(String, String)>,
    pub var_labels: Vec<String>,
    /// The constant labels as exposed: `a="x",b="y"` (escaped), empty if none.
    pub label_text: String,
    pub handle: Handle,
    /// Where it was created.
    pub origin: String,
}

/// All series of one exposed name.
pub(crate) struct Family {
    pub prom_type: PromType,
    pub help: String,
    /// Resolved buckets of a histogram family; empty otherwise.
    pub buckets: Vec<f64>,
    /// Where the first series was created.
    pub origin: String,
    /// Sorted by `label_text`.
    pub series: Vec<Series>,
}

/// Every family registered in one runtime, by exposed name.
#[derive(Default)]
pub(crate) struct Store {
    families: RwLock<BTreeMap<String, Family>>,
}

impl Store {
    /// Read access for rendering.
    pub(crate) fn read(&self) -> parking_lot::RwLockReadGuard<'_, BTreeMap<String, Family>> {
        self.families.read()
    }

    /// Returns the metric for `spec` at `scope`, creating it if needed.
    pub(crate) fn get_or_create<M: MetricKind>(
        &self,
        scope: &ScopePath,
        spec: MetricSpec,
        origin: String,
    ) -> Result<M, MetricsError> {
        let mut families = self.families.write();
        if let Some(family) = families.get_mut(&spec.name) {
            if let Some(existing) = check_family::<M>(family, &spec)? {
                return Ok(existing);
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

fn new_series(scope: &ScopePath, spec: MetricSpec, handle: Handle, origin: String) -> Series {
    let mut label_text = String::new();
    render::write_label_pairs(
        &mut label_text,
        spec.const_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    Series {
        scope: scope.clone(),
        const_labels: spec.const_labels,
        var_labels: spec.var_labels,
        label_text,
        handle,
        origin,
    }
}

/// Applies the family-wide rules. Returns the existing metric when `spec`
/// names a series that exists already with the same definition.
fn check_family<M: MetricKind>(
    family: &Family,
    spec: &MetricSpec,
) -> Result<Option<M>, MetricsError> {
    let conflict = |difference: String, first_created_at: &str| MetricsError::Conflict {
        family: spec.name.clone(),
        difference,
        first_created_at: first_created_at.to_owned(),
    };
    if family.prom_type != M::PROM_TYPE {
        return Err(conflict(
            format!(
                "type {} differs from the family's type {}",
                M::PROM_TYPE.as_str(),
                family.prom_type.as_str()
            ),
            &family.origin,
        ));
    }
    if family.help != spec.help {
        return Err(conflict(
            format!("help text {:?} differs from {:?}", spec.help, family.help),
            &family.origin,
        ));
    }
    if family.buckets != spec.buckets {
        return Err(conflict(
            format!(
                "buckets {:?} differ from {:?}",
                spec.buckets, family.buckets
            ),
            &family.origin,
        ));
    }
    if let Some(same) = family
        .series
        .iter()
        .find(|s| s.const_labels == spec.const_labels)
    {
        return match M::from_handle(&same.handle) {
            Some(metric) if same.var_labels == spec.var_labels => Ok(Some(metric)),
            _ => Err(conflict(
                format!(
                    "this series exists already as {} with variable labels {:?}, asked for {} with {:?}",
                    same.handle.kind_name(),
                    same.var_labels,
                    M::NAME,
                    spec.var_labels
                ),
                &same.origin,
            )),
        };
    }
    if let Some(clash) = family.series.iter().find(|s| may_collide(s, spec)) {
        return Err(conflict(
            format!(
                "series with labels {:?} and variable labels {:?} could repeat series of the one \
                 with labels {:?} and variable labels {:?}",
                spec.const_labels, spec.var_labels, clash.const_labels, clash.var_labels
            ),
            &clash.origin,
        ));
    }
    Ok(None)
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
    if names(&series.const_labels, &series.var_labels)
        != names(&spec.const_labels, &spec.var_labels)
    {
        return false;
    }
    series.const_labels.iter().all(|(k, v)| {
        spec.const_labels
            .iter()
            .find(|(k2, _)| k2 == k)
            .is_none_or(|(_, v2)| v2 == v)
    })
}
