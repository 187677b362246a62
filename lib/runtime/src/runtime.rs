//! [`DistributedRuntime`]: the root of the hierarchy. It owns the metrics
//! registry, the health state, the system status server and (when created
//! outside an async context) its own tokio runtime.

use crate::config::{RequestPlaneConfig, RuntimeConfig, SystemServerConfig};
use crate::discovery::{self, LocalRecords};
use crate::health::{Health, HealthReport};
use crate::hierarchy::Namespace;
use crate::metrics::{MetricsRegistry, MetricsScope, Registry, ScopePath};
use crate::request_plane::{LocalPlane, NatsPlane, Plane, TransportError};
use crate::scrape_targets::{self, ScrapeTarget};
use crate::system_server::{self, ServerState, SystemServer};
use crate::RuntimeError;
use crate::{DiscoveryError, RecordLease, RecordWatch};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::runtime::Handle;

/// The root of the runtime hierarchy. Cheap to clone; the last clone (including
/// those held by namespaces, components and endpoints) stops the system server
/// and the async runtime.
///
/// ```
/// use dynamo_runtime::DistributedRuntime;
/// let drt = DistributedRuntime::new()?; // reads DYN_SYSTEM_PORT / DYN_SYSTEM_HOST
/// let endpoint = drt.namespace("ns").component("comp").endpoint("generate");
/// assert_eq!(endpoint.metrics().hierarchy(), "ns_comp_generate");
/// # Ok::<(), dynamo_runtime::RuntimeError>(())
/// ```
#[derive(Clone)]
pub struct DistributedRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: MetricsScope,
    health: Arc<Health>,
    start: Instant,
    request_plane: RequestPlaneConfig,
    local_plane: Arc<LocalPlane>,
    local_records: Arc<LocalRecords>,
    nats_plane: tokio::sync::OnceCell<Arc<NatsPlane>>,
    /// The published address of the system server, for Prometheus.
    scrape_lease: parking_lot::Mutex<Option<RecordLease>>,
    advertise_host: Option<String>,
    stream_liveness: std::time::Duration,
    /// The GPU collector, once the first endpoint serves (`None`: no GPU).
    gpu: std::sync::OnceLock<Option<crate::gpu::GpuCollector>>,
    // Declared before `tokio` so that it stops before the runtime does.
    system_server: Option<SystemServer>,
    tokio: AsyncRuntime,
}

enum AsyncRuntime {
    /// Built by us because `new` was called outside any tokio runtime.
    Owned(Option<tokio::runtime::Runtime>, Handle),
    /// The tokio runtime `new` was called in.
    Borrowed(Handle),
}

impl AsyncRuntime {
    fn handle(&self) -> &Handle {
        match self {
            AsyncRuntime::Owned(_, h) | AsyncRuntime::Borrowed(h) => h,
        }
    }
}

impl Drop for AsyncRuntime {
    fn drop(&mut self) {
        if let AsyncRuntime::Owned(rt, _) = self {
            if let Some(rt) = rt.take() {
                // Dropping a runtime blocks; from an async context that panics.
                rt.shutdown_background();
            }
        }
    }
}

impl DistributedRuntime {
    /// Creates a runtime configured from the environment
    /// (`DYN_SYSTEM_PORT`, `DYN_SYSTEM_HOST`), starting the system status
    /// server when asked. Works from a plain synchronous `main` (it then runs
    /// its own tokio runtime) and from inside a tokio runtime (it uses that one).
    pub fn new() -> Result<Self, RuntimeError> {
        Self::from_config(RuntimeConfig::from_env()?)
    }

    /// Creates a runtime with an explicit configuration.
    pub fn from_config(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let start = Instant::now();
        let tokio = match Handle::try_current() {
            Ok(handle) => AsyncRuntime::Borrowed(handle),
            Err(_) => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("dynamo-runtime")
                    .build()
                    .map_err(RuntimeError::AsyncRuntime)?;
                let handle = rt.handle().clone();
                AsyncRuntime::Owned(Some(rt), handle)
            }
        };
        let series_limit = config
            .metrics_series_limit
            .unwrap_or(crate::prometheus_names::series_limit::DEFAULT);
        let registry = Arc::new(Registry::new(start, series_limit)?);
        let health = Arc::new(Health::default());
        let system_server = match &config.system_server {
            SystemServerConfig::Disabled => None,
            SystemServerConfig::Enabled { host, port } => Some(system_server::start(
                tokio.handle(),
                host,
                *port,
                ServerState {
                    registry: registry.clone(),
                    health: health.clone(),
                    start,
                },
            )?),
        };
        let drt = Self {
            inner: Arc::new(Inner {
                metrics: MetricsScope::new(registry, ScopePath::root()),
                health,
                start,
                request_plane: config.request_plane,
                local_plane: Arc::default(),
                local_records: Arc::default(),
                nats_plane: tokio::sync::OnceCell::new(),
                system_server,
                scrape_lease: parking_lot::Mutex::new(None),
                advertise_host: config.advertise_host,
                stream_liveness: config
                    .stream_liveness
                    .unwrap_or(crate::config::DEFAULT_STREAM_LIVENESS),
                gpu: std::sync::OnceLock::new(),
                tokio,
            }),
        };
        drt.publish_system_server();
        Ok(drt)
    }

    /// The scrape target of a server of this process bound to `bound`, with
    /// the configured advertise host (see [`crate::ScrapeTarget::new`]).
    pub fn scrape_target(&self, bound: SocketAddr, server: &str) -> ScrapeTarget {
        ScrapeTarget::new(bound, self.inner.advertise_host.as_deref(), server)
    }

    /// Publishes the system server's address for Prometheus, in the background
    /// (over NATS that means connecting first); the lease lives as long as the
    /// runtime. A failure is logged and retried (every 0.25 s at first, then
    /// up to every 5 s) until it succeeds or the runtime goes: the server
    /// serves meanwhile, and Prometheus finds it as soon as discovery can.
    fn publish_system_server(&self) {
        let Some(addr) = self.system_server_addr() else {
            return;
        };
        let target = self.scrape_target(addr, "system");
        let weak = Arc::downgrade(&self.inner);
        self.inner.tokio.handle().spawn(async move {
            let mut retry_in = std::time::Duration::from_millis(250);
            for attempt in 1u32.. {
                let Some(inner) = weak.upgrade() else { return };
                let drt = DistributedRuntime { inner };
                match drt.publish_scrape_target(&target).await {
                    Ok(lease) => {
                        tracing::debug!(address = %target.address, attempt, "system server published for Prometheus discovery");
                        *drt.inner.scrape_lease.lock() = Some(lease);
                        return;
                    }
                    Err(e) => tracing::warn!(
                        address = %target.address,
                        error = %e,
                        attempt,
                        retry_in = ?retry_in,
                        "could not publish the system server for Prometheus discovery; retrying"
                    ),
                }
                drop(drt); // a runtime dropped meanwhile ends the retries
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(std::time::Duration::from_secs(5));
            }
        });
    }

    /// The namespace of that name. Never fails; a bad name is reported by the
    /// first fallible call on it (or below it).
    pub fn namespace(&self, name: impl AsRef<str>) -> Namespace {
        Namespace::new(self.clone(), self.inner.metrics.child(name.as_ref()))
    }

    /// The runtime-level metrics: everything created here has no hierarchy
    /// labels, and its scrape shows every metric of the process.
    pub fn metrics(&self) -> &MetricsScope {
        &self.inner.metrics
    }

    /// The address the system status server listens on, if it runs.
    pub fn system_server_addr(&self) -> Option<SocketAddr> {
        self.inner.system_server.as_ref().map(|s| s.addr)
    }

    /// What `GET /health` answers now.
    pub fn health(&self) -> HealthReport {
        self.inner.health.report(self.uptime().as_secs_f64())
    }

    /// Marks the process as draining (on SIGTERM, say): from now on
    /// `GET /health` answers `notready` (503), so load balancers and
    /// orchestrators stop sending it work while it finishes what it has.
    pub fn start_draining(&self) {
        self.inner.health.set_draining();
    }

    /// Time since the runtime was created.
    pub fn uptime(&self) -> std::time::Duration {
        self.inner.start.elapsed()
    }

    /// Publishes `value` under `key` in `bucket` for as long as the returned
    /// lease lives. Publishing a key again from this process replaces its
    /// value; other processes' records under the same key are listed beside
    /// it. In-process by default; over NATS when `NATS_SERVER` is set, in etcd
    /// when `ETCD_ENDPOINTS` is set too.
    pub async fn register_record(
        &self,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<RecordLease, DiscoveryError> {
        discovery::register(self, bucket, key, value).await
    }

    /// The values of every live record of `bucket`, from its watched view
    /// (the first call for a bucket starts the watch and reads the bucket
    /// once; later calls never wait on the network).
    pub async fn list_records(&self, bucket: &str) -> Result<Vec<Vec<u8>>, DiscoveryError> {
        Ok(self.watch_records(bucket).await?.values())
    }

    /// The view of `bucket`, kept current in the background from now on
    /// (one per bucket and runtime; every call returns the same view).
    pub async fn watch_records(&self, bucket: &str) -> Result<RecordWatch, DiscoveryError> {
        discovery::watch(self, bucket).await
    }

    /// Starts following the live instances of every endpoint now, as the
    /// first client of the process would otherwise do (in-process there is
    /// nothing to follow). A frontend calls it before it takes traffic, so
    /// that its first requests do not wait for discovery's first read.
    pub async fn watch_instances(&self) -> Result<(), DiscoveryError> {
        let bucket = crate::request_plane::nats::instances::INSTANCE_BUCKET;
        let transport = |source| DiscoveryError::Transport {
            bucket: bucket.to_owned(),
            source,
        };
        match self.plane().await.map_err(transport)? {
            Plane::Local(_) => Ok(()),
            Plane::Nats(nats) => nats.instances.watch(&nats.records).await.map_err(transport),
        }
    }

    /// Calls of this process over NATS whose response streams are still
    /// open: 0 once every call has ended. Hidden from the docs: the leak
    /// checks of the tests read it.
    #[doc(hidden)]
    pub fn open_response_streams(&self) -> usize {
        self.inner
            .nats_plane
            .get()
            .map_or(0, |p| p.transport.open_response_streams())
    }

    /// Publishes a scrape target for as long as the returned lease lives. The
    /// runtime publishes its own system status server (`server = "system"`)
    /// when it starts one; this is for other servers of the process.
    pub async fn publish_scrape_target(
        &self,
        target: &ScrapeTarget,
    ) -> Result<RecordLease, DiscoveryError> {
        scrape_targets::publish(self, target).await
    }

    /// Every published scrape target of every live process, sorted and without
    /// duplicates. A record that does not decode is skipped with a warning.
    pub async fn scrape_targets(&self) -> Result<Vec<ScrapeTarget>, DiscoveryError> {
        scrape_targets::list(self).await
    }

    /// The request plane, connecting to NATS on first use when configured.
    pub(crate) async fn plane(&self) -> Result<Plane, TransportError> {
        match &self.inner.request_plane {
            RequestPlaneConfig::InProcess => Ok(Plane::Local(self.inner.local_plane.clone())),
            RequestPlaneConfig::Nats {
                url,
                etcd_endpoints,
            } => {
                let plane = self
                    .inner
                    .nats_plane
                    .get_or_try_init(|| {
                        NatsPlane::connect(
                            url,
                            etcd_endpoints.as_deref(),
                            self.inner.stream_liveness,
                        )
                    })
                    .await?;
                Ok(Plane::Nats(plane.clone()))
            }
        }
    }

    /// Starts the process's GPU collector on `component`'s scope, once (the
    /// first served endpoint calls it), off the async threads: NVML's
    /// initialisation blocks. Logs once what it found.
    pub(crate) fn start_gpu_metrics(&self, component: crate::Component) {
        if self.inner.gpu.get().is_some() {
            return;
        }
        let inner = self.inner.clone();
        self.tokio_handle().spawn_blocking(move || {
            inner.gpu.get_or_init(|| {
                let started = crate::gpu::enabled_by_env()
                    .and_then(|()| crate::gpu::start_nvml_collector(component.metrics()));
                match started {
                    Ok(c) => {
                        tracing::info!(
                            gpus = c.gpus(),
                            "GPU metrics from NVML (DCGM_FI_DEV_* names)"
                        );
                        Some(c)
                    }
                    Err(e) => {
                        tracing::info!(reason = %e, "no GPU metrics");
                        None
                    }
                }
            });
        });
    }

    pub(crate) fn local_records(&self) -> &Arc<LocalRecords> {
        &self.inner.local_records
    }

    pub(crate) fn health_state(&self) -> &Arc<Health> {
        &self.inner.health
    }

    /// The tokio runtime the runtime's tasks run on. From a synchronous
    /// `main`, `drt.tokio_handle().block_on(fut)` runs a future on it.
    pub fn tokio_handle(&self) -> &Handle {
        self.inner.tokio.handle()
    }
}

impl MetricsRegistry for DistributedRuntime {
    fn metrics(&self) -> &MetricsScope {
        &self.inner.metrics
    }
}

impl std::fmt::Debug for DistributedRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedRuntime")
            .field("system_server_addr", &self.system_server_addr())
            .finish()
    }
}
