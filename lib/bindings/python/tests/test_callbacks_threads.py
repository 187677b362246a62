"""Callbacks (values set in the callback show in the same scrape; a raising
callback is counted and does not break the scrape; text callbacks pass
through) and updates from many Python threads."""

from __future__ import annotations

import threading

from conftest import EP, scrape
from dynamo.runtime import DistributedRuntime

FAILURES = "dynamo_component_metrics_callback_failures_total"


def test_callback_values_show_in_the_same_scrape(drt: DistributedRuntime) -> None:
    endpoint = drt.namespace("ns").component("comp").endpoint("ep")
    gauge = endpoint.metrics.create_intgauge("active_connections", "Active connections")
    calls = []

    def update_metrics() -> None:
        calls.append(1)
        gauge.set(100 + len(calls))

    endpoint.metrics.register_callback(update_metrics)
    assert scrape(drt).value("dynamo_component_active_connections", **EP) == 101
    assert scrape(drt).value("dynamo_component_active_connections", **EP) == 102


def test_raising_callback_is_counted_and_the_scrape_survives(drt: DistributedRuntime) -> None:
    endpoint = drt.namespace("ns").component("comp").endpoint("ep")
    endpoint.metrics.create_intcounter("still_here_total", "Still here").inc()

    def broken() -> None:
        raise RuntimeError("engine unreachable")

    endpoint.metrics.register_callback(broken)
    scrape(drt)
    s = scrape(drt)
    assert s.value(FAILURES, callback="update", failure="error") == 2
    assert s.value("dynamo_component_still_here_total", **EP) == 1


def test_text_callback_passes_engine_metrics_through(drt: DistributedRuntime) -> None:
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    running = Gauge("vllm:num_requests_running", "Running requests", ["model_name"], registry=registry)
    running.labels(model_name="m").set(3)
    drt.metrics.register_prometheus_expfmt_callback(lambda: generate_latest(registry).decode())
    drt.metrics.register_prometheus_expfmt_callback(lambda: "this is not { prometheus")

    def raises() -> str:
        raise ValueError("no engine")

    drt.metrics.register_prometheus_expfmt_callback(raises)
    s = scrape(drt)
    assert s.value("vllm:num_requests_running", model_name="m") == 3
    assert s.value(FAILURES, callback="expfmt", failure="malformed") == 1
    assert s.value(FAILURES, callback="expfmt", failure="error") == 1


def test_many_threads_update_safely(drt: DistributedRuntime) -> None:
    m = drt.namespace("ns").component("comp").endpoint("ep").metrics
    counter = m.create_intcounter("work_total", "Work")
    vec = m.create_intcountervec("work_by_thread_total", "Work by thread", ["parity"])
    hist = m.create_histogram("work_seconds", "Work", buckets=[0.5])
    threads, per_thread = 8, 5_000
    scrapes: list[int] = []
    stop = threading.Event()

    def scraper() -> None:
        while not stop.is_set():
            s = scrape(drt)
            scrapes.append(1)
            assert s.value("dynamo_component_work_total", **EP) is not None

    def worker(i: int) -> None:
        parity = "even" if i % 2 == 0 else "odd"
        for _ in range(per_thread):
            counter.inc()
            vec.inc({"parity": parity})
            hist.observe(0.25)

    watcher = threading.Thread(target=scraper)
    watcher.start()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    watcher.join()
    assert counter.get() == threads * per_thread
    assert vec.get({"parity": "even"}) == threads // 2 * per_thread
    assert hist.get_sample_count() == threads * per_thread
    s = scrape(drt)
    assert s.value("dynamo_component_work_total", **EP) == threads * per_thread
    assert s.value("dynamo_component_work_by_thread_total", parity="odd", **EP) == threads // 2 * per_thread
    assert len(scrapes) > 0
