"""The runtime hierarchy: ``DistributedRuntime().namespace(..).component(..).endpoint(..)``."""

from dynamo._core import (
    Client,
    Component,
    DistributedRuntime,
    Endpoint,
    Metrics,
    Namespace,
    ResponseStream,
    ServedEndpoint,
)

__all__ = [
    "Client",
    "Component",
    "DistributedRuntime",
    "Endpoint",
    "Metrics",
    "Namespace",
    "ResponseStream",
    "ServedEndpoint",
]
