"""Helpers for the tests that run the `dynamo` binary: where the repository
is, where cargo put the binary (honouring `CARGO_TARGET_DIR` and
`build.target-dir`, through `cargo metadata`), and deployments of real
processes (nats-server, etcd, workers, frontends) with their readiness checks,
their scrapes and the validity checks of what they serve."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DEADLINE = 30.0  # seconds, for every wait of the tests that run processes

ROOT = Path(__file__).resolve().parents[4]


@cache
def target_dir() -> Path:
    """Cargo's target directory for this workspace."""
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(json.loads(out)["target_directory"])


def dynamo_binary() -> Path:
    """The `dynamo` binary: `DYNAMO_BIN` when set, else the newest of cargo's
    debug and release builds."""
    if "DYNAMO_BIN" in os.environ:
        return Path(os.environ["DYNAMO_BIN"])
    built = [p for p in (target_dir() / "debug" / "dynamo", target_dir() / "release" / "dynamo") if p.is_file()]
    if not built:
        raise FileNotFoundError(
            f"no dynamo binary under {target_dir()}: build it first (cargo build -p dynamo-llm --bin dynamo)"
        )
    return max(built, key=lambda p: p.stat().st_mtime)


def tool(name: str) -> str:
    """A program from PATH or /usr/sbin (Debian puts nats-server there)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (scripts/test.sh installs it)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Deployment:
    api: int  # the frontend's port
    system: int  # a system server's port (the worker's)
    pids: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Servers the deployment depends on, by name ("nats", "etcd"): the
    # command that starts each again on the same ports and data.
    services: dict[str, list[str]] = field(default_factory=dict)
    nats_monitor: int = 0  # nats-server's monitoring port
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_systems: list[int] = field(default_factory=list)  # their system servers' ports
    frontend: subprocess.Popen[bytes] | None = None
    worker_env: dict[str, str] = field(default_factory=dict)  # the environment workers were started with

    def alive(self) -> None:
        for p in self.procs:
            assert p.poll() is None, f"{p.args!r} exited with {p.returncode}"


def wait_for(url: str, deployment: Deployment, check: str = "") -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        deployment.alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if check in r.read().decode():
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {DEADLINE} s")


def process_env(**extra: str) -> dict[str, str]:
    """The environment for a `dynamo` process: this one's, without the
    variables that would point it elsewhere, with `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_SERVER", "ETCD_ENDPOINTS", "DYN_SYSTEM_PORT", "DYN_SYSTEM_HOST")}
    env.update(extra)
    return env


def start_nats(d: Deployment, store: Path) -> str:
    """Starts a nats-server (with its monitoring port) on a free port; returns its URL."""
    port, d.nats_monitor = free_port(), free_port()
    cmd = [tool("nats-server"), "-js", "-a", "127.0.0.1", "-p", str(port), "-m", str(d.nats_monitor), "-sd", str(store)]
    d.services["nats"] = cmd
    d.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return f"nats://127.0.0.1:{port}"


def start_etcd(d: Deployment, data: Path) -> str:
    """Starts etcd (Debian package etcd-server) on free ports with its data
    in `data`, and waits until it is healthy; returns its endpoint."""
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    cmd = [
        tool("etcd"), "--data-dir", str(data), "--name", "dynamo-test",
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"dynamo-test={peer}",
    ]  # fmt: skip
    d.services["etcd"] = cmd
    d.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_for(f"{client}/health", d, check='"true"')
    return client


def kill_service(d: Deployment, name: str) -> None:
    """Kills (SIGKILL) the server `name` of the deployment."""
    for p in [p for p in d.procs if p.args == d.services[name]]:
        p.kill()
        p.wait()
        d.procs.remove(p)


def start_service_again(d: Deployment, name: str) -> None:
    """Starts the server `name` again, on its ports and with its data."""
    d.procs.insert(0, subprocess.Popen(d.services[name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def start(d: Deployment, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Starts `cmd`, again while it exits at once (nats-server may still be starting)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        if p.poll() is None:
            d.procs.append(p)
            return p
        assert time.monotonic() < deadline, f"{cmd} keeps exiting"


def stop(d: Deployment) -> None:
    """Kills every process of the deployment, the last started first."""
    for p in reversed(d.procs):
        if p.poll() is None:
            p.kill()
        p.wait()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE) as r:
        text: str = r.read().decode()
    return text


def valid(text: str) -> dict[str, float]:
    """Parses with prometheus_client and checks with promtool; returns the samples."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
    check = subprocess.run([tool("promtool"), "check", "metrics"], input=text.encode(), capture_output=True)
    errors = [l for l in check.stdout.decode().splitlines() + check.stderr.decode().splitlines() if "error" in l.lower()]
    assert not errors, errors
    return samples
