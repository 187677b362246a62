"""What both metrics examples share: a served endpoint with real traffic."""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import AsyncGenerator
from typing import Any

from dynamo.runtime import Client, DistributedRuntime, Endpoint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until Ctrl-C)")
    return parser.parse_args()


async def generate(request: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
    """A mock engine: streams `max_tokens` tokens of the prompt."""
    words = str(request.get("prompt", "")).split() or ["token"]
    for i in range(int(request.get("max_tokens", 4))):
        await asyncio.sleep(0.002)
        yield {"index": i, "text": words[i % len(words)]}


def setup() -> tuple[DistributedRuntime, Endpoint]:
    drt = DistributedRuntime()
    endpoint = drt.namespace("my_namespace").component("my_component").endpoint("my_endpoint")
    address = drt.system_server_address()
    print(f"metrics on http://{address}/metrics" if address else "DYN_SYSTEM_PORT is not set: metrics are not served", flush=True)
    return drt, endpoint


async def send(client: Client) -> int:
    """One request; returns how many tokens came back."""
    stream = await client.round_robin({"prompt": "the quick brown fox", "max_tokens": random.randint(2, 12)})
    return len([token async for token in stream])
