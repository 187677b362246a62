//! Typed errors of the runtime. Every message names the value that was wrong.

use std::io;

/// An error from creating or registering a metric, or from a hierarchy object
/// whose name is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A namespace, component or endpoint name is empty or holds control characters.
    #[error("invalid {level} name {name:?}: {reason}")]
    InvalidHierarchyName {
        /// `namespace`, `component` or `endpoint`.
        level: &'static str,
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A metric name that is empty (or all underscores) after sanitizing.
    #[error("invalid metric name {name:?}: {reason}")]
    InvalidMetricName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The help text is empty.
    #[error("metric {metric:?}: help text must not be empty")]
    EmptyHelp {
        /// The exposed metric name.
        metric: String,
    },
    /// A user label name that Prometheus or the hierarchy does not allow.
    #[error("metric {metric:?}: invalid label name {label:?}: {reason}")]
    InvalidLabelName {
        /// The exposed metric name.
        metric: String,
        /// The label name as given.
        label: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Histogram buckets that are empty, not finite or not strictly increasing.
    #[error("metric {metric:?}: invalid histogram buckets {buckets:?}: {reason}")]
    InvalidBuckets {
        /// The exposed metric name.
        metric: String,
        /// The buckets as given.
        buckets: Vec<f64>,
        /// Why they were rejected.
        reason: String,
    },
    /// Exemplar labels that are not valid or too long.
    #[error("invalid exemplar: {reason}")]
    InvalidExemplar {
        /// What is wrong, naming the label or the length.
        reason: String,
    },
    /// Label values that do not fit a vec's variable labels.
    #[error("metric {metric:?}: {reason}")]
    LabelValues {
        /// The exposed metric name.
        metric: String,
        /// What was expected and what was given.
        reason: String,
    },
    /// A series limit that is not at least 1.
    #[error("metric {metric:?}: invalid series limit {limit}: at least 1 series")]
    InvalidSeriesLimit {
        /// The exposed metric name.
        metric: String,
        /// The limit given.
        limit: usize,
    },
    /// A creation that disagrees with an earlier one of the same family.
    #[error(
        "metric family {family:?} conflicts with an earlier registration: {difference}; \
         first created at {first_created_at}"
    )]
    Conflict {
        /// The exposed family name.
        family: String,
        /// What differs between the two creations.
        difference: String,
        /// Where the earlier one was created (hierarchy object and source location).
        first_created_at: String,
    },
    /// The `prometheus` crate refused the metric (should not happen after our checks).
    #[error("metric {metric:?}: {source}")]
    Prometheus {
        /// The exposed metric name.
        metric: String,
        /// The crate's error.
        #[source]
        source: prometheus::Error,
    },
}

/// An error from starting the runtime or its system status server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// An environment variable holds a value the runtime cannot use.
    #[error("invalid {var}={value:?}: {reason}")]
    InvalidEnv {
        /// The variable's name.
        var: &'static str,
        /// The value found.
        value: String,
        /// What is expected instead.
        reason: &'static str,
    },
    /// The system status server could not listen on its address.
    #[error("cannot start the system status server on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The runtime's built-in metrics could not be registered.
    #[error("cannot register the runtime's built-in metrics: {0}")]
    Metrics(#[from] MetricsError),
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    AsyncRuntime(#[source] io::Error),
}
