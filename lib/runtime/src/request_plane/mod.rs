//! The request plane: endpoints serve typed requests with streamed responses,
//! and clients call them, in one process or across processes over NATS. Every
//! request is counted in the endpoint's automatic metrics
//! (`dynamo_component_requests_total` and the rest; see `prometheus_names::work_handler`).
//!
//! ```
//! use dynamo_runtime::{DistributedRuntime, request_plane::{single, Context}};
//!
//! # let rt = tokio::runtime::Runtime::new()?;
//! # rt.block_on(async {
//! let drt = DistributedRuntime::new()?;
//! let endpoint = drt.namespace("ns").component("echo").endpoint("generate");
//! let served = endpoint
//!     .serve(|text: String, _ctx: Context| async move { Ok(single(text.to_uppercase())) })
//!     .await?;
//! let client = endpoint.client::<String, String>().await?;
//! let reply = client.round_robin("hi".to_owned()).await?.collect_all().await?;
//! assert_eq!(reply, vec!["HI".to_owned()]);
//! served.stop().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod driver;
mod endpoint_metrics;
mod handler;
mod health_check;
mod local;
pub(crate) mod nats;
pub(crate) mod serve;

pub use client::{Client, ResponseReceiver};
pub use health_check::HealthCheck;
pub use serve::{ServeOptions, ServedEndpoint};

pub(crate) use local::LocalPlane;
pub(crate) use nats::NatsPlane;

pub use crate::trace::{RequestMeta, TraceParent};
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The error a handler returns: anything that converts into a boxed error.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A handler's response stream. An `Err` item ends the request as failed.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, HandlerError>> + Send>>;

/// A stream of one response, for unary endpoints.
pub fn single<T: Send + 'static>(value: T) -> ResponseStream<T> {
    Box::pin(futures::stream::once(async move { Ok(value) }))
}

/// A stream of the given responses.
pub fn from_iter<T, I>(values: I) -> ResponseStream<T>
where
    T: Send + 'static,
    I: IntoIterator<Item = T>,
    I::IntoIter: Send + 'static,
{
    Box::pin(futures::stream::iter(values.into_iter().map(Ok)))
}

/// An instance of a served endpoint: unique within its endpoint.
pub type InstanceId = u64;

/// Per-request context given to a handler.
#[derive(Clone, Debug)]
pub struct Context {
    meta: Arc<RequestMeta>,
    cancel: CancellationToken,
}

impl Context {
    /// The context of a request the caller sent with `meta`; `plane_id` is
    /// its id when the caller gave none.
    pub(crate) fn new(plane_id: String, meta: RequestMeta, cancel: CancellationToken) -> Self {
        Self {
            meta: Arc::new(meta.or_request_id(plane_id)),
            cancel,
        }
    }

    /// The request's id: the caller's (the frontend's response id), or one
    /// the request plane gave it.
    pub fn id(&self) -> &str {
        self.meta.request_id().unwrap_or_default()
    }

    /// The W3C trace id, when the caller sent a trace context.
    pub fn trace_id(&self) -> Option<&str> {
        self.meta.trace_id()
    }

    /// The request's id and trace context.
    pub fn meta(&self) -> &RequestMeta {
        &self.meta
    }

    pub(crate) fn shared_meta(&self) -> Arc<RequestMeta> {
        self.meta.clone()
    }

    /// True once the caller has cancelled the request (dropped its stream).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the caller cancels the request.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// The transport of one runtime.
#[derive(Clone)]
pub(crate) enum Plane {
    Local(Arc<LocalPlane>),
    Nats(Arc<NatsPlane>),
}

/// Where an endpoint lives: its three names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct EndpointPath {
    pub namespace: String,
    pub component: String,
    pub endpoint: String,
}

impl std::fmt::Display for EndpointPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.component, self.endpoint)
    }
}

/// An error from serving an endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The endpoint's name is not usable, or its automatic metrics conflict
    /// with metrics registered earlier under the same names.
    #[error("cannot serve: {0}")]
    Metrics(#[from] crate::MetricsError),
    /// The transport refused.
    #[error("cannot serve {endpoint}: {source}")]
    Transport {
        /// `namespace/component/endpoint`.
        endpoint: String,
        /// What failed.
        #[source]
        source: TransportError,
    },
}

/// An error of the transport (NATS, etcd) under the request plane and discovery.
/// Each names what it was doing, with the client library's error as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The NATS server could not be reached.
    #[error("cannot connect to NATS at {url:?}: {source}")]
    Connect {
        /// The URL given (`NATS_SERVER`).
        url: String,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// etcd (`ETCD_ENDPOINTS`) did not answer or refused a request.
    #[error("etcd at {endpoints}: cannot {what}: {source}")]
    Etcd {
        /// What was asked of it.
        what: &'static str,
        /// The endpoints given.
        endpoints: String,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// A subscription could not be made.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// A message could not be published.
    #[error("cannot publish to {subject}: {source}")]
    Publish {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::PublishError,
    },
    /// An instance sent nothing back within the liveness deadline: it died
    /// as the request reached it (nothing ran), so the call may go elsewhere.
    #[error("request to {subject} was not accepted within {waited:?}")]
    NotAccepted {
        /// The instance's request subject.
        subject: String,
        /// How long the caller waited.
        waited: std::time::Duration,
    },
    /// Something to send could not be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What it was.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A response stream ended without its end frame (the server or the
    /// connection went away).
    #[error("the response stream ended without its end")]
    StreamCut,
    /// The instance serving a request sent nothing, not even its heartbeat,
    /// for this long: it died, or it or the connection to it stopped.
    #[error("the instance serving the request sent nothing for {silent:?}: it is gone")]
    WorkerLost {
        /// How long it was silent.
        silent: std::time::Duration,
    },
}

/// An error from calling an endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The endpoint's name is not usable.
    #[error("cannot call: {0}")]
    Metrics(#[from] crate::MetricsError),
    /// No instance of the endpoint is serving.
    #[error("no instance of {endpoint} is serving")]
    NoInstances {
        /// `namespace/component/endpoint`.
        endpoint: String,
    },
    /// The chosen instance is not (or no longer) serving.
    #[error("instance {instance:x} of {endpoint} is not serving")]
    InstanceNotFound {
        /// `namespace/component/endpoint`.
        endpoint: String,
        /// The instance asked for.
        instance: InstanceId,
    },
    /// The request is larger than the transport carries (over NATS: the
    /// server's `max_payload`, less room for headers). Nothing was sent.
    #[error(
        "request to {endpoint} is {bytes} bytes, more than the {limit} bytes the transport carries"
    )]
    RequestTooLarge {
        /// `namespace/component/endpoint`.
        endpoint: String,
        /// The serialized request's size.
        bytes: usize,
        /// The largest request the transport carries.
        limit: usize,
    },
    /// The request does not serialize.
    #[error("request to {endpoint} does not serialize: {source}")]
    RequestEncoding {
        /// `namespace/component/endpoint`.
        endpoint: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A response item does not deserialize into the response type.
    #[error("response from {endpoint} does not deserialize: {source}")]
    ResponseDecoding {
        /// `namespace/component/endpoint`.
        endpoint: String,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The server failed the request.
    #[error("{endpoint} failed the request ({error_type}): {message}")]
    Remote {
        /// `namespace/component/endpoint`.
        endpoint: String,
        /// One of `prometheus_names::work_handler::error_type`.
        error_type: String,
        /// The server's message.
        message: String,
    },
    /// The transport failed.
    #[error("transport error calling {endpoint}: {source}")]
    Transport {
        /// `namespace/component/endpoint`.
        endpoint: String,
        /// What failed.
        #[source]
        source: TransportError,
    },
    /// Waiting for instances timed out.
    #[error("no instance of {endpoint} appeared within {waited:?}")]
    Timeout {
        /// `namespace/component/endpoint`.
        endpoint: String,
        /// How long it waited.
        waited: std::time::Duration,
    },
}
