//! `Namespace`, `Component` and `Endpoint`: the levels below the runtime.
//! Each is cheap to clone and carries its own [`MetricsScope`].

use crate::metrics::{MetricsRegistry, MetricsScope};
use crate::request_plane::serve;
use crate::request_plane::{
    CallError, Client, Context, HandlerError, ResponseStream, ServeError, ServeOptions,
    ServedEndpoint,
};
use crate::DistributedRuntime;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;

macro_rules! level {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            drt: DistributedRuntime,
            metrics: MetricsScope,
        }

        impl $name {
            pub(crate) fn new(drt: DistributedRuntime, metrics: MetricsScope) -> Self {
                Self { drt, metrics }
            }

            /// The name as given.
            pub fn name(&self) -> String {
                self.metrics.basename()
            }

            /// This object's metrics: create metrics that carry its hierarchy
            /// labels, register callbacks, render its subtree.
            pub fn metrics(&self) -> &MetricsScope {
                &self.metrics
            }

            /// The runtime this object belongs to.
            pub fn drt(&self) -> &DistributedRuntime {
                &self.drt
            }
        }

        impl MetricsRegistry for $name {
            fn metrics(&self) -> &MetricsScope {
                &self.metrics
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.metrics.path())
            }
        }
    };
}

level!(
    /// A namespace: a group of components, usually one model or deployment.
    Namespace
);
level!(
    /// A component of a namespace: one kind of worker (a backend, a router...).
    Component
);
level!(
    /// An endpoint of a component: one operation it serves (`generate`...).
    Endpoint
);

impl Namespace {
    /// The component of that name in this namespace.
    pub fn component(&self, name: impl AsRef<str>) -> Component {
        Component::new(self.drt.clone(), self.metrics.child(name.as_ref()))
    }
}

impl Component {
    /// The endpoint of that name of this component.
    pub fn endpoint(&self, name: impl AsRef<str>) -> Endpoint {
        Endpoint::new(self.drt.clone(), self.metrics.child(name.as_ref()))
    }
}

impl Endpoint {
    /// The names of its namespace, its component and itself, checked: an
    /// error names the first that is not usable.
    ///
    /// ```
    /// let drt = dynamo_runtime::DistributedRuntime::from_config(Default::default())?;
    /// let ep = drt.namespace("dynamo").component("backend").endpoint("generate");
    /// assert_eq!(ep.names()?, ["dynamo", "backend", "generate"]);
    /// assert!(drt.namespace("").component("c").endpoint("e").names().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn names(&self) -> Result<[String; 3], crate::MetricsError> {
        let p = serve::path(self)?;
        Ok([p.namespace, p.component, p.endpoint])
    }

    /// Serves this endpoint with `handler`, which takes a request (decoded
    /// from JSON) and returns a stream of responses. Requests are counted in
    /// the endpoint's automatic metrics; `/health` lists the endpoint as ready.
    pub async fn serve<Req, Resp, F, Fut>(&self, handler: F) -> Result<ServedEndpoint, ServeError>
    where
        F: Fn(Req, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ResponseStream<Resp>, HandlerError>> + Send + 'static,
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
    {
        serve::serve(self, handler, ServeOptions::default()).await
    }

    /// [`Endpoint::serve`] with options: a health check (a canary request
    /// through the handler that `/health` follows).
    pub async fn serve_with_options<Req, Resp, F, Fut>(
        &self,
        handler: F,
        options: ServeOptions,
    ) -> Result<ServedEndpoint, ServeError>
    where
        F: Fn(Req, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ResponseStream<Resp>, HandlerError>> + Send + 'static,
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
    {
        serve::serve(self, handler, options).await
    }

    /// A client of this endpoint, with instance discovery running.
    pub async fn client<Req, Resp>(&self) -> Result<Client<Req, Resp>, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned + Send + 'static,
    {
        serve::client(self).await
    }
}
