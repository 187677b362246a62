"""Helpers for the tests that run the `dynamo` binary: where the repository
is, and where cargo put the binary (honouring `CARGO_TARGET_DIR` and
`build.target-dir`, through `cargo metadata`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

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
