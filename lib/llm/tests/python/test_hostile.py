"""Hostile clients against `dynamo serve`, in one process and split over a
real nats-server (both started here): unknown and hostile model names,
long and pathological prompts, slow clients that never finish their
headers. Afterwards every process is alive, every `/metrics` parses with
prometheus_client and passes promtool, the frontend's series are bounded
and its memory too."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from llm_support import DEADLINE, Deployment, dynamo_binary, free_port, scrape, start, start_nats, stop, process_env, valid, wait_for

HEADER_TIMEOUT_MS = 500


@pytest.fixture(scope="module", params=["one-process", "split"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    binary = str(dynamo_binary())
    env = process_env(DYN_LOG="error")
    api, system = free_port(), free_port()
    common = ["--ttft-ms", "1", "--itl-ms", "1", "--header-timeout-ms", str(HEADER_TIMEOUT_MS)]
    d = Deployment(api=api, system=system)
    try:
        if request.param == "one-process":
            start(d, [binary, "serve", "--http", f"127.0.0.1:{api}", "--system-port", str(system), *common], env)
        else:
            url = start_nats(d, tmp_path_factory.mktemp("nats"))
            start(d, [binary, "serve", "--nats", url, "--role", "worker", "--system-port", str(system), *common], env)
            start(d, [binary, "serve", "--nats", url, "--role", "frontend", "--http", f"127.0.0.1:{api}", *common], env)
        wait_for(f"http://127.0.0.1:{system}/health", d)
        wait_for(f"http://127.0.0.1:{api}/v1/models", d, check="mock-model")
        yield d
    finally:
        stop(d)


def post(port: int, body: bytes, conn: http.client.HTTPConnection | None = None) -> int:
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    r = c.getresponse()
    r.read()
    if conn is None:
        c.close()
    return r.status


def chat(model: str, content: str = "hi", **extra: object) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": content}], **extra}).encode()


def rss_mib(d: Deployment) -> float:
    total = 0.0
    for p in d.procs:
        for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total = max(total, int(line.split()[1]) / 1024)
    return total


def test_made_up_and_hostile_model_names_stay_out_of_the_labels(deployment: Deployment) -> None:
    port = deployment.api
    rss_before = rss_mib(deployment)

    def batch(start: int) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
        statuses = [post(port, chat(f"made-up-{start + i}"), conn) for i in range(250)]
        conn.close()
        return statuses

    with ThreadPoolExecutor(4) as pool:
        statuses = [s for b in pool.map(batch, range(0, 2000, 250)) for s in b]
    assert statuses == [404] * 2000
    for name in ["a\rb", "x\u2028y", "q\"\\\n", "\x00"]:
        assert post(port, chat(name)) == 404
    assert all(post(port, chat("m" * 900_000)) == 404 for _ in range(10))
    deployment.alive()
    frontend = [l for l in scrape(port).splitlines() if l.startswith("dynamo_frontend_")]
    assert len(frontend) < 150, len(frontend)
    assert not any("made-up" in l for l in frontend)
    assert rss_mib(deployment) - rss_before < 150, (rss_before, rss_mib(deployment))


def test_long_and_pathological_prompts_are_bounded(deployment: Deployment) -> None:
    port = deployment.api
    # Over the prompt limit: a 400, counted.
    assert post(port, chat("mock-model", " " * 1_000_000)) == 400
    # Under it but pathological for the tokenizer's regex, alongside normal streams.
    bodies = [chat("mock-model", " " * 250_000, max_tokens=2), chat("mock-model", "\n" * 200_000, max_tokens=2)]
    bodies += [chat("mock-model", "hello", max_tokens=4, stream=True)] * 8
    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(lambda b: post(port, b), bodies)) == [200] * len(bodies)
    deployment.alive()


def test_slow_clients_are_cut_off_and_metrics_keep_answering(deployment: Deployment) -> None:
    slow = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", deployment.api), timeout=DEADLINE)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n")
        slow.append(s)
    # The system server answers while they hang.
    valid(scrape(deployment.system))
    for s in slow:
        # The server closes each after its header timeout; a hang raises
        # socket.timeout after DEADLINE and fails the test.
        while s.recv(4096):
            pass
        s.close()
    assert post(deployment.api, chat("mock-model")) == 200
    deployment.alive()


def test_every_metrics_endpoint_is_valid_afterwards(deployment: Deployment) -> None:
    for port in (deployment.api, deployment.system):
        samples = valid(scrape(port))
        assert samples
    frontend = valid(scrape(deployment.api))
    unknown = [v for k, v in frontend.items() if k.startswith("dynamo_frontend_requests_total") and '"unknown"' in k]
    assert unknown and sum(unknown) >= 1
    deployment.alive()
