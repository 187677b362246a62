#!/usr/bin/env python3
"""CPU per streamed token, end to end in one process: `dynamo serve` (frontend
and a zero-delay mock engine, LLM metrics on) driven by `dynamo load` in
another process, at several concurrencies. The server's CPU time (user +
system, all threads, from /proc/<pid>/stat) over the tokens it delivered is
the figure; the load generator's own CPU use is printed beside it, so a
reader can tell which side was the limit.

    cargo build --release --bin dynamo
    python3 benches/streaming_cpu.py                       # target/release/dynamo
    python3 benches/streaming_cpu.py --binary /tmp/dynamo-before --binary target/release/dynamo

With two binaries (before and after a change) they run alternately, level by
level, so both see the same machine. `--quick` runs a few requests per level
(the test suite's smoke run: the figures then mean nothing).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, every thread."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Result:
    requests_per_s: float
    tokens_per_s: float
    server_us_per_token: float
    server_cores: float
    load_cores: float


class Server:
    """`dynamo serve` with a zero-delay mock engine, until stopped."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "serve", "--http", f"127.0.0.1:{self.port}", "--system-port", str(free_port()), "--ttft-ms", "0", "--itl-ms", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "DYN_LOG": "error"},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models", timeout=2) as r:
                    if b"mock-model" in r.read():
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{binary} serve did not come up")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


LINE = re.compile(r"requests: (\d+) ok, (\d+) failed in ([\d.]+) s .* ([\d.]+) requests/s .* ([\d.]+) output tokens/s")


def run_level(binary: str, server: Server, requests: int, concurrency: int, max_tokens: int) -> Result:
    before_server = cpu_seconds(server.proc.pid)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [binary, "load", "--url", server.url, "--requests", str(requests), "--concurrency", str(concurrency), "--max-tokens", str(max_tokens), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DYN_LOG": "error"},
    )
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = cpu_seconds(server.proc.pid) - before_server
    if out.returncode != 0:
        raise RuntimeError(f"dynamo load failed:\n{out.stdout}\n{out.stderr}")
    m = LINE.search(out.stdout)
    if m is None:
        raise RuntimeError(f"no summary in:\n{out.stdout}")
    ok, failed, secs, rps, tps = int(m[1]), int(m[2]), float(m[3]), float(m[4]), float(m[5])
    if failed:
        raise RuntimeError(f"{failed} requests failed")
    load_cpu = (after_children.ru_utime - before_children.ru_utime) + (after_children.ru_stime - before_children.ru_stime)
    tokens = tps * secs
    return Result(rps, tps, server_cpu / max(tokens, 1.0) * 1e6, server_cpu / secs, load_cpu / secs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", action="append", help="a dynamo binary (repeat to compare); default target/release/dynamo")
    parser.add_argument("--concurrency", default="8,64,256", help="comma-separated levels")
    parser.add_argument("--requests", type=int, default=3000, help="requests per level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="runs per level and binary (the median is printed)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 40 requests, one round")
    args = parser.parse_args()
    binaries = args.binary or ["target/release/dynamo"]
    levels = [int(c) for c in args.concurrency.split(",")]
    requests, rounds = (40, 1) if args.quick else (args.requests, args.rounds)
    print(f"machine: {os.cpu_count()} cores; {requests} streamed requests of {args.max_tokens} tokens per run; median of {rounds}")
    print(f"{'binary':<28}{'conc':>6}{'req/s':>10}{'tokens/s':>12}{'server µs/token':>17}{'server cores':>14}{'load cores':>12}")
    servers = {b: Server(b) for b in binaries}
    try:
        for level in levels:
            results: dict[str, list[Result]] = {b: [] for b in binaries}
            for _ in range(rounds):
                for b in binaries:
                    results[b].append(run_level(b, servers[b], requests, level, args.max_tokens))
            for b in binaries:
                rs = sorted(results[b], key=lambda r: r.server_us_per_token)
                r = rs[len(rs) // 2]
                print(
                    f"{b[-28:]:<28}{level:>6}{r.requests_per_s:>10.0f}{r.tokens_per_s:>12.0f}"
                    f"{r.server_us_per_token:>17.2f}{r.server_cores:>14.2f}{r.load_cores:>12.2f}",
                    flush=True,
                )
    finally:
        for s in servers.values():
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
