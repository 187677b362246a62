"""DYN_SYSTEM_PORT works for a Python process exactly as for a Rust one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request

SCRIPT = """
import sys, time
from dynamo.runtime import DistributedRuntime
drt = DistributedRuntime()
drt.namespace("ns").metrics.create_intgauge("alive", "Alive").set(1)
print(drt.system_server_address(), flush=True)
sys.stdin.readline()
"""


def run(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_port_serves_metrics_health_and_live() -> None:
    port = free_port()
    proc = run({"DYN_SYSTEM_PORT": str(port), "DYN_SYSTEM_HOST": "127.0.0.1"})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"127.0.0.1:{port}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert 'dynamo_component_alive{dynamo_namespace="ns"} 1' in r.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert json.loads(r.read())["status"] == "ready"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/live", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.kill()
        proc.wait()


def test_disabled_by_default_and_bad_values_are_value_errors() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DYN_SYSTEM_PORT"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, input="\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
    bad = subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**os.environ, "DYN_SYSTEM_PORT": "eighty"}, input="\n", capture_output=True, text=True, timeout=60
    )
    assert bad.returncode != 0
    assert "ValueError" in bad.stderr and '"eighty"' in bad.stderr, bad.stderr


def test_port_in_use_is_an_os_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env={**os.environ, "DYN_SYSTEM_PORT": str(port), "DYN_SYSTEM_HOST": "127.0.0.1"},
            input="\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode != 0
    assert "OSError" in out.stderr and f"127.0.0.1:{port}" in out.stderr, out.stderr
