//! The naming and label rules (docs/metrics.md "Names and labels"), as checks that return
//! a [`MetricsError`] naming the bad value.

use super::prometheus_names::{self, labels};
use crate::MetricsError;

/// Checks a namespace, component or endpoint name: not empty, no control characters.
pub(crate) fn hierarchy_name(level: &'static str, name: &str) -> Result<(), MetricsError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.chars().any(char::is_control) {
        "it holds a control character"
    } else {
        return Ok(());
    };
    Err(MetricsError::InvalidHierarchyName {
        level,
        name: name.to_owned(),
        reason,
    })
}

/// The exposed name for a user-given metric name.
#[cfg(test)]
pub(crate) fn metric_name(name: &str) -> Result<String, MetricsError> {
    prefixed_metric_name(prometheus_names::COMPONENT_PREFIX, name)
}

/// The exposed name for a metric name under `prefix`.
pub(crate) fn prefixed_metric_name(prefix: &str, name: &str) -> Result<String, MetricsError> {
    prometheus_names::build_metric_name(prefix, name).ok_or_else(|| {
        MetricsError::InvalidMetricName {
            name: name.to_owned(),
            reason: "it is empty or only underscores after replacing characters outside \
                     [a-zA-Z0-9_:] with '_'"
                .to_owned(),
        }
    })
}

/// Checks user label names (constant and variable together).
pub(crate) fn user_label_names<'a>(
    metric: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), MetricsError> {
    let mut seen: Vec<&str> = Vec::new();
    for label in names {
        let reason = if !prometheus_names::is_valid_label_name(label) {
            Some("must match [a-zA-Z_][a-zA-Z0-9_]*".to_owned())
        } else if label.starts_with("__") {
            Some("names starting with '__' are reserved by Prometheus".to_owned())
        } else if labels::RESERVED.contains(&label) {
            Some("reserved by Prometheus for histogram and summary samples".to_owned())
        } else if labels::HIERARCHY.contains(&label) {
            Some("set automatically from the runtime hierarchy".to_owned())
        } else if seen.contains(&label) {
            Some("given more than once".to_owned())
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(MetricsError::InvalidLabelName {
                metric: metric.to_owned(),
                label: label.to_owned(),
                reason,
            });
        }
        seen.push(label);
    }
    Ok(())
}

/// Checks user-given histogram buckets: not empty, finite, strictly increasing.
pub(crate) fn buckets(metric: &str, buckets: &[f64]) -> Result<(), MetricsError> {
    let reason = if buckets.is_empty() {
        Some("give at least one bucket, or None for the default buckets".to_owned())
    } else if let Some(b) = buckets.iter().find(|b| !b.is_finite()) {
        Some(format!("bucket {b} is not finite (+Inf is always added)"))
    } else {
        buckets.windows(2).find(|w| w[0] >= w[1]).map(|w| {
            format!(
                "{} is followed by {}: buckets must strictly increase",
                w[0], w[1]
            )
        })
    };
    match reason {
        Some(reason) => Err(MetricsError::InvalidBuckets {
            metric: metric.to_owned(),
            buckets: buckets.to_vec(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label_err(names: &[&str]) -> String {
        user_label_names("m", names.iter().copied())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn hierarchy_names() {
        assert!(hierarchy_name("namespace", "my-ns.é").is_ok());
        let e = hierarchy_name("component", "").unwrap_err().to_string();
        assert!(e.contains("component") && e.contains("empty"), "{e}");
        let e = hierarchy_name("endpoint", "a\nb").unwrap_err().to_string();
        assert!(e.contains("\"a\\nb\"") && e.contains("control"), "{e}");
    }

    #[test]
    fn metric_names_error_names_the_input() {
        assert_eq!(metric_name("x-y").unwrap(), "dynamo_component_x_y");
        let e = metric_name("__").unwrap_err().to_string();
        assert!(e.contains("\"__\""), "{e}");
    }

    #[test]
    fn label_rules() {
        assert!(user_label_names("m", ["a", "_b", "c9"]).is_ok());
        assert!(label_err(&["9a"]).contains("\"9a\""));
        assert!(label_err(&["a-b"]).contains("[a-zA-Z_]"));
        assert!(label_err(&["a:b"]).contains("\"a:b\""));
        assert!(label_err(&["__x"]).contains("'__'"));
        assert!(label_err(&["le"]).contains("reserved"));
        assert!(label_err(&["quantile"]).contains("reserved"));
        assert!(label_err(&["dynamo_endpoint"]).contains("automatically"));
        assert!(label_err(&["dynamo_namespace"]).contains("automatically"));
        let e = label_err(&["x", "y", "x"]);
        assert!(e.contains("\"x\"") && e.contains("more than once"), "{e}");
        assert!(label_err(&[""]).contains("\"\""));
    }

    #[test]
    fn bucket_rules() {
        assert!(buckets("m", &[0.1, 1.0, 10.0]).is_ok());
        assert!(buckets("m", &[])
            .unwrap_err()
            .to_string()
            .contains("at least one"));
        assert!(buckets("m", &[1.0, f64::INFINITY])
            .unwrap_err()
            .to_string()
            .contains("inf is not finite"));
        assert!(buckets("m", &[f64::NAN])
            .unwrap_err()
            .to_string()
            .contains("NaN"));
        let e = buckets("m", &[1.0, 2.0, 2.0]).unwrap_err().to_string();
        assert!(e.contains("2 is followed by 2"), "{e}");
        assert!(buckets("m", &[3.0, 1.0]).is_err());
    }
}
