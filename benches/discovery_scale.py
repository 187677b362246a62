"""Discovery at scale: N mock workers (`dynamo serve --role worker`) started at
once behind one frontend over a real nats-server, with discovery announced
over NATS or kept in a real etcd. Reports how long until the frontend's
`/discovery/prometheus` (a watched view, like its instance and model views)
lists every worker, how long until half of them, SIGKILLed, are gone, and the
discovery traffic per worker in the steady state (nats-server's /varz
message and byte counters; etcd's gRPC byte counters from its /metrics).

    python3 benches/discovery_scale.py target/release/dynamo --workers 100 --kill 50
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

DEADLINE = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise SystemExit(f"{name} is not installed (scripts/test.sh installs it)")
    return found


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        body: bytes = r.read()
        return body


def wait(what: str, check: Callable[[], bool]) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > DEADLINE:
            raise SystemExit(f"{what}: not within {DEADLINE} s")
        time.sleep(0.05)
    return time.monotonic() - start


def system_targets(api: int) -> int:
    try:
        groups = json.loads(get(f"http://127.0.0.1:{api}/discovery/prometheus"))
    except OSError:
        return -1
    return sum(len(g["targets"]) for g in groups if g["labels"].get("dynamo_server") == "system")


def nats_traffic(monitor: int) -> tuple[float, float]:
    v = json.loads(get(f"http://127.0.0.1:{monitor}/varz"))
    return float(v["in_msgs"] + v["out_msgs"]), float(v["in_bytes"] + v["out_bytes"])


def etcd_traffic(client_url: str) -> tuple[float, float]:
    """gRPC bytes in and out (etcd counts no messages); (0, bytes)."""
    total = 0.0
    for line in get(f"{client_url}/metrics").decode().splitlines():
        if line.startswith(("etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total")):
            total += float(line.rsplit(" ", 1)[1])
    return 0.0, total


def run(binary: str, discovery: str, workers: int, kill: int, window: float) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="dynamo-scale-"))
    procs: list[subprocess.Popen[bytes]] = []
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_SERVER", "ETCD_ENDPOINTS", "DYN_SYSTEM_PORT")}
    env["DYN_LOG"] = "error"
    try:
        nats_port, monitor = free_port(), free_port()
        procs.append(subprocess.Popen([tool("nats-server"), "-a", "127.0.0.1", "-p", str(nats_port), "-m", str(monitor)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait("nats-server", lambda: _up(f"http://127.0.0.1:{monitor}/varz"))
        common = ["--nats", f"nats://127.0.0.1:{nats_port}"]
        etcd_url = ""
        if discovery == "etcd":
            etcd_url, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
            procs.append(subprocess.Popen([
                tool("etcd"), "--data-dir", str(work / "etcd"), "--name", "scale",
                "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"scale={peer}",
            ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            wait("etcd", lambda: b'"true"' in _body(f"{etcd_url}/health"))
            common += ["--etcd", etcd_url]
        api = free_port()
        procs.append(subprocess.Popen([binary, "serve", *common, "--role", "frontend", "--http", f"127.0.0.1:{api}"], env=env, stdout=subprocess.DEVNULL))
        wait("the frontend", lambda: system_targets(api) >= 0)
        base = system_targets(api)
        started = time.monotonic()
        pool = [
            subprocess.Popen([binary, "serve", *common, "--role", "worker", "--system-port", "0"], env=env, stdout=subprocess.DEVNULL)
            for _ in range(workers)
        ]
        procs.extend(pool)
        wait("every worker listed", lambda: system_targets(api) == base + workers)
        listed = time.monotonic() - started
        time.sleep(2.0)  # settle: the start-up queries and first announcements are over
        traffic = (lambda: nats_traffic(monitor)) if discovery == "nats" else (lambda: etcd_traffic(etcd_url))
        m0, b0 = traffic()
        time.sleep(window)
        m1, b1 = traffic()
        killed = time.monotonic()
        for p in pool[:kill]:
            p.send_signal(signal.SIGKILL)
        wait("the killed workers gone", lambda: system_targets(api) == base + workers - kill)
        gone = time.monotonic() - killed
        return {
            "listed_s": listed,
            "gone_s": gone,
            "msgs_per_worker_s": (m1 - m0) / window / workers,
            "bytes_per_worker_s": (b1 - b0) / window / workers,
        }
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


def _body(url: str) -> bytes:
    try:
        return get(url)
    except OSError:
        return b""


def _up(url: str) -> bool:
    return _body(url) != b""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dynamo", help="the dynamo binary (a release build)")
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--kill", type=int, default=50)
    ap.add_argument("--window", type=float, default=10.0, help="seconds of steady state to measure traffic over")
    ap.add_argument("--discovery", choices=["nats", "etcd", "both"], default="both")
    args = ap.parse_args()
    kinds = ["nats", "etcd"] if args.discovery == "both" else [args.discovery]
    print(f"{'discovery':<10} {'workers':>7} {'all listed':>11} {'killed gone':>12} {'msgs/worker/s':>14} {'bytes/worker/s':>15}")
    for kind in kinds:
        r = run(args.dynamo, kind, args.workers, args.kill, args.window)
        msgs = f"{r['msgs_per_worker_s']:.2f}" if kind == "nats" else "-"
        print(f"{kind:<10} {args.workers:>7} {r['listed_s']:>10.2f}s {r['gone_s']:>11.2f}s {msgs:>14} {r['bytes_per_worker_s']:>15.0f}")


if __name__ == "__main__":
    main()
