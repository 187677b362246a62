//! Where in the runtime hierarchy a metric or callback lives.

use super::prometheus_names::labels;
use super::validate;
use crate::MetricsError;
use std::fmt;
use std::sync::Arc;

const LEVELS: [&str; 3] = ["namespace", "component", "endpoint"];

/// The names of the hierarchy levels from the namespace down: empty for the
/// runtime, one name for a namespace, up to three for an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct ScopePath(Arc<[String]>);

impl ScopePath {
    /// The runtime level.
    pub(crate) fn root() -> Self {
        Self::default()
    }

    /// The level below this one with the given name.
    pub(crate) fn child(&self, name: &str) -> Self {
        let mut names = self.0.to_vec();
        names.push(name.to_owned());
        Self(names.into())
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.0
    }

    /// The name of this level; empty for the runtime.
    pub(crate) fn basename(&self) -> &str {
        self.0.last().map_or("", String::as_str)
    }

    /// True when `other` is this level or below it.
    pub(crate) fn contains(&self, other: &ScopePath) -> bool {
        other.0.len() >= self.0.len() && other.0[..self.0.len()] == self.0[..]
    }

    /// The automatic labels of a metric created at this level.
    pub(crate) fn hierarchy_labels(&self) -> impl Iterator<Item = (&'static str, &str)> {
        labels::HIERARCHY
            .iter()
            .copied()
            .zip(self.0.iter().map(String::as_str))
    }

    /// Reports the first unusable name on the path.
    pub(crate) fn validate(&self) -> Result<(), MetricsError> {
        LEVELS
            .iter()
            .zip(self.0.iter())
            .try_for_each(|(level, name)| validate::hierarchy_name(level, name))
    }
}

impl fmt::Display for ScopePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("the runtime");
        }
        for (i, (level, name)) in LEVELS.iter().zip(self.0.iter()).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{level} {name:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_and_labels() {
        let ns = ScopePath::root().child("ns");
        let ep = ns.child("c").child("e");
        assert!(ScopePath::root().contains(&ep));
        assert!(ns.contains(&ep));
        assert!(!ep.contains(&ns));
        assert!(!ScopePath::root().child("other").contains(&ep));
        assert_eq!(
            ep.hierarchy_labels().collect::<Vec<_>>(),
            vec![
                ("dynamo_namespace", "ns"),
                ("dynamo_component", "c"),
                ("dynamo_endpoint", "e")
            ]
        );
        assert_eq!(
            ep.to_string(),
            "namespace \"ns\", component \"c\", endpoint \"e\""
        );
        assert_eq!(ScopePath::root().to_string(), "the runtime");
    }

    #[test]
    fn validate_names_the_bad_level() {
        let e = ScopePath::root()
            .child("ok")
            .child("")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("component"), "{e}");
    }
}
