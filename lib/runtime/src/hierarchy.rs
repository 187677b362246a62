//! `Namespace`, `Component` and `Endpoint`: the levels below the runtime.
//! Each is cheap to clone and carries its own [`MetricsScope`].

use crate::metrics::{MetricsRegistry, MetricsScope};
use crate::DistributedRuntime;

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
