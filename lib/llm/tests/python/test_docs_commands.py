"""The shell blocks of the README and docs/ marked `<!-- runnable -->` run as
written: each with `bash -euo pipefail` from the repository root, against a
deployment started the way the docs start it (`dynamo serve`: the frontend on
:8080, the system server on :8081; Prometheus on :9090 with
`deploy/metrics/prometheus.yml`). `dynamo` on PATH is the binary cargo built,
what `cargo install --path lib/llm` installs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_support import ROOT, dynamo_binary, tool

MARK = "<!-- runnable -->"
BLOCK = re.compile(re.escape(MARK) + r"\s*\n```(?:bash|sh)\n(.*?)```", re.S)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "deploy" / "metrics" / "README.md"]
# Each wait and each block has a deadline: a block that hangs fails, it does not stall the suite.
READY_SECONDS = 60
BLOCK_SECONDS = float(os.environ.get("DYN_DOCS_BLOCK_TIMEOUT", "300"))


def runnable_blocks() -> list[tuple[str, str]]:
    blocks = []
    for doc in DOCS:
        text = doc.read_text()
        for m in BLOCK.finditer(text):
            line = text[: m.start()].count("\n") + 1
            blocks.append((f"{doc.relative_to(ROOT)}:{line}", m.group(1)))
    return blocks


def wait_until_ok(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args!r} exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {READY_SECONDS} s")


@pytest.fixture(scope="module")
def docs_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    binary = dynamo_binary()
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "dynamo").symlink_to(binary)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DYN_LOG": "warn"}
    for var in ("NATS_SERVER", "DYN_SYSTEM_PORT", "DYN_SYSTEM_HOST"):
        env.pop(var, None)
    serve = subprocess.Popen([str(binary), "serve"], env=env, stdout=subprocess.DEVNULL)
    prometheus = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={ROOT / 'deploy' / 'metrics' / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path_factory.mktemp('prometheus')}",
            "--web.listen-address=127.0.0.1:9090",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ok("http://127.0.0.1:8081/health", serve)
        wait_until_ok("http://127.0.0.1:8080/v1/models", serve)
        wait_until_ok("http://127.0.0.1:9090/-/ready", prometheus)
        yield env
    finally:
        for proc in (serve, prometheus):
            proc.kill()
            proc.wait()
        shutil.rmtree(ROOT / "dynamo-venv", ignore_errors=True)


def test_the_docs_mark_their_runnable_blocks() -> None:
    found = {where.split(":")[0] for where, _ in runnable_blocks()}
    assert {"README.md", "docs/frontend.md", "docs/operations.md"} <= found, found


@pytest.mark.parametrize(("where", "script"), runnable_blocks(), ids=[w for w, _ in runnable_blocks()])
def test_block_runs_as_written(docs_env: dict[str, str], where: str, script: str) -> None:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=docs_env,
        capture_output=True,
        text=True,
        timeout=BLOCK_SECONDS,
    )
    assert result.returncode == 0, f"{where} failed ({result.returncode}):\n{script}\n--- stderr\n{result.stderr[:3000]}"
