#!/usr/bin/env python3
"""Metrics updated from a background thread (the developer guide's
"Background thread updates"), beside an endpoint served with real traffic.

    DYN_SYSTEM_PORT=8081 ./server_with_loop.py
    curl localhost:8081/metrics
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

from _common import generate, parse_args, send, setup


def main() -> None:
    args = parse_args()
    drt, endpoint = setup()

    # Not "requests_total": the served endpoint records dynamo_component_requests_total itself.
    requests_sent = endpoint.metrics.create_intcounter("requests_sent_total", "Requests this example sent to its endpoint")
    active_connections = endpoint.metrics.create_intgauge("active_connections", "Active connections")
    latency = endpoint.metrics.create_histogram("latency_seconds", "Request latency", buckets=[0.001, 0.01, 0.1, 1.0, 10.0])
    requests_by_model = endpoint.metrics.create_intcountervec("requests_by_model", "Requests by model", ["model_type", "model_size"])
    memory_by_gpu = endpoint.metrics.create_intgaugevec("gpu_memory_bytes", "GPU memory by device", ["gpu_id", "memory_type"])

    def compute_current_connections() -> int:
        return random.randint(0, 64)

    def update_loop() -> None:
        while True:
            active_connections.set(compute_current_connections())
            memory_by_gpu.set(random.randint(4, 16) * 1024, {"gpu_id": "0", "memory_type": "allocated"})
            time.sleep(2)

    threading.Thread(target=update_loop, daemon=True).start()

    async def traffic() -> None:
        served = await endpoint.serve_endpoint(generate)
        client = await endpoint.client()
        await client.wait_for_instances()
        deadline = time.monotonic() + args.duration if args.duration else None
        while deadline is None or time.monotonic() < deadline:
            start = time.perf_counter()
            await send(client)
            latency.observe(time.perf_counter() - start)
            requests_sent.inc()
            requests_by_model.inc({"model_type": "llama", "model_size": random.choice(["7b", "70b"])})
            await asyncio.sleep(0.1)
        await served.stop()

    try:
        asyncio.run(traffic())
    except KeyboardInterrupt:
        pass
    print(f"done: {requests_sent.get()} requests", flush=True)
    del drt


if __name__ == "__main__":
    main()
