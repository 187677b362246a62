#!/usr/bin/env python3
"""What requests naming models that do not exist cost a running frontend:
starts `dynamo serve` (the binary given), sends N chat requests, each naming
a different unknown model, over a few keep-alive connections, then reports
the process's resident memory (VmRSS) and the number of series its /metrics
holds, before and after.

    python3 benches/hostile_models.py target/release/dynamo --requests 10000

Bounded: N requests, each with a 10 s timeout, and the server is killed at
the end whatever happens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def series(port: int) -> tuple[int, int]:
    """(all series, series of dynamo_frontend_*) on /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        lines = [l for l in r.read().decode().splitlines() if l and not l.startswith("#")]
    return len(lines), sum(1 for l in lines if l.startswith("dynamo_frontend_"))


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dynamo serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("dynamo serve not ready within 30 s")


def send(
    port: int, start: int, count: int, name_bytes: int, statuses: dict[int, int], lock: threading.Lock
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(start, start + count):
        model = f"no-such-model-{i}-".ljust(name_bytes, "x")
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
        try:
            conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except OSError:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status = 0
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
    conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--name-bytes", type=int, default=0, help="pad each model name to this many bytes")
    args = ap.parse_args()
    proc = subprocess.Popen(
        [args.binary, "serve", "--http", f"127.0.0.1:{args.port}", "--system-port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"DYN_LOG": "error", "PATH": "/usr/bin:/bin"},
    )
    try:
        wait_ready(args.port, proc)
        rss0, (all0, fe0) = rss_kib(proc.pid), series(args.port)
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        per = args.requests // args.connections
        started = time.monotonic()
        threads = [
            threading.Thread(target=send, args=(args.port, c * per, per, args.name_bytes, statuses, lock))
            for c in range(args.connections)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - started
        rss1, (all1, fe1) = rss_kib(proc.pid), series(args.port)
        size = f" of {args.name_bytes} bytes" if args.name_bytes else ""
        print(f"{per * args.connections} requests naming distinct unknown models{size} in {took:.1f} s; statuses {statuses}")
        print(f"RSS       {rss0 / 1024:8.1f} MiB -> {rss1 / 1024:8.1f} MiB")
        print(f"series    {all0:8d}     -> {all1:8d}     (dynamo_frontend_*: {fe0} -> {fe1})")
    finally:
        proc.kill()
        proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
