"""A worker killed (SIGKILL) while it streams, behind a frontend over a real
nats-server: every stream it carried ends for its client within the stream
liveness deadline with an error event, the frontend counts them as
`worker_lost`, and nothing stays in flight."""

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
from llm_support import DEADLINE, Deployment, dynamo_binary, free_port, scrape, start, start_nats, stop, process_env, valid, wait_for

LIVENESS_MS = 1500
STREAMS = 3


def split_deployment(store: Path, workers: int = 1) -> Deployment:
    """nats-server, `workers` mock workers (20 ms per token) and a frontend,
    with a short stream liveness deadline."""
    binary = str(dynamo_binary())
    env = process_env(DYN_LOG="error", DYN_STREAM_LIVENESS_MS=str(LIVENESS_MS))
    api = free_port()
    systems = [free_port() for _ in range(workers)]
    d = Deployment(api=api, system=systems[0])
    try:
        url = start_nats(d, store)
        common = ["--nats", url, "--ttft-ms", "1", "--itl-ms", "20"]
        for port in systems:
            start(d, [binary, "serve", *common, "--role", "worker", "--system-port", str(port)], env)
        start(d, [binary, "serve", *common, "--role", "frontend", "--http", f"127.0.0.1:{api}"], env)
        for port in systems:
            wait_for(f"http://127.0.0.1:{port}/health", d)
        wait_for(f"http://127.0.0.1:{api}/v1/models", d, check="mock-model")
    except BaseException:
        stop(d)
        raise
    return d


@pytest.fixture()
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = split_deployment(tmp_path_factory.mktemp("nats"))
    try:
        yield d
    finally:
        stop(d)


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


def test_a_killed_worker_ends_its_streams_with_an_error_and_nothing_stays_in_flight(split: Deployment) -> None:
    streams = [Stream(split.api) for _ in range(STREAMS)]
    for s in streams:
        s.start()
    for s in streams:
        assert s.first.wait(DEADLINE), "every stream got its first chunk"
    worker = split.procs[1]
    killed_at = time.monotonic()
    for s in streams:
        s.killed_at = killed_at
    os.kill(worker.pid, signal.SIGKILL)
    for s in streams:
        s.join(DEADLINE)
        assert not s.is_alive(), "the stream ended within the deadline"
        assert any('"error"' in line for line in s.lines), s.lines[-3:]
        assert s.lines[-1] == "data: [DONE]", s.lines[-3:]
    split.procs[2].poll()
    assert split.procs[2].returncode is None, "the frontend lives"
    text = scrape(split.api)
    samples = valid(text)
    lost = samples.get('dynamo_frontend_request_errors_total{"endpoint": "chat_completions", "error_type": "worker_lost", "model": "mock-model"}')
    assert lost == STREAMS, [k for k in samples if "errors_total" in k]
    inflight = samples.get('dynamo_frontend_inflight_requests{"model": "mock-model"}')
    assert inflight == 0, inflight


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
        streams = [Stream(api, max_tokens=100) for _ in range(STREAMS)]
        for s in streams:
            s.start()
        for s in streams:
            assert s.first.wait(DEADLINE)
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
        for s in streams:
            s.join(DEADLINE)
            assert not s.is_alive()
            assert not any('"error"' in line for line in s.lines), s.lines[-3:]
            assert s.lines[-1] == "data: [DONE]", s.lines[-3:]
            assert sum(1 for line in s.lines if '"content"' in line) >= 100
        assert proc.wait(DEADLINE) == 0
        assert proc.stdout is not None
        assert "drained in" in proc.stdout.read().decode()
    finally:
        proc.kill()
        proc.wait()


def test_two_workers_one_killed_its_streams_end_the_others_finish_and_new_requests_avoid_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    d = split_deployment(tmp_path_factory.mktemp("nats2"), workers=2)
    api = d.api
    try:
        # Round-robin spreads the streams over both workers.
        streams = [Stream(api, max_tokens=150) for _ in range(6)]
        for s in streams:
            s.start()
        for s in streams:
            assert s.first.wait(DEADLINE)
        killed_at = time.monotonic()
        for s in streams:
            s.killed_at = killed_at
        os.kill(d.procs[1].pid, signal.SIGKILL)
        # New requests avoid the dead worker: five in a row succeed, within the deadline.
        in_a_row = 0
        statuses: list[tuple[int, bytes]] = []
        while in_a_row < 5:
            assert time.monotonic() - killed_at < DEADLINE, statuses
            conn = http.client.HTTPConnection("127.0.0.1", api, timeout=DEADLINE)
            body = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
            conn.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json"})
            r = conn.getresponse()
            statuses.append((r.status, r.read()[:200]))
            conn.close()
            in_a_row = in_a_row + 1 if r.status == 200 else 0
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
            f"five new requests in a row served {avoided:.2f} s after; failed before: {[s for s in statuses if s[0] != 200]}"
        )
        samples = valid(scrape(api))
        lost = samples.get('dynamo_frontend_request_errors_total{"endpoint": "chat_completions", "error_type": "worker_lost", "model": "mock-model"}')
        assert lost == len(failed)
        assert samples.get('dynamo_frontend_inflight_requests{"model": "mock-model"}') == 0
    finally:
        stop(d)


def test_sigterm_on_a_worker_finishes_its_streams_over_nats(split: Deployment) -> None:
    """SIGTERM on a worker behind a frontend over NATS: it takes no new
    request, the streams it carries finish whole, then it exits 0."""
    streams = [Stream(split.api, max_tokens=100) for _ in range(STREAMS)]
    for s in streams:
        s.start()
    for s in streams:
        assert s.first.wait(DEADLINE)
    worker = split.procs[1]
    worker.send_signal(signal.SIGTERM)
    for s in streams:
        s.join(DEADLINE)
        assert not s.is_alive()
        assert not any('"error"' in line for line in s.lines), s.lines[-3:]
        assert s.lines[-1] == "data: [DONE]", s.lines[-3:]
    assert worker.wait(DEADLINE) == 0
    samples = valid(scrape(split.api))
    assert samples.get('dynamo_frontend_inflight_requests{"model": "mock-model"}') == 0
    ok = samples.get(
        'dynamo_frontend_requests_total{"endpoint": "chat_completions", "model": "mock-model", '
        '"request_type": "stream", "status": "success"}'
    )
    assert ok == STREAMS, ok
