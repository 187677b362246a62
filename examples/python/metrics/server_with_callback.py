#!/usr/bin/env python3
"""Metrics updated by a callback that runs before each /metrics scrape (the
developer guide's "Callback-based updates"), beside an endpoint served with
real traffic; also passes through metrics in Prometheus text from elsewhere.

    DYN_SYSTEM_PORT=8081 ./server_with_callback.py
    curl localhost:8081/metrics
"""

from __future__ import annotations

import asyncio
import time

from _common import generate, parse_args, send, setup


def main() -> None:
    args = parse_args()
    drt, endpoint = setup()
    in_flight = 0
    tokens_seen = 0

    active_connections = endpoint.metrics.create_intgauge("active_connections", "Active connections")
    tokens_total = endpoint.metrics.create_intcounter("tokens_total", "Tokens received by the client")

    def compute_current_connections() -> int:
        return in_flight

    def update_metrics() -> None:
        active_connections.set(compute_current_connections())

    endpoint.metrics.register_callback(update_metrics)

    # An engine's own metrics, passed through as they are.
    def engine_metrics() -> str:
        return (
            "# HELP engine_tokens_seen Tokens the engine produced.\n"
            "# TYPE engine_tokens_seen gauge\n"
            f'engine_tokens_seen{{engine="mock"}} {tokens_seen}\n'
        )

    endpoint.metrics.register_prometheus_expfmt_callback(engine_metrics)

    async def traffic() -> None:
        nonlocal in_flight, tokens_seen
        served = await endpoint.serve_endpoint(generate)
        client = await endpoint.client()
        await client.wait_for_instances()
        deadline = time.monotonic() + args.duration if args.duration else None
        while deadline is None or time.monotonic() < deadline:
            in_flight += 1
            n = await send(client)
            in_flight -= 1
            tokens_seen += n
            tokens_total.inc_by(n)
            await asyncio.sleep(0.1)
        await served.stop()

    try:
        asyncio.run(traffic())
    except KeyboardInterrupt:
        pass
    print(f"done: {tokens_total.get()} tokens", flush=True)
    del drt


if __name__ == "__main__":
    main()
