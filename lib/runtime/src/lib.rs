//! # dynamo-runtime
//!
//! The runtime hierarchy of a distributed LLM-serving runtime
//! (`DistributedRuntime -> Namespace -> Component -> Endpoint`), the metrics
//! registry on every level of it, and the system status server that serves
//! `/metrics`, `/health` and `/live` in every process.
//!
//! ```
//! use dynamo_runtime::DistributedRuntime;
//!
//! let runtime = DistributedRuntime::new()?;
//! let endpoint = runtime.namespace("my_namespace").component("my_component").endpoint("my_endpoint");
//! let requests_total = endpoint.metrics().create_counter("requests_total", "Total requests", &[])?;
//! requests_total.inc();
//! assert_eq!(requests_total.get(), 1.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod config;
mod discovery;
mod error;
pub mod gpu;
mod health;
mod hierarchy;
pub mod http_server;
pub mod logging;
mod metrics;
pub mod metrics_http;
mod prehashed;
pub mod request_plane;
mod runtime;
mod scrape_targets;
mod system_server;
mod trace;

pub use config::{
    parse_etcd_endpoints, RequestPlaneConfig, RuntimeConfig, SystemServerConfig,
    DEFAULT_STREAM_LIVENESS, DEFAULT_SYSTEM_HOST, ENV_ETCD_ENDPOINTS, ENV_METRICS_SERIES_LIMIT,
    ENV_NATS_SERVER, ENV_STREAM_LIVENESS_MS, ENV_SYSTEM_ADVERTISE_HOST, ENV_SYSTEM_HOST,
    ENV_SYSTEM_PORT,
};
pub use discovery::{
    DiscoveryError, RecordLease, RecordWatch, ANNOUNCE_EVERY, ETCD_LEASE_TTL, RECORD_GATHER,
    RECORD_LEASE,
};
pub use error::{MetricsError, RuntimeError};
pub use health::{HealthReport, HealthStatus};
pub use hierarchy::{Component, Endpoint, Namespace};
pub use metrics::{
    exposition, native, prometheus_names, CallbackError, CounterVec, Exemplar, ExpositionFormat,
    GaugeVec, Histogram, HistogramVec, IntCounterVec, IntGaugeVec, LocalHistogram, MetricVec,
    MetricsRegistry, MetricsScope, VecChild, EXEMPLAR_MAX_CHARS,
};
pub use runtime::DistributedRuntime;
pub use scrape_targets::{ScrapeTarget, SCRAPE_TARGETS_BUCKET};
pub use system_server::METRICS_CONTENT_TYPE;
pub use trace::{RequestMeta, TraceParent, MAX_REQUEST_ID_BYTES};

// The guides' code blocks are doctests, so the guides stay runnable.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/metrics.md")]
mod metrics_guide {}
#[cfg(doctest)]
#[doc = include_str!("../../../docs/request-plane.md")]
mod request_plane_guide {}

/// The `prometheus` crate, whose metric types the `create_*` methods return.
pub use prometheus;
