//! Serving an endpoint.

use super::client::Client;
use super::endpoint_metrics::EndpointMetrics;
use super::handler::{RawHandler, Typed};
use super::health_check::{self, HealthCheck};
use super::nats::instances::NatsServing;
use super::{
    CallError, Context, EndpointPath, HandlerError, InstanceId, Plane, ResponseStream, ServeError,
};
use crate::{DistributedRuntime, Endpoint};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Options of [`Endpoint::serve_with_options`].
///
/// ```
/// use dynamo_runtime::request_plane::{HealthCheck, ServeOptions};
/// let options = ServeOptions {
///     health_check: Some(HealthCheck::new(serde_json::json!("ping"))),
///     ..Default::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A canary request sent through the handler every so often; while it
    /// fails, `/health` lists the endpoint as `notready`. Default none.
    pub health_check: Option<HealthCheck>,
    /// Record the automatic per-endpoint metrics (default true). Hidden from
    /// the docs: turning them off exists only for the benchmark that
    /// measures what they cost (`benches/request_plane.rs`).
    #[doc(hidden)]
    pub automatic_metrics: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            health_check: None,
            automatic_metrics: true,
        }
    }
}

enum Registration {
    Local(Arc<super::LocalPlane>),
    Nats(Box<NatsServing>),
}

/// One serving instance of an endpoint. It serves until [`ServedEndpoint::stop`]
/// (or until the runtime's process ends); dropping the handle does not stop it.
pub struct ServedEndpoint {
    drt: DistributedRuntime,
    path: EndpointPath,
    id: InstanceId,
    registration: Registration,
    /// Stops the health check's canaries, if any run.
    checks: CancellationToken,
}

impl std::fmt::Debug for ServedEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedEndpoint")
            .field("endpoint", &self.path.to_string())
            .field("instance", &format_args!("{:016x}", self.id))
            .finish()
    }
}

impl ServedEndpoint {
    /// This instance's id.
    pub fn instance_id(&self) -> InstanceId {
        self.id
    }

    /// Drains this instance: it leaves discovery and takes no new request,
    /// then waits up to `timeout` for the requests it is working on to
    /// finish. Returns how many were still running when it gave up (0 when
    /// drained). In one process (the in-process plane) requests are the
    /// callers' own tasks: there is nothing to wait for here.
    pub async fn drain(self, timeout: std::time::Duration) -> usize {
        self.checks.cancel();
        let left = match self.registration {
            Registration::Local(local) => {
                local.unregister(&self.path, self.id);
                0
            }
            Registration::Nats(serving) => serving.drain(timeout).await,
        };
        self.drt
            .health_state()
            .remove_instance(&self.path.to_string());
        left
    }

    /// Stops serving: new requests no longer reach this instance; requests
    /// already running finish.
    pub async fn stop(self) {
        self.checks.cancel();
        match self.registration {
            Registration::Local(local) => local.unregister(&self.path, self.id),
            Registration::Nats(serving) => serving.stop().await,
        }
        self.drt
            .health_state()
            .remove_instance(&self.path.to_string());
    }
}

/// The endpoint's three names; an error if one is unusable.
pub(crate) fn path(endpoint: &Endpoint) -> Result<EndpointPath, crate::MetricsError> {
    let scope = endpoint.metrics().path();
    scope.validate()?;
    match scope.names() {
        [ns, comp, ep] => Ok(EndpointPath {
            namespace: ns.clone(),
            component: comp.clone(),
            endpoint: ep.clone(),
        }),
        _ => Err(crate::MetricsError::InvalidHierarchyName {
            level: "endpoint",
            name: scope.to_string(),
            reason: "an endpoint needs a namespace, a component and an endpoint name",
        }),
    }
}

/// Serves `endpoint` with `handler` (see [`Endpoint::serve`]).
pub(crate) async fn serve<Req, Resp, F, Fut>(
    endpoint: &Endpoint,
    handler: F,
    options: ServeOptions,
) -> Result<ServedEndpoint, ServeError>
where
    F: Fn(Req, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ResponseStream<Resp>, HandlerError>> + Send + 'static,
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let path = path(endpoint)?;
    endpoint.drt().start_gpu_metrics(
        endpoint
            .drt()
            .namespace(&path.namespace)
            .component(&path.component),
    );
    let metrics = if options.automatic_metrics {
        Some(EndpointMetrics::new(endpoint.metrics())?)
    } else {
        None
    };
    let handler: Arc<dyn RawHandler> = Arc::new(Typed::new(handler));
    let canary_handler = handler.clone();
    let id: InstanceId = fastrand::u64(..);
    let plane = endpoint
        .drt()
        .plane()
        .await
        .map_err(|source| ServeError::Transport {
            endpoint: path.to_string(),
            source,
        })?;
    let registration = match plane {
        Plane::Local(local) => {
            local.register(&path, id, handler, metrics);
            Registration::Local(local)
        }
        Plane::Nats(nats) => Registration::Nats(Box::new(
            nats.serve(
                &path,
                id,
                handler,
                metrics,
                endpoint.drt().system_server_addr(),
            )
            .await
            .map_err(|source| ServeError::Transport {
                endpoint: path.to_string(),
                source,
            })?,
        )),
    };
    endpoint.drt().health_state().add_instance(path.to_string());
    tracing::info!(endpoint = %path, instance = format!("{id:016x}"), "serving");
    let checks = CancellationToken::new();
    if let Some(check) = options.health_check {
        tokio::spawn(health_check::run(
            check,
            canary_handler,
            endpoint.drt().health_state().clone(),
            path.to_string(),
            checks.clone(),
        ));
    }
    Ok(ServedEndpoint {
        drt: endpoint.drt().clone(),
        path,
        id,
        registration,
        checks,
    })
}

/// A client of `endpoint` (see [`Endpoint::client`]).
pub(crate) async fn client<Req, Resp>(endpoint: &Endpoint) -> Result<Client<Req, Resp>, CallError>
where
    Req: Serialize,
    Resp: DeserializeOwned + Send + 'static,
{
    let path = path(endpoint)?;
    let plane = endpoint
        .drt()
        .plane()
        .await
        .map_err(|source| CallError::Transport {
            endpoint: path.to_string(),
            source,
        })?;
    Client::new(path, plane).await
}
