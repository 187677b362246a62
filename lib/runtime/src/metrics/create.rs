//! The ten `create_*` methods of the design proposal, written once.
//!
//! [`for_each_create_method!`](crate::for_each_create_method) holds the list
//! (method, returned type, the optional `label_names` and `buckets`
//! parameters, doc); [`MetricsScope`](super::MetricsScope), the
//! [`MetricsRegistry`](super::MetricsRegistry) trait and the Python `Metrics`
//! class each generate their methods from it, so the three cannot drift.
//! Every generated method builds one [`CreateArgs`] and takes the one
//! creation path, `MetricsScope::create`.

/// What one `create_*` call asks for.
#[derive(Debug, Clone)]
pub(crate) struct CreateArgs<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub const_labels: &'a [(&'a str, &'a str)],
    /// Variable label names; empty for a metric without them.
    pub label_names: &'a [&'a str],
    /// Histogram buckets; `None` for Prometheus's defaults (and for non-histograms).
    pub buckets: Option<Vec<f64>>,
}

impl<'a> CreateArgs<'a> {
    pub(crate) fn new(
        name: &'a str,
        description: &'a str,
        const_labels: &'a [(&'a str, &'a str)],
    ) -> Self {
        Self {
            name,
            description,
            const_labels,
            label_names: &[],
            buckets: None,
        }
    }

    pub(crate) fn label_names(self, label_names: &'a [&'a str]) -> Self {
        Self {
            label_names,
            ..self
        }
    }

    pub(crate) fn buckets(self, buckets: Option<Vec<f64>>) -> Self {
        Self { buckets, ..self }
    }
}

/// Calls `$callback! { ... }` with the list of the ten `create_*` methods,
/// one entry each: `method Type [label_names?] [buckets?] "doc";`. The
/// bracketed parameters are present where the method takes them, in the
/// order `name, description, [label_names,] const_labels [, buckets]`.
/// Used by the runtime and the Python bindings; not part of the API.
#[doc(hidden)]
#[macro_export]
macro_rules! for_each_create_method {
    ($callback:ident) => {
        $callback! {
            create_counter Counter [] [] "Creates (or gets) a counter with constant labels `const_labels`.";
            create_gauge Gauge [] [] "Creates (or gets) a gauge.";
            create_histogram Histogram [] [buckets] "Creates (or gets) a histogram; `None` buckets means Prometheus's defaults.";
            create_intcounter IntCounter [] [] "Creates (or gets) an integer counter.";
            create_intgauge IntGauge [] [] "Creates (or gets) an integer gauge.";
            create_countervec CounterVec [label_names] [] "Creates (or gets) a counter with variable labels `label_names` and constant labels `const_labels`.";
            create_intcountervec IntCounterVec [label_names] [] "Creates (or gets) an integer counter with variable labels.";
            create_gaugevec GaugeVec [label_names] [] "Creates (or gets) a gauge with variable labels.";
            create_intgaugevec IntGaugeVec [label_names] [] "Creates (or gets) an integer gauge with variable labels.";
            create_histogramvec HistogramVec [label_names] [buckets] "Creates (or gets) a histogram with variable labels; `None` buckets means Prometheus's defaults.";
        }
    };
}

/// The `create_*` methods of [`super::MetricsScope`].
macro_rules! scope_method {
    ($($method:ident $ty:ident [$($var:ident)?] [$($bk:ident)?] $doc:literal;)*) => {$(
        #[doc = $doc]
        #[track_caller]
        pub fn $method(
            &self,
            name: &str,
            description: &str,
            $($var: &[&str],)?
            const_labels: &[(&str, &str)],
            $($bk: Option<Vec<f64>>,)?
        ) -> Result<$ty, MetricsError> {
            self.create(
                CreateArgs::new(name, description, const_labels)
                    $(.label_names($var))?
                    $(.buckets($bk))?,
            )
        }
    )*};
}
pub(crate) use scope_method;

/// The `create_*` methods of [`super::MetricsRegistry`]: each calls the
/// [`super::MetricsScope`] method of the same name.
macro_rules! registry_trait_method {
    ($($method:ident $ty:ident [$($var:ident)?] [$($bk:ident)?] $doc:literal;)*) => {$(
        #[doc = $doc]
        #[doc = ""]
        #[doc = concat!("See [`MetricsScope::", stringify!($method), "`].")]
        #[track_caller]
        fn $method(
            &self,
            name: &str,
            description: &str,
            $($var: &[&str],)?
            const_labels: &[(&str, &str)],
            $($bk: Option<Vec<f64>>,)?
        ) -> Result<$ty, MetricsError> {
            self.metrics().$method(name, description, $($var,)? const_labels $(, $bk)?)
        }
    )*};
}
pub(crate) use registry_trait_method;
