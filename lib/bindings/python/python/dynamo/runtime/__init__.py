"""The runtime hierarchy: ``DistributedRuntime().namespace(..).component(..).endpoint(..)``."""

import asyncio
import signal

from dynamo._core import (
    Client,
    Component,
    Context,
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
    "Context",
    "DistributedRuntime",
    "Endpoint",
    "Metrics",
    "Namespace",
    "ResponseStream",
    "ServedEndpoint",
    "shutdown_signal",
]


async def shutdown_signal() -> None:
    """Returns once the process receives SIGTERM or SIGINT, so that a worker
    can leave gracefully: unregister its model, stop serving, return.

    Call it from the running event loop's thread (asyncio's signal handlers
    work only there); the handlers are removed again when it returns.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
