#!/usr/bin/env python3
"""A toy engine in pure Python, served behind the frontend through ``dynamo.llm``.

It answers each request with tokens of its own prompt, one every ``--itl-ms``,
and keeps the engine gauges (KV-cache blocks, waiting requests) as a paged
engine would: each running request holds one block per 16 tokens of prompt
and output. A request with a negative ``temperature`` is refused with a
``ValueError``, as a real engine validates its sampling options: the client
gets an OpenAI error and the metrics count it. Its handler takes the request's
``Context`` too: the engine's own time-to-first-token histogram carries each
request's id and trace id as an exemplar (the frontend's response id, and the
``traceparent`` the client sent), and a request whose client went away stops.

    nats-server -p 4222 &
    dynamo serve --nats nats://127.0.0.1:4222 --role frontend --http 0.0.0.0:8080 &
    NATS_SERVER=nats://127.0.0.1:4222 DYN_SYSTEM_PORT=8081 python3 examples/engines/toy_engine.py --model toy
    curl localhost:8080/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"toy","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import AsyncGenerator
from typing import Any

from dynamo.llm import EngineMetrics, register_llm
from dynamo.prometheus_metrics import Histogram
from dynamo.runtime import Context, DistributedRuntime, shutdown_signal

BLOCK_SIZE = 16
TOTAL_BLOCKS = 256


class ToyEngine:
    """Generation and the bookkeeping behind the engine gauges."""

    def __init__(self, metrics: EngineMetrics, first_token: Histogram, itl: float) -> None:
        self.metrics = metrics
        self.first_token = first_token
        self.itl = itl
        self.active_blocks = 0
        self.metrics.set_kv_stats(0, TOTAL_BLOCKS)
        self.metrics.set_waiting(0)

    def _blocks(self, tokens: int) -> int:
        return math.ceil(tokens / BLOCK_SIZE)

    def _publish(self) -> None:
        self.metrics.set_kv_stats(min(self.active_blocks, TOTAL_BLOCKS), TOTAL_BLOCKS)

    async def generate(self, request: dict[str, Any], context: Context) -> AsyncGenerator[dict[str, Any], None]:
        """The handler: the preprocessed request in, token ids out."""
        arrived = time.monotonic()
        prompt: list[int] = request["token_ids"] or [0]
        stop = request.get("stop_conditions") or {}
        max_tokens = int(stop.get("max_tokens") or request.get("max_tokens") or 16)
        temperature = (request.get("sampling_options") or {}).get("temperature")
        if temperature is not None and temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        held = self._blocks(len(prompt))
        self.active_blocks += held
        self._publish()
        try:
            for i in range(max_tokens):
                if context.is_cancelled():
                    return
                await asyncio.sleep(self.itl)
                if i == 0:
                    self.first_token.observe_with_exemplar(time.monotonic() - arrived, context.exemplar())
                grown = self._blocks(len(prompt) + i + 1)
                if grown > held:
                    self.active_blocks += grown - held
                    held = grown
                    self._publish()
                last = i + 1 == max_tokens
                yield {"token_ids": [prompt[i % len(prompt)]], "finish_reason": "length" if last else None}
        finally:
            self.active_blocks -= held
            self._publish()


async def serve(model: str, itl: float) -> None:
    drt = DistributedRuntime()
    endpoint = drt.namespace("dynamo").component("toy").endpoint("generate")
    first_token = endpoint.metrics.create_histogram(
        "toy_engine_first_token_seconds",
        "Seconds from a request's arrival at the engine to its first token",
        buckets=[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0],
    )
    engine = ToyEngine(EngineMetrics(endpoint), first_token, itl)
    served = await endpoint.serve_endpoint(engine.generate)
    card = await register_llm(endpoint, model)
    print(f"toy engine serving {model!r}", flush=True)
    await shutdown_signal()
    await card.unregister()
    await served.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy", help="the model name the frontend serves it as")
    parser.add_argument("--itl-ms", type=float, default=5.0, help="milliseconds between tokens")
    args = parser.parse_args()
    asyncio.run(serve(args.model, args.itl_ms / 1000.0))


if __name__ == "__main__":
    main()
