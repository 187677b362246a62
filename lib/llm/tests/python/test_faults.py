"""Faults against real processes: workers and a frontend over a real
nats-server, with discovery announced over NATS or kept in a real etcd.
Workers killed (SIGKILL) or stopped (SIGTERM) while they stream, nats-server
and etcd restarted under load, the frontend stopped: each test asserts what
the clients saw, what the frontend's and workers' metrics say afterwards
(in flight, errors by type, totals that agree). That a dead worker leaves
its callers no task and no reply route is checked by the Rust test
`lib/runtime/tests/worker_lost.rs`, on the same transport."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_support import (
    DEADLINE,
    Deployment,
    dynamo_binary,
    free_port,
    kill_service,
    process_env,
    scrape,
    start,
    start_etcd,
    start_nats,
    start_service_again,
    stop,
    valid,
    wait_for,
)

LIVENESS_MS = 1500
STREAMS = 3
MODEL = '"model": "mock-model"'


def split_deployment(store: Path, workers: int = 1, discovery: str = "nats") -> Deployment:
    """nats-server (and etcd, for `discovery="etcd"`), `workers` mock workers
    (20 ms per token) and a frontend, with a short stream liveness deadline."""
    binary = str(dynamo_binary())
    env = process_env(DYN_LOG="error", DYN_STREAM_LIVENESS_MS=str(LIVENESS_MS))
    api = free_port()
    systems = [free_port() for _ in range(workers)]
    d = Deployment(api=api, system=systems[0], worker_systems=systems)
    try:
        url = start_nats(d, store / "nats")
        common = ["--nats", url, "--ttft-ms", "1", "--itl-ms", "20"]
        if discovery == "etcd":
            common += ["--etcd", start_etcd(d, store / "etcd")]
        for port in systems:
            d.workers.append(start(d, [binary, "serve", *common, "--role", "worker", "--system-port", str(port)], env))
        d.frontend = start(d, [binary, "serve", *common, "--role", "frontend", "--http", f"127.0.0.1:{api}"], env)
        for port in systems:
            wait_for(f"http://127.0.0.1:{port}/health", d)
        wait_for(f"http://127.0.0.1:{api}/v1/models", d, check="mock-model")
    except BaseException:
        stop(d)
        raise
    return d


@pytest.fixture(params=["nats", "etcd"])
def split(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = split_deployment(tmp_path_factory.mktemp("split"), discovery=request.param)
    try:
        yield d
    finally:
        stop(d)


def frontend_samples(d: Deployment) -> dict[str, float]:
    return valid(scrape(d.api))


def frontend_total(samples: dict[str, float], status: str | None = None) -> float:
    """dynamo_frontend_requests_total of the mock model, of one status or all."""
    return sum(
        v
        for k, v in samples.items()
        if k.startswith("dynamo_frontend_requests_total{") and MODEL in k and (status is None or f'"status": "{status}"' in k)
    )


def frontend_errors(samples: dict[str, float], error_type: str) -> float:
    return sum(
        v
        for k, v in samples.items()
        if k.startswith("dynamo_frontend_request_errors_total{") and f'"error_type": "{error_type}"' in k
    )


def inflight(samples: dict[str, float]) -> float | None:
    return samples.get('dynamo_frontend_inflight_requests{"model": "mock-model"}')


def worker_requests(port: int) -> float:
    """The requests a worker's generate endpoint received (canaries are not counted)."""
    samples = valid(scrape(port))
    return sum(v for k, v in samples.items() if k.startswith("dynamo_component_requests_total{") and '"dynamo_endpoint": "generate"' in k)


def chat(port: int, max_tokens: int = 2) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    body = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()[:300]
    finally:
        conn.close()


def until_served(port: int, since: float, in_a_row: int = 5) -> list[tuple[int, bytes]]:
    """Sends unary requests until `in_a_row` succeed in a row; returns the failures before."""
    failures: list[tuple[int, bytes]] = []
    ok = 0
    while ok < in_a_row:
        assert time.monotonic() - since < DEADLINE, failures[-5:]
        status, body = chat(port)
        if status == 200:
            ok += 1
        else:
            ok = 0
            failures.append((status, body))
            time.sleep(0.05)
    return failures


class Stream(threading.Thread):
    """One streamed chat request, read line by line."""

    def __init__(self, port: int, max_tokens: int = 2000) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.max_tokens = max_tokens
        self.first = threading.Event()
        self.lines: list[str] = []
        self.ended_after_kill: float | None = None
        self.killed_at: float | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        body = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": self.max_tokens, "stream": True}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json"})
        resp = conn.getresponse()
        for raw in resp:
            line = raw.decode().strip()
            if line:
                self.lines.append(line)
                self.first.set()
        if self.killed_at is not None:
            self.ended_after_kill = time.monotonic() - self.killed_at
        conn.close()


def started_streams(port: int, n: int, max_tokens: int = 2000) -> list[Stream]:
    """`n` streamed requests, each started and past its first chunk."""
    streams = [Stream(port, max_tokens=max_tokens) for _ in range(n)]
    for s in streams:
        s.start()
    for s in streams:
        assert s.first.wait(DEADLINE), "every stream got its first chunk"
    return streams


def mark_killed(streams: list[Stream]) -> float:
    """Notes now as the moment of the fault in every stream; returns it."""
    killed_at = time.monotonic()
    for s in streams:
        s.killed_at = killed_at
    return killed_at


def ended_whole(streams: list[Stream], tokens: int = 0) -> None:
    """Every stream ended within the deadline with `[DONE]`, no error event,
    and at least `tokens` content chunks."""
    for s in streams:
        s.join(DEADLINE)
        assert not s.is_alive(), "the stream ended within the deadline"
        assert not any('"error"' in line for line in s.lines), s.lines[-3:]
        assert s.lines[-1] == "data: [DONE]", s.lines[-3:]
        assert sum(1 for line in s.lines if '"content"' in line) >= tokens


def ended_with_an_error(streams: list[Stream]) -> None:
    """Every stream ended within the deadline with an error event, then `[DONE]`."""
    for s in streams:
        s.join(DEADLINE)
        assert not s.is_alive(), "the stream ended within the deadline"
        assert any('"error"' in line for line in s.lines), s.lines[-3:]
        assert s.lines[-1] == "data: [DONE]", s.lines[-3:]


def test_a_killed_worker_ends_its_streams_with_an_error_and_nothing_stays_in_flight(split: Deployment) -> None:
    streams = started_streams(split.api, STREAMS)
    worker = split.workers[0]
    mark_killed(streams)
    os.kill(worker.pid, signal.SIGKILL)
    ended_with_an_error(streams)
    assert split.frontend is not None and split.frontend.poll() is None, "the frontend lives"
    samples = frontend_samples(split)
    assert frontend_errors(samples, "worker_lost") == STREAMS, [k for k in samples if "errors_total" in k]
    assert inflight(samples) == 0


def test_sigterm_drains_streams_in_flight_then_exits(tmp_path_factory: pytest.TempPathFactory) -> None:
    """SIGTERM on `dynamo serve` (one process): the streams in flight finish
    whole, /health answers notready meanwhile, and the process exits 0."""
    binary = str(dynamo_binary())
    env = process_env(DYN_LOG="error")
    api, system = free_port(), free_port()
    cmd = [binary, "serve", "--http", f"127.0.0.1:{api}", "--system-port", str(system), "--ttft-ms", "1", "--itl-ms", "20"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
    d = Deployment(api=api, system=system, procs=[proc])
    try:
        wait_for(f"http://127.0.0.1:{system}/health", d)
        wait_for(f"http://127.0.0.1:{api}/v1/models", d, check="mock-model")
        streams = started_streams(api, STREAMS, max_tokens=100)
        proc.send_signal(signal.SIGTERM)
        # Draining: the system server says notready.
        deadline = time.monotonic() + DEADLINE
        status = 0
        while time.monotonic() < deadline and status != 503:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{system}/health", timeout=2) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError:
                break
            time.sleep(0.05)
        assert status == 503, status
        ended_whole(streams, tokens=100)
        assert proc.wait(DEADLINE) == 0
        assert proc.stdout is not None
        assert "drained in" in proc.stdout.read().decode()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("discovery", ["nats", "etcd"])
def test_two_workers_one_killed_its_streams_end_the_others_finish_and_new_requests_avoid_it(
    tmp_path_factory: pytest.TempPathFactory, discovery: str
) -> None:
    d = split_deployment(tmp_path_factory.mktemp("two"), workers=2, discovery=discovery)
    api = d.api
    try:
        # Round-robin spreads the streams over both workers.
        streams = started_streams(api, 6, max_tokens=150)
        killed_at = mark_killed(streams)
        os.kill(d.workers[0].pid, signal.SIGKILL)
        # New requests avoid the dead worker: five in a row succeed, within the deadline.
        statuses = until_served(api, killed_at)
        avoided = time.monotonic() - killed_at
        for s in streams:
            s.join(DEADLINE)
            assert not s.is_alive()
        failed = [s for s in streams if any('"error"' in line for line in s.lines)]
        whole = [s for s in streams if not any('"error"' in line for line in s.lines)]
        assert failed and whole, "some streams were on each worker"
        ended = max(s.ended_after_kill or 0.0 for s in failed)
        print(
            f"\nworker killed: its {len(failed)} streams ended within {ended:.2f} s; "
            f"five new requests in a row served {avoided:.2f} s after ({discovery}); failed before: {statuses}"
        )
        samples = frontend_samples(d)
        assert frontend_errors(samples, "worker_lost") == len(failed)
        assert inflight(samples) == 0
        # The survivor received every request the frontend served whole, and
        # only those it did not lose (the dead worker took the rest with it).
        survivor = worker_requests(d.worker_systems[1])
        assert survivor == frontend_total(samples, "success"), (survivor, frontend_total(samples, "success"))
    finally:
        stop(d)


def test_sigterm_on_a_worker_finishes_its_streams_over_nats(split: Deployment) -> None:
    """SIGTERM on a worker behind a frontend over NATS: it takes no new
    request, the streams it carries finish whole, then it exits 0."""
    streams = started_streams(split.api, STREAMS, max_tokens=100)
    worker = split.workers[0]
    worker.send_signal(signal.SIGTERM)
    ended_whole(streams)
    assert worker.wait(DEADLINE) == 0
    samples = frontend_samples(split)
    assert inflight(samples) == 0
    assert frontend_total(samples, "success") == STREAMS


def test_a_nats_restart_ends_streams_in_flight_and_serving_resumes(split: Deployment) -> None:
    """nats-server killed while streams are in flight: they end within the
    liveness deadline as `worker_lost`; after it is back, requests are served
    again; the worker received exactly what the frontend served or lost."""
    streams = started_streams(split.api, STREAMS, max_tokens=300)
    mark_killed(streams)
    kill_service(split, "nats")
    ended_with_an_error(streams)
    ended = max(s.ended_after_kill or 0.0 for s in streams)
    start_service_again(split, "nats")
    back = time.monotonic()
    failures = until_served(split.api, back)
    print(f"\nnats-server killed: streams ended in {ended:.2f} s; served again {time.monotonic() - back:.2f} s after it was back; failures meanwhile: {len(failures)} {failures[:2]}")
    samples = frontend_samples(split)
    assert frontend_errors(samples, "worker_lost") == STREAMS
    assert inflight(samples) == 0
    reached_worker = frontend_total(samples, "success") + frontend_errors(samples, "worker_lost")
    assert worker_requests(split.system) == reached_worker


def test_an_etcd_restart_under_load_loses_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    """etcd killed and started again while streams are in flight and unary
    requests keep coming: every request is served (the frontend's views keep
    the model and the worker through the outage: no 404, no 503), the
    streams finish whole, and the frontend's and the worker's totals agree."""
    d = split_deployment(tmp_path_factory.mktemp("etcd"), discovery="etcd")
    try:
        streams = started_streams(d.api, STREAMS, max_tokens=200)
        kill_service(d, "etcd")
        down_at = time.monotonic()
        statuses: list[int] = []
        while time.monotonic() - down_at < 4.0:  # longer than a lease TTL (3 s)
            statuses.append(chat(d.api)[0])
        start_service_again(d, "etcd")
        back = time.monotonic()
        while time.monotonic() - back < 2.0:
            statuses.append(chat(d.api)[0])
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        ended_whole(streams)
        samples = frontend_samples(d)
        assert frontend_total(samples, "success") == len(statuses) + STREAMS
        assert frontend_total(samples) == frontend_total(samples, "success")
        assert inflight(samples) == 0
        assert worker_requests(d.system) == len(statuses) + STREAMS
        print(f"\netcd down 4 s under load: {len(statuses)} unary requests, all served; {STREAMS} streams whole")
    finally:
        stop(d)


def test_sigterm_on_the_frontend_in_split_mode_drains_its_streams(tmp_path_factory: pytest.TempPathFactory) -> None:
    """SIGTERM on a frontend over NATS: it stops accepting connections, the
    streams in flight finish whole, it exits 0; the worker served exactly
    those streams and has nothing in flight."""
    d = split_deployment(tmp_path_factory.mktemp("fe"))
    try:
        streams = started_streams(d.api, STREAMS, max_tokens=100)
        assert d.frontend is not None
        d.frontend.send_signal(signal.SIGTERM)
        # Draining: new requests are not served (those sent before the
        # signal is handled are, and counted).
        deadline = time.monotonic() + DEADLINE
        refused, served_before = False, 0
        while not refused and time.monotonic() < deadline:
            try:
                status = chat(d.api)[0]
                refused = status == 503
                served_before += status == 200
            except OSError:
                refused = True
        assert refused, "a new request was still served while draining"
        ended_whole(streams, tokens=100)
        assert d.frontend.wait(DEADLINE) == 0
        worker = valid(scrape(d.system))
        assert worker_requests(d.system) == STREAMS + served_before
        assert sum(v for k, v in worker.items() if k.startswith("dynamo_component_inflight_requests{")) == 0
    finally:
        stop(d)
