//! Serving an endpoint.

use super::client::Client;
use super::endpoint_metrics::EndpointMetrics;
use super::handler::{RawHandler, Typed};
use super::nats::instances::NatsServing;
use super::{
    CallError, Context, EndpointPath, HandlerError, InstanceId, Plane, ResponseStream, ServeError,
};
use crate::{DistributedRuntime, Endpoint};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

/// Options of [`Endpoint::serve_with_options`]. Hidden from the docs: its
/// one switch exists only for the benchmark that measures what the
/// automatic metrics cost (`benches/request_plane.rs`); users serve with
/// [`Endpoint::serve`], which always records them.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Record the automatic per-endpoint metrics (default true).
    pub automatic_metrics: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
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
    let metrics = if options.automatic_metrics {
        Some(EndpointMetrics::new(endpoint.metrics())?)
    } else {
        None
    };
    let handler: Arc<dyn RawHandler> = Arc::new(Typed::new(handler));
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
    Ok(ServedEndpoint {
        drt: endpoint.drt().clone(),
        path,
        id,
        registration,
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
