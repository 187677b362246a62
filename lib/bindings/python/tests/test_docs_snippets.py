"""Every ```python block of docs/python.md runs as written, each in a fresh
interpreter, so the guide's code stays runnable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[4] / "docs" / "python.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", GUIDE.read_text(), flags=re.S | re.M)


def test_the_guide_has_python_blocks() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_guide_block_runs(index: int) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DYN_SYSTEM_PORT", "NATS_SERVER")}
    done = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"block {index}:\n{BLOCKS[index]}\n{done.stdout}\n{done.stderr}"
