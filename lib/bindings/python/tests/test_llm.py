"""`dynamo.llm` in one process: a model registered from Python is served by an
engine written in Python (the frontend side is tested over NATS in
lib/llm/tests/python/test_python_engine.py); bad input is a ValueError that
names it; the engine gauges carry the endpoint's labels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from conftest import EP, scrape

from dynamo.llm import EngineMetrics, register_llm
from dynamo.runtime import DistributedRuntime


async def engine(request: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
    for i in range(request["max_tokens"]):
        yield {"token_ids": [request["token_ids"][i % len(request["token_ids"])]], "finish_reason": None}


def test_register_llm_and_serve_in_one_process(drt: DistributedRuntime) -> None:
    endpoint = drt.namespace("ns").component("comp").endpoint("ep")

    async def main() -> None:
        served = await endpoint.serve_endpoint(engine)
        card = await register_llm(endpoint, "py-model")
        assert card.model == "py-model" and repr(card) == "RegisteredModel('py-model')"
        client = await endpoint.client()
        await client.wait_for_instances()
        out = [x async for x in await client.round_robin({"token_ids": [5, 6], "max_tokens": 3})]
        assert out == [{"token_ids": [5], "finish_reason": None}, {"token_ids": [6], "finish_reason": None}, {"token_ids": [5], "finish_reason": None}]
        await card.unregister()
        await card.unregister()  # a second time does nothing
        await served.stop()

    asyncio.run(main())


def test_bad_model_names_and_endpoints_are_value_errors(drt: DistributedRuntime) -> None:
    async def main() -> None:
        ok = drt.namespace("ns").component("comp").endpoint("ep")
        for bad in ["", "x" * 300, "bad\nname"]:
            with pytest.raises(ValueError, match="invalid model name"):
                await register_llm(ok, bad)
        with pytest.raises(ValueError, match="namespace"):
            await register_llm(drt.namespace("").component("c").endpoint("e"), "m")

    asyncio.run(main())


def test_engine_metrics_set_the_kvstats_gauges(drt: DistributedRuntime) -> None:
    endpoint = drt.namespace("ns").component("comp").endpoint("ep")
    m = EngineMetrics(endpoint)
    m.set_kv_stats(active_blocks=30, total_blocks=120, prefix_cache_hit_rate=0.25)
    m.set_waiting(4)
    s = scrape(drt)
    assert s.value("dynamo_component_kvstats_active_blocks", **EP) == 30
    assert s.value("dynamo_component_kvstats_total_blocks", **EP) == 120
    assert s.value("dynamo_component_kvstats_gpu_cache_usage_percent", **EP) == 0.25
    assert s.value("dynamo_component_kvstats_gpu_prefix_cache_hit_rate", **EP) == 0.25
    assert s.value("dynamo_component_num_requests_waiting", **EP) == 4
    assert s.types["dynamo_component_kvstats_active_blocks"] == "gauge"
    with pytest.raises(ValueError, match="active_blocks 5 is more than total_blocks 4"):
        m.set_kv_stats(5, 4)
    with pytest.raises(ValueError, match="prefix_cache_hit_rate must be from 0 to 1, got 1.5"):
        m.set_kv_stats(1, 4, 1.5)
    with pytest.raises(OverflowError):
        m.set_waiting(-1)
