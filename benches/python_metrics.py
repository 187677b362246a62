#!/usr/bin/env python3
"""Update cost from Python: dynamo's metrics against prometheus_client's,
measured in the same run (and a bare C-method call for scale).

    python benches/python_metrics.py            # full run
    python benches/python_metrics.py --quick    # a short smoke run

Prints nanoseconds per call (best of several repeats) and each ratio
dynamo / prometheus_client. Goal: at most 0.1x.
"""

from __future__ import annotations

import argparse
import timeit

import prometheus_client

from dynamo.runtime import DistributedRuntime


def best_ns(stmt: object, number: int, repeat: int) -> float:
    times = timeit.repeat(stmt, number=number, repeat=repeat)  # type: ignore[arg-type]
    return min(times) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    number, repeat = (20_000, 3) if args.quick else (1_000_000, 7)

    drt = DistributedRuntime()
    m = drt.namespace("bench").component("py").endpoint("ep").metrics
    ours_counter = m.create_counter("requests_total", "Requests")
    ours_hist = m.create_histogram("latency_seconds", "Latency")
    ours_vec = m.create_countervec("by_model_total", "By model", ["model"])
    labels = {"model": "llama"}

    registry = prometheus_client.CollectorRegistry()
    pc_counter = prometheus_client.Counter("requests", "Requests", registry=registry)
    pc_hist = prometheus_client.Histogram("latency_seconds", "Latency", registry=registry)
    pc_vec = prometheus_client.Counter("by_model", "By model", ["model"], registry=registry)

    bare: list[int] = []
    baseline = best_ns(bare.clear, number, repeat)
    rows = [
        ("counter.inc()", ours_counter.inc, pc_counter.inc),
        ("histogram.observe(v)", lambda: ours_hist.observe(0.042), lambda: pc_hist.observe(0.042)),
        ("vec.inc({...}) / labels(...).inc()", lambda: ours_vec.inc(labels), lambda: pc_vec.labels(model="llama").inc()),
    ]
    print(f"bare C-method call (list.clear): {baseline:.0f} ns")
    print(f"{'update':38} {'dynamo':>10} {'prometheus_client':>18} {'ratio':>7}")
    for name, ours, theirs in rows:
        o = best_ns(ours, number, repeat)
        t = best_ns(theirs, number, repeat)
        print(f"{name:38} {o:8.0f} ns {t:15.0f} ns {o / t:7.3f}")
    assert ours_counter.get() > 0 and pc_counter._value.get() > 0


if __name__ == "__main__":
    main()
