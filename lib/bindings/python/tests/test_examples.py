"""The examples under examples/python/metrics run as the guide says and serve
their metrics (custom and automatic) on DYN_SYSTEM_PORT."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Scrape

EXAMPLES = Path(__file__).resolve().parents[4] / "examples" / "python" / "metrics"
LABELS = {"dynamo_namespace": "my_namespace", "dynamo_component": "my_component", "dynamo_endpoint": "my_endpoint"}


def fetch(url: str) -> Scrape:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return Scrape(r.read().decode())


@pytest.mark.parametrize(
    ("script", "custom"),
    [("server_with_loop.py", "dynamo_component_requests_sent_total"), ("server_with_callback.py", "dynamo_component_tokens_total")],
)
def test_example_serves_metrics(script: str, custom: str) -> None:
    env = {**os.environ, "DYN_SYSTEM_PORT": "0", "DYN_SYSTEM_HOST": "127.0.0.1", "DYN_LOG": "warn"}
    env.pop("NATS_SERVER", None)
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), "--duration", "3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        assert first[:2] == ["metrics", "on"], first
        url = first[2]
        deadline = time.monotonic() + 10
        while True:
            s = fetch(url)
            if (s.value("dynamo_component_requests_total", **LABELS) or 0) >= 3:
                break
            assert time.monotonic() < deadline, "no traffic"
            time.sleep(0.2)
        assert (s.value(custom, **LABELS) or 0) > 0
        assert s.value("dynamo_component_active_connections", **LABELS) is not None
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out.startswith("done:")
    finally:
        proc.kill()
        proc.wait()
