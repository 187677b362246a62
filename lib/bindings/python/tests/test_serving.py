"""A Python async-generator handler served through the runtime: the
automatic endpoint metrics apply exactly as in Rust."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from conftest import scrape
from dynamo.runtime import Context, DistributedRuntime

LABELS = {"dynamo_namespace": "py", "dynamo_component": "worker", "dynamo_endpoint": "generate"}
DURATION_COUNT = "dynamo_component_request_duration_seconds_count"


async def generate(request: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
    if request.get("fail"):
        raise RuntimeError("engine refused")
    for i in range(request["n"]):
        if request.get("slow"):
            await asyncio.sleep(0.01)
        yield {"i": i, "text": request["prompt"].upper()}


async def settle(drt: DistributedRuntime, count: int) -> Any:
    for _ in range(300):
        s = scrape(drt)
        if s.value("dynamo_component_concurrent_requests", **LABELS) == 0 and (s.value(DURATION_COUNT, **LABELS) or 0) >= count:
            return s
        await asyncio.sleep(0.01)
    raise AssertionError("requests did not settle")


def test_served_endpoint_counts_requests(drt: DistributedRuntime) -> None:
    async def main() -> None:
        endpoint = drt.namespace("py").component("worker").endpoint("generate")
        served = await endpoint.serve_endpoint(generate)
        client = await endpoint.client()
        ids = await client.wait_for_instances(5.0)
        assert ids == [served.instance_id()]

        items = [item async for item in await client.round_robin({"prompt": "hi", "n": 3})]
        assert items == [{"i": 0, "text": "HI"}, {"i": 1, "text": "HI"}, {"i": 2, "text": "HI"}]
        unary = [item async for item in await client.generate({"prompt": "x", "n": 1})]
        assert unary == [{"i": 0, "text": "X"}]

        with pytest.raises(RuntimeError, match="engine refused"):
            async for _ in await client.random({"prompt": "x", "n": 1, "fail": True}):
                pass

        # Cancel mid-stream: read two of many items, then drop the stream.
        stream = await client.direct({"prompt": "x", "n": 1000, "slow": True}, served.instance_id())
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 2:
                break
        del stream
        gc.collect()

        s = await settle(drt, 4)
        assert s.value("dynamo_component_requests_total", **LABELS) == 4
        assert s.value(DURATION_COUNT, **LABELS) == 4
        assert s.value("dynamo_component_errors_total", error_type="handler", **LABELS) == 1
        assert s.value("dynamo_component_errors_total", error_type="cancelled", **LABELS) == 1
        assert s.value("dynamo_component_errors_total", error_type="panic", **LABELS) == 0
        assert (s.value("dynamo_component_response_bytes_total", **LABELS) or 0) > 0
        assert (s.value("dynamo_component_request_bytes_total", **LABELS) or 0) > 0

        await served.stop()
        with pytest.raises(RuntimeError, match="no instance"):
            await client.round_robin({"prompt": "x", "n": 1})

    asyncio.run(main())


def test_handler_must_be_an_async_generator(drt: DistributedRuntime) -> None:
    def not_a_generator(request: Any) -> int:
        return 1

    async def main() -> None:
        endpoint = drt.namespace("py").component("worker").endpoint("generate")
        await endpoint.serve_endpoint(not_a_generator)  # type: ignore[arg-type]
        client = await endpoint.client()
        with pytest.raises(RuntimeError, match="async generator"):
            async for _ in await client.round_robin({}):
                pass
        s = await settle(drt, 1)
        assert s.value("dynamo_component_errors_total", error_type="handler", **LABELS) == 1

    asyncio.run(main())


@pytest.mark.parametrize("user_first", [True, False])
@pytest.mark.parametrize("kind", ["create_intcounter", "create_counter"])
def test_guide_requests_total_is_the_automatic_series_in_either_order(
    drt: DistributedRuntime, capfd: pytest.CaptureFixture[str], user_first: bool, kind: str
) -> None:
    """The developer guide's `requests_total` on an endpoint that also serves
    is the runtime's own series: no error in either order, one series, a
    warning once."""

    async def main() -> None:
        endpoint = drt.namespace("py").component("worker").endpoint("generate")
        create = getattr(endpoint.metrics, kind)
        user = create("requests_total", "Total requests") if user_first else None
        served = await endpoint.serve_endpoint(generate)
        if user is None:
            user = create("requests_total", "Total requests")
        client = await endpoint.client()
        await client.wait_for_instances(5.0)
        for _ in range(2):
            _ = [item async for item in await client.round_robin({"prompt": "x", "n": 1})]
        user.inc()
        s = await settle(drt, 2)
        assert s.value("dynamo_component_requests_total", **LABELS) == 3
        text = endpoint.metrics.prometheus_metrics_fmt()
        series = [line for line in text.splitlines() if line.startswith("dynamo_component_requests_total{")]
        assert len(series) == 1, text
        await served.stop()

    asyncio.run(main())
    assert capfd.readouterr().err.count("the runtime already counts this metric") == 1


def test_health_check_canary_drives_readiness(drt: DistributedRuntime) -> None:
    """A canary through the Python handler: /health says notready while it
    raises, ready again once it answers."""
    import json
    import urllib.error
    import urllib.request

    healthy = {"now": True}

    async def handler(request: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        if request.get("canary") and not healthy["now"]:
            raise RuntimeError("engine lost")
        yield {"ok": True}

    def status() -> str:
        address = drt.system_server_address()
        assert address is not None
        port = address.rsplit(":", 1)[1]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                body: str = json.loads(r.read())["status"]
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())["status"]
        return body

    async def becomes(want: str) -> None:
        for _ in range(200):
            if status() == want:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"health never became {want}")

    async def main() -> None:
        endpoint = drt.namespace("py").component("worker").endpoint("generate")
        served = await endpoint.serve_endpoint(
            handler, health_check_payload={"canary": True}, health_check_interval=0.05, health_check_timeout=1.0
        )
        await becomes("ready")
        healthy["now"] = False
        await becomes("notready")
        healthy["now"] = True
        await becomes("ready")
        await served.stop()

    asyncio.run(main())
    with pytest.raises(ValueError, match="health_check_interval"):

        async def bad() -> None:
            endpoint = drt.namespace("py").component("worker").endpoint("other")
            await endpoint.serve_endpoint(handler, health_check_payload={}, health_check_interval=-1.0)

        asyncio.run(bad())


def test_a_handler_left_mid_stream_runs_its_finally_at_once(drt: DistributedRuntime) -> None:
    """A caller that stops reading cancels the request, and the handler's
    generator is closed then: its `finally` (an engine releasing its KV
    blocks, say) runs without waiting for the garbage collector."""
    endpoint = drt.namespace("ns").component("comp").endpoint("closing")
    closed: list[float] = []

    async def endless(request: Any) -> AsyncGenerator[int, None]:
        try:
            i = 0
            while True:
                await asyncio.sleep(0.001)
                yield i
                i += 1
        finally:
            closed.append(time.monotonic())

    async def main() -> None:
        served = await endpoint.serve_endpoint(endless)
        client = await endpoint.client()
        await client.wait_for_instances()
        async for item in await client.round_robin({}):
            if item == 3:
                break
        left = time.monotonic()
        while not closed and time.monotonic() - left < 5:
            await asyncio.sleep(0.01)
        assert closed, "the generator was not closed within 5 s"
        await served.stop()

    asyncio.run(main())


def test_a_handler_that_takes_a_context_gets_the_request_id_and_cancellation(drt: DistributedRuntime) -> None:
    """`handler(request, context)`: the request's id (the plane's own for a
    plain call; the frontend's response id in a deployment), no trace id
    without a `traceparent`, and `is_cancelled()` turning true once the caller
    drops the stream (the generator is closed then; its `finally` sees it).
    Bound methods and one-argument handlers work as before."""
    seen: list[tuple[str, Any, Any, dict[str, str]]] = []
    cancelled = asyncio.Event()

    class Engine:
        async def generate(self, request: dict[str, Any], context: Context) -> AsyncGenerator[dict[str, Any], None]:
            seen.append((context.id(), context.trace_id(), context.traceparent(), context.exemplar()))
            try:
                for i in range(request["n"]):
                    await asyncio.sleep(0.005)
                    yield {"i": i}
            finally:
                # Closed because the caller went away: the context says so.
                if context.is_cancelled():
                    cancelled.set()

    async def main() -> None:
        endpoint = drt.namespace("py").component("worker").endpoint("generate")
        served = await endpoint.serve_endpoint(Engine().generate)
        client = await endpoint.client()
        await client.wait_for_instances(5.0)
        items = [item async for item in await client.round_robin({"n": 2})]
        assert items == [{"i": 0}, {"i": 1}]
        request_id, trace_id, traceparent, exemplar = seen[0]
        assert len(request_id) == 16 and int(request_id, 16) >= 0
        assert trace_id is None and traceparent is None
        assert exemplar == {"request_id": request_id}
        stream = await client.round_robin({"n": 10_000})
        async for _ in stream:
            break
        del stream
        gc.collect()
        await asyncio.wait_for(cancelled.wait(), 10.0)
        await served.stop()

    asyncio.run(main())


def test_a_generator_dropped_while_it_awaits_its_next_item_is_closed_once_it_has_it(drt: DistributedRuntime) -> None:
    """The caller goes away while the handler is inside `await` (between two
    items): the generator cannot be closed while it runs, so it is closed
    right after that item, with its `finally` seeing the cancellation. With
    the cyclic garbage collector off, so nothing but that close can run it."""
    events: list[str] = []
    closed = asyncio.Event()

    async def generate(request: dict[str, Any], context: Context) -> AsyncGenerator[dict[str, Any], None]:
        try:
            yield {"i": 0}
            events.append("awaiting")
            await asyncio.sleep(request["pause"])
            events.append("item ready")
            yield {"i": 1}
            events.append("resumed")  # never: it is closed at the yield
        finally:
            events.append(f"finally cancelled={context.is_cancelled()}")
            closed.set()

    async def main() -> None:
        endpoint = drt.namespace("py").component("worker").endpoint("slow")
        served = await endpoint.serve_endpoint(generate)
        client = await endpoint.client()
        await client.wait_for_instances(5.0)
        stream = await client.round_robin({"pause": 0.3})
        async for item in stream:
            assert item == {"i": 0}
            break
        while "awaiting" not in events:
            await asyncio.sleep(0.01)
        del stream  # mid-await: the plane cancels and drops the generator
        await asyncio.wait_for(closed.wait(), 10.0)
        assert events == ["awaiting", "item ready", "finally cancelled=True"], events
        await served.stop()

    gc.disable()
    try:
        asyncio.run(main())
    finally:
        gc.enable()
