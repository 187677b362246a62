"""An engine written in Python (`examples/engines/toy_engine.py`, through
`dynamo.llm`) behind `dynamo serve --role frontend` over a real nats-server
(discovery over NATS, and in a real etcd),
driven by the `openai` client: streamed and unary answers, the frontend's
metrics exact, the engine's gauges on the worker's /metrics, a handler that
raises, and a client that goes away mid-stream."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator

import openai
import pytest
from llm_support import DEADLINE, ROOT, Deployment, dynamo_binary, free_port, process_env, scrape, start, start_etcd, start_nats, stop, valid, wait_for

MODEL = "toy"
TOY_ENGINE = ROOT / "examples/engines/toy_engine.py"
LABELS = '"dynamo_component": "toy", "dynamo_endpoint": "generate", "dynamo_namespace": "dynamo"'


@pytest.fixture(scope="module", params=["nats", "etcd"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    api, system = free_port(), free_port()
    d = Deployment(api=api, system=system)
    try:
        store = tmp_path_factory.mktemp("engine")
        url = start_nats(d, store / "nats")
        worker_env = {"NATS_SERVER": url, "DYN_SYSTEM_PORT": str(system)}
        frontend_args = ["--nats", url]
        if request.param == "etcd":
            endpoint = start_etcd(d, store / "etcd")
            worker_env["ETCD_ENDPOINTS"] = endpoint
            frontend_args += ["--etcd", endpoint]
        env = process_env(DYN_LOG="error", **worker_env)
        d.worker_env = env
        start(d, [sys.executable, str(TOY_ENGINE), "--model", MODEL, "--itl-ms", "2"], env)
        start(d, [str(dynamo_binary()), "serve", *frontend_args, "--role", "frontend", "--http", f"127.0.0.1:{api}"], process_env(DYN_LOG="error"))
        wait_for(f"http://127.0.0.1:{system}/health", d)
        wait_for(f"http://127.0.0.1:{api}/v1/models", d, check=MODEL)
        yield d
    finally:
        stop(d)


def client(d: Deployment) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{d.api}/v1", api_key="unused", max_retries=0, timeout=DEADLINE)


def frontend(d: Deployment, name: str, **labels: str) -> float:
    """A frontend sample of the toy model (0 when absent)."""
    want = {"model": MODEL, **labels}
    return sum(
        v
        for k, v in valid(scrape(d.api)).items()
        if k.startswith(name + "{") and all(f'"{lk}": "{lv}"' in k for lk, lv in want.items())
    )


def worker(d: Deployment, name: str) -> float | None:
    """A sample of the toy engine's endpoint on the worker (None when absent)."""
    return valid(scrape(d.system)).get(name + "{" + LABELS + "}")


def worker_errors_key(error_type: str) -> str:
    """The worker's errors_total sample of `error_type` (labels sort by name)."""
    return "dynamo_component_errors_total{" + LABELS + f', "error_type": "{error_type}"' + "}"


def settled(check: Callable[[], bool], what: str) -> None:
    """Waits (up to the deadline) for `check()` to be true: counters settle once the request ends on each side."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_streamed_and_unary_answers_with_exact_metrics(deployment: Deployment) -> None:
    c = client(deployment)
    assert [m.id for m in c.models.list()] == [MODEL]
    streams, unary, tokens = 3, 2, 7
    for _ in range(streams):
        chunks = list(
            c.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hello toy engine"}], max_tokens=tokens, stream=True
            )
        )
        assert chunks[-1].choices[0].finish_reason == "length"
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    for _ in range(unary):
        r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=tokens, temperature=0.5)
        assert r.choices[0].finish_reason == "length"
        assert r.usage is not None and r.usage.completion_tokens == tokens
        assert r.choices[0].message.content
    assert frontend(deployment, "dynamo_frontend_requests_total", request_type="stream", status="success") == streams
    assert frontend(deployment, "dynamo_frontend_requests_total", request_type="unary", status="success") == unary
    assert frontend(deployment, "dynamo_frontend_output_sequence_tokens_sum") == (streams + unary) * tokens
    assert frontend(deployment, "dynamo_frontend_time_to_first_token_seconds_count") == streams + unary
    assert frontend(deployment, "dynamo_frontend_inter_token_latency_seconds_count") == (streams + unary) * (tokens - 1)
    assert frontend(deployment, "dynamo_frontend_inflight_requests") == 0
    # The worker: its automatic metrics and the engine's gauges.
    assert worker(deployment, "dynamo_component_requests_total") == streams + unary
    assert worker(deployment, "dynamo_component_kvstats_total_blocks") == 256
    settled(lambda: worker(deployment, "dynamo_component_kvstats_active_blocks") == 0, "blocks released")
    assert worker(deployment, "dynamo_component_num_requests_waiting") == 0


def test_engine_gauges_move_while_a_request_runs(deployment: Deployment) -> None:
    c = client(deployment)
    stream = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a long answer"}], max_tokens=400, stream=True)
    seen = []
    for i, _ in enumerate(stream):
        if i in (5, 300):
            seen.append(worker(deployment, "dynamo_component_kvstats_active_blocks") or 0)
    assert seen[0] >= 1 and seen[1] > seen[0], seen
    usage = worker(deployment, "dynamo_component_kvstats_gpu_cache_usage_percent")
    assert usage is not None and 0 <= usage <= 1
    settled(lambda: worker(deployment, "dynamo_component_kvstats_active_blocks") == 0, "blocks released")


def test_a_raising_handler_is_an_openai_error_and_counted(deployment: Deployment) -> None:
    c = client(deployment)
    engine_errors = frontend(deployment, "dynamo_frontend_request_errors_total", error_type="engine")
    samples = valid(scrape(deployment.system))
    handler_key = worker_errors_key("handler")
    handler_errors = samples.get(handler_key, 0.0)
    with pytest.raises(openai.APIStatusError) as raised:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=-1.0)
    assert raised.value.status_code == 500
    assert "temperature must be >= 0" in str(raised.value)
    with pytest.raises(openai.APIError) as in_stream:
        for _ in c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=-1.0, stream=True):
            pass
    assert "temperature must be >= 0" in str(in_stream.value)
    assert frontend(deployment, "dynamo_frontend_request_errors_total", error_type="engine") == engine_errors + 2
    assert frontend(deployment, "dynamo_frontend_inflight_requests") == 0
    settled(lambda: valid(scrape(deployment.system)).get(handler_key, 0.0) == handler_errors + 2, "the worker counts both as handler errors")


def test_a_client_that_goes_away_mid_stream_cancels_the_engine(deployment: Deployment) -> None:
    c = client(deployment)
    disconnected = frontend(deployment, "dynamo_frontend_request_errors_total", error_type="client_disconnected")
    cancelled_key = worker_errors_key("cancelled")
    cancelled = valid(scrape(deployment.system)).get(cancelled_key, 0.0)
    stream = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "go on"}], max_tokens=5000, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    settled(
        lambda: frontend(deployment, "dynamo_frontend_request_errors_total", error_type="client_disconnected") == disconnected + 1,
        "the frontend counts the disconnect",
    )
    settled(lambda: valid(scrape(deployment.system)).get(cancelled_key, 0.0) == cancelled + 1, "the worker counts the cancel")
    settled(lambda: worker(deployment, "dynamo_component_kvstats_active_blocks") == 0, "the engine released its blocks")
    assert frontend(deployment, "dynamo_frontend_inflight_requests") == 0


def test_the_engine_sees_the_request_id_and_trace_and_records_them_as_exemplars(deployment: Deployment) -> None:
    """A handler that takes a `Context` gets the frontend's response id and the
    client's `traceparent` trace id; the toy engine's own histogram carries
    them as an exemplar, read by prometheus_client's OpenMetrics parser."""
    import urllib.request

    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    trace_id = "0af7651916cd43dd8448eb211c80319c"
    traceparent = f"00-{trace_id}-b7ad6b7169203331-01"
    response = client(deployment).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "trace me"}],
        max_tokens=3,
        extra_headers={"traceparent": traceparent},
    )
    assert response.id.startswith("chatcmpl-")
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

    def exemplars() -> list[dict[str, str]]:
        request = urllib.request.Request(f"http://127.0.0.1:{deployment.system}/metrics", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=DEADLINE) as r:
            text = r.read().decode()
        return [
            dict(s.exemplar.labels)
            for f in text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
            if f.name == "dynamo_component_toy_engine_first_token_seconds"
            for s in f.samples
            if s.exemplar is not None
        ]

    want = {"request_id": response.id, "trace_id": trace_id}
    settled(lambda: want in exemplars(), f"the engine's exemplar {want}")


def test_the_frontend_metrics_are_gzipped_for_a_scraper_that_asks(deployment: Deployment) -> None:
    import gzip
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{deployment.api}/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=DEADLINE) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        raw = r.read()
    text = gzip.decompress(raw).decode()
    assert len(raw) < len(text)
    assert any(k.startswith("dynamo_frontend_requests_total{") for k in valid(text))


def test_sigterm_unregisters_the_model_and_the_engine_exits_cleanly(deployment: Deployment) -> None:
    """The example's graceful path (`dynamo.runtime.shutdown_signal`): on
    SIGTERM a second toy engine withdraws its model and stops serving, and
    exits 0; the frontend stops listing its model and keeps the first."""
    second = "toy-second"
    models_url = f"http://127.0.0.1:{deployment.api}/v1/models"

    def models() -> list[str]:
        return [m.id for m in client(deployment).models.list()]

    p = start(deployment, [sys.executable, str(TOY_ENGINE), "--model", second, "--itl-ms", "2"], {**deployment.worker_env, "DYN_SYSTEM_PORT": "0"})
    wait_for(models_url, deployment, check=second)
    deployment.procs.remove(p)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=DEADLINE) == 0
    settled(lambda: second not in models(), "the frontend forgets the withdrawn model")
    assert models() == [MODEL]
