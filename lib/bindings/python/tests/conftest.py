"""Shared fixtures: a runtime with its system server on a free loopback port,
and a scrape of its real /metrics parsed by prometheus_client's parser."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Optional

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dynamo.runtime import DistributedRuntime


class Scrape:
    """One GET of /metrics, parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for s in family.samples:
                key = (s.name, frozenset(s.labels.items()))
                assert key not in self.samples, f"duplicate series {key}"
                self.samples[key] = s.value

    def value(self, name: str, **labels: str) -> Optional[float]:
        return self.samples.get((name, frozenset(labels.items())))


def scrape(drt: DistributedRuntime) -> Scrape:
    address = drt.system_server_address()
    assert address is not None, "the system server is not running"
    port = address.rsplit(":", 1)[1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return Scrape(resp.read().decode())


@pytest.fixture
def drt(monkeypatch: pytest.MonkeyPatch) -> Iterator[DistributedRuntime]:
    monkeypatch.setenv("DYN_SYSTEM_PORT", "0")
    monkeypatch.setenv("DYN_SYSTEM_HOST", "127.0.0.1")
    monkeypatch.delenv("NATS_SERVER", raising=False)
    yield DistributedRuntime()


EP = {"dynamo_namespace": "ns", "dynamo_component": "comp", "dynamo_endpoint": "ep"}
