"""Every method of the developer guide's Python section, read back through
get() and through the process's real /metrics."""

from __future__ import annotations

import gzip
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from conftest import EP, scrape
from dynamo.prometheus_metrics import (
    Counter,
    CounterVec,
    Gauge,
    GaugeVec,
    Histogram,
    HistogramVec,
    IntCounter,
    IntCounterVec,
    IntGauge,
    IntGaugeVec,
)
from dynamo.runtime import DistributedRuntime


def ep(drt: DistributedRuntime):  # type: ignore[no-untyped-def]
    return drt.namespace("ns").component("comp").endpoint("ep")


def test_counters(drt: DistributedRuntime) -> None:
    m = ep(drt).metrics
    c = m.create_counter("latency_seconds_total", "Seconds spent")
    ic = m.create_intcounter("requests_total", "Total requests")
    assert isinstance(c, Counter) and isinstance(ic, IntCounter)
    c.inc()
    c.inc_by(1.5)
    ic.inc()
    ic.inc_by(5)
    assert c.get() == 2.5
    assert ic.get() == 6
    s = scrape(drt)
    assert s.value("dynamo_component_latency_seconds_total", **EP) == 2.5
    assert s.value("dynamo_component_requests_total", **EP) == 6
    assert s.types["dynamo_component_requests"] == "counter"
    with pytest.raises(ValueError, match="only goes up"):
        ic.inc_by(-1)
    with pytest.raises(ValueError, match="only goes up"):
        c.inc_by(-0.5)
    with pytest.raises(ValueError, match="only goes up"):
        c.inc_by(float("nan"))
    assert ic.get() == 6


def test_gauges(drt: DistributedRuntime) -> None:
    m = ep(drt).metrics
    g = m.create_gauge("temperature", "Temperature")
    ig = m.create_intgauge("active_connections", "Active connections")
    assert isinstance(g, Gauge) and isinstance(ig, IntGauge)
    ig.set(42)
    ig.inc()
    ig.dec()
    ig.dec()
    ig.inc_by(10)
    ig.dec_by(3)
    g.set(1.5)
    g.inc()
    g.dec_by(0.25)
    assert ig.get() == 48
    assert g.get() == 2.25
    s = scrape(drt)
    assert s.value("dynamo_component_active_connections", **EP) == 48
    assert s.value("dynamo_component_temperature", **EP) == 2.25
    assert s.types["dynamo_component_temperature"] == "gauge"


def test_histograms(drt: DistributedRuntime) -> None:
    m = ep(drt).metrics
    h = m.create_histogram("latency_seconds", "Request latency", buckets=[0.001, 0.01, 0.1, 1.0, 10.0])
    assert isinstance(h, Histogram)
    h.observe(0.023)
    h.observe(5)
    assert h.get_sample_count() == 2
    assert h.get_sample_sum() == pytest.approx(5.023)
    s = scrape(drt)
    b = "dynamo_component_latency_seconds_bucket"
    assert s.value(b, le="0.01", **EP) == 0
    assert s.value(b, le="0.1", **EP) == 1
    assert s.value(b, le="10", **EP) == 2
    assert s.value(b, le="+Inf", **EP) == 2
    assert s.value("dynamo_component_latency_seconds_count", **EP) == 2
    d = m.create_histogram("default_buckets_seconds", "Default buckets")
    d.observe(0.3)
    assert scrape(drt).value("dynamo_component_default_buckets_seconds_bucket", le="0.5", **EP) == 1
    for bad in ([], [1.0, 1.0], [2.0, 1.0], [float("inf")]):
        with pytest.raises(ValueError, match="buckets"):
            m.create_histogram("bad_seconds", "Bad", buckets=bad)


def test_vecs(drt: DistributedRuntime) -> None:
    m = ep(drt).metrics
    cv = m.create_countervec("tokens_total", "Tokens", ["model"])
    icv = m.create_intcountervec("requests_by_model", "Requests by model", ["model_type", "model_size"])
    gv = m.create_gaugevec("load", "Load", ["gpu"])
    igv = m.create_intgaugevec("gpu_memory_bytes", "GPU memory by device", ["gpu_id", "memory_type"])
    hv = m.create_histogramvec("step_seconds", "Step time", ["phase"], buckets=[0.1, 1.0])
    for obj, cls in ((cv, CounterVec), (icv, IntCounterVec), (gv, GaugeVec), (igv, IntGaugeVec), (hv, HistogramVec)):
        assert isinstance(obj, cls)
    cv.inc({"model": "a"})
    cv.inc_by(2.5, {"model": "a"})
    icv.inc({"model_type": "llama", "model_size": "7b"})
    icv.inc_by(4, {"model_size": "7b", "model_type": "llama"})
    gv.set(0.5, {"gpu": "0"})
    gv.inc({"gpu": "0"})
    gv.dec_by(0.25, {"gpu": "0"})
    igv.set(8192, {"gpu_id": "0", "memory_type": "allocated"})
    igv.inc_by(8, {"gpu_id": "0", "memory_type": "allocated"})
    igv.dec({"gpu_id": "0", "memory_type": "allocated"})
    hv.observe(0.5, {"phase": "prefill"})
    assert cv.get({"model": "a"}) == 3.5
    assert icv.get({"model_type": "llama", "model_size": "7b"}) == 5
    assert gv.get({"gpu": "0"}) == 1.25
    assert igv.get({"gpu_id": "0", "memory_type": "allocated"}) == 8199
    assert hv.get_sample_count({"phase": "prefill"}) == 1
    s = scrape(drt)
    assert s.value("dynamo_component_tokens_total", model="a", **EP) == 3.5
    # Exposed under the name given; prometheus_client's parser reads a counter
    # sample without the suffix as `_total`.
    assert "\ndynamo_component_requests_by_model{" in s.text
    assert s.value("dynamo_component_requests_by_model_total", model_type="llama", model_size="7b", **EP) == 5
    assert s.value("dynamo_component_load", gpu="0", **EP) == 1.25
    assert s.value("dynamo_component_gpu_memory_bytes", gpu_id="0", memory_type="allocated", **EP) == 8199
    assert s.value("dynamo_component_step_seconds_bucket", phase="prefill", le="1", **EP) == 1
    assert gv.variable_labels() == ["gpu"]
    assert igv.variable_labels() == ["gpu_id", "memory_type"]
    cv.remove({"model": "a"})
    assert scrape(drt).value("dynamo_component_tokens_total", model="a", **EP) is None


def test_vec_label_errors(drt: DistributedRuntime) -> None:
    v = ep(drt).metrics.create_intcountervec("by_model", "By model", ["model"])
    with pytest.raises(ValueError, match="expected the labels"):
        v.inc({})
    with pytest.raises(ValueError, match="expected the labels"):
        v.inc({"model": "a", "extra": "b"})
    with pytest.raises(ValueError, match="expected the labels"):
        v.inc({"modell": "a"})
    with pytest.raises(TypeError, match="must be a str"):
        v.inc({"model": 7})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        v.inc(["model"])  # type: ignore[arg-type]


def test_constant_labels_and_introspection(drt: DistributedRuntime) -> None:
    m = ep(drt).metrics
    counter = m.create_intcounter("requests_total", "Total requests", [("region", "us-west"), ("env", "prod")])
    counter.inc()
    assert counter.name() == "dynamo_component_requests_total"
    assert counter.const_labels() == {**EP, "region": "us-west", "env": "prod"}
    vec = m.create_gaugevec("g", "G", ["a", "b"], [("zone", "1")])
    assert vec.const_labels() == {**EP, "zone": "1"}
    assert vec.name() == "dynamo_component_g"
    s = scrape(drt)
    assert s.value("dynamo_component_requests_total", region="us-west", env="prod", **EP) == 1


def test_every_level_and_get_or_create(drt: DistributedRuntime) -> None:
    ns = drt.namespace("ns")
    comp = ns.component("comp")
    drt.metrics.create_intgauge("top", "Top").set(1)
    ns.metrics.create_intgauge("at_ns", "At ns").set(2)
    comp.metrics.create_intgauge("at_comp", "At comp").set(3)
    a = comp.endpoint("ep").metrics.create_intcounter("hits_total", "Hits")
    b = drt.namespace("ns").component("comp").endpoint("ep").metrics.create_intcounter("hits_total", "Hits")
    a.inc()
    b.inc()
    assert a.get() == 2
    s = scrape(drt)
    assert s.value("dynamo_component_top") == 1
    assert s.value("dynamo_component_at_ns", dynamo_namespace="ns") == 2
    assert s.value("dynamo_component_at_comp", dynamo_namespace="ns", dynamo_component="comp") == 3
    assert s.value("dynamo_component_hits_total", **EP) == 2
    assert s.value("dynamo_component_system_uptime_seconds") is not None
    text = comp.metrics.prometheus_metrics_fmt()
    assert "dynamo_component_at_comp" in text and "dynamo_component_top" not in text


def test_bad_input_raises_value_or_type_error(drt: DistributedRuntime) -> None:
    m = ep(drt).metrics
    with pytest.raises(ValueError, match='invalid metric name "__"'):
        m.create_counter("__", "h")
    with pytest.raises(ValueError, match="help text"):
        m.create_counter("x_total", "")
    with pytest.raises(ValueError, match='invalid label name "dynamo_endpoint"'):
        m.create_counter("x_total", "h", [("dynamo_endpoint", "v")])
    with pytest.raises(ValueError, match='invalid label name "le"'):
        m.create_countervec("y_total", "h", ["le"])
    m.create_counter("z_total", "Z")
    with pytest.raises(ValueError, match="conflicts"):
        m.create_gauge("z_total", "Z")
    with pytest.raises(ValueError, match='invalid component name ""'):
        drt.namespace("ns").component("").endpoint("e").metrics.create_counter("q", "Q")
    with pytest.raises(TypeError):
        m.create_counter(123, "h")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="length 2"):
        m.create_counter("w_total", "h", [("a",)])  # type: ignore[list-item]


def test_series_limit_sends_new_label_sets_to_the_overflow_series(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYN_SYSTEM_PORT", "0")
    monkeypatch.setenv("DYN_SYSTEM_HOST", "127.0.0.1")
    monkeypatch.setenv("DYN_METRICS_SERIES_LIMIT", "3")
    drt = DistributedRuntime()
    by_user = ep(drt).metrics.create_intcountervec("logins_total", "Logins", ["user"])
    assert by_user.series_limit() == 3  # the process's limit
    for i in range(10):
        by_user.inc({"user": f"u{i}"})
    s = scrape(drt)
    users = {k[1] for k in s.samples if k[0] == "dynamo_component_logins_total"}
    assert len(users) == 4, users  # three series and the overflow series
    assert s.value("dynamo_component_logins_total", user="__overflow__", **EP) == 7
    assert s.value("dynamo_component_metrics_series_refused_total", metric="dynamo_component_logins_total") == 7
    # Per family: a larger limit makes room; existing series keep counting.
    by_user.set_series_limit(5)
    by_user.inc({"user": "u3"})
    by_user.inc({"user": "u0"})
    assert by_user.get({"user": "u3"}) == 1 and by_user.get({"user": "u0"}) == 2
    with pytest.raises(ValueError, match="series limit 0"):
        by_user.set_series_limit(0)
    monkeypatch.setenv("DYN_METRICS_SERIES_LIMIT", "none")
    with pytest.raises(ValueError, match="DYN_METRICS_SERIES_LIMIT"):
        DistributedRuntime()


def test_metrics_are_gzipped_when_the_scraper_accepts_it(drt: DistributedRuntime) -> None:
    """Prometheus asks for gzip; a plain client gets plain text. Both parse to the same series."""
    drt.metrics.create_intcounter("gz_total", "Counted").inc()
    address = drt.system_server_address()
    assert address is not None
    url = f"http://127.0.0.1:{address.rsplit(':', 1)[1]}/metrics"
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.headers["Vary"] == "Accept, Accept-Encoding"
        raw = r.read()
    text = gzip.decompress(raw).decode()
    assert len(raw) < len(text)
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Encoding"] is None
        plain = r.read().decode()
    def names(t: str) -> list[str]:
        return sorted(f.name for f in text_string_to_metric_families(t))

    assert names(text) == names(plain)
    assert "dynamo_component_gz_total 1" in text


PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def test_openmetrics_with_exemplars_when_the_scraper_asks_for_it(drt: DistributedRuntime) -> None:
    """Prometheus's Accept header gets OpenMetrics, exemplars included, read by
    prometheus_client's strict OpenMetrics parser; curl's gets text 0.0.4."""
    h = drt.metrics.create_histogram("py_wait_seconds", "Wait", buckets=[0.1, 1.0])
    h.observe(0.05)
    h.observe_with_exemplar(0.5, {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "request_id": "r-1"})
    with pytest.raises(ValueError, match="invalid label name"):
        h.observe_with_exemplar(0.5, {"bad name": "x"})
    with pytest.raises(ValueError, match="more than the 128"):
        h.observe_with_exemplar(0.5, {"id": "x" * 200})
    assert h.get_sample_count() == 2
    address = drt.system_server_address()
    assert address is not None
    url = f"http://127.0.0.1:{address.rsplit(':', 1)[1]}/metrics"
    request = urllib.request.Request(url, headers={"Accept": PROMETHEUS_ACCEPT})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.headers["Content-Type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
        text = r.read().decode()
    assert text.endswith("# EOF\n")
    exemplars = [
        (s.labels["le"], s.exemplar)
        for f in openmetrics_families(text)
        if f.name == "dynamo_component_py_wait_seconds"
        for s in f.samples
        if s.exemplar is not None
    ]
    assert len(exemplars) == 1
    le, e = exemplars[0]
    assert le == "1"
    assert e.labels == {"request_id": "r-1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    assert e.value == 0.5 and e.timestamp is not None
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        plain = r.read().decode()
    assert " # {" not in plain and "# EOF" not in plain


PROTOBUF_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one protobuf message: varints as
    ints, fixed64 as 8 raw bytes, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            v, i = _varint(buf, i)
            out.append((field, v))
        elif wire_type == 1:
            out.append((field, buf[i : i + 8]))
            i += 8
        elif wire_type == 2:
            n, i = _varint(buf, i)
            out.append((field, buf[i : i + n]))
            i += n
        else:
            raise AssertionError(f"wire type {wire_type}")
    return out


def test_protobuf_with_native_buckets_when_prometheus_asks_for_it(drt: DistributedRuntime) -> None:
    """With native histograms on, Prometheus asks for protobuf first: a Python
    histogram's observations are in its native buckets (schema 3), beside the
    classic ones, in length-delimited MetricFamily messages."""
    h = drt.metrics.create_histogram("py_native_seconds", "Native", buckets=[0.1, 1.0])
    for v in (0.01, 0.01, 0.5, 30.0):
        h.observe(v)
    address = drt.system_server_address()
    assert address is not None
    url = f"http://127.0.0.1:{address.rsplit(':', 1)[1]}/metrics"
    request = urllib.request.Request(url, headers={"Accept": PROTOBUF_ACCEPT})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/vnd.google.protobuf;")
        body = r.read()
    families: dict[str, list[tuple[int, int | bytes]]] = {}
    i = 0
    while i < len(body):
        n, i = _varint(body, i)
        fields = _fields(body[i : i + n])
        i += n
        name = next(v for f, v in fields if f == 1)
        assert isinstance(name, bytes)
        families[name.decode()] = fields
    family = families["dynamo_component_py_native_seconds"]
    assert (3, 4) in family  # type HISTOGRAM
    metric = next(v for f, v in family if f == 4)
    assert isinstance(metric, bytes)
    histogram = next(v for f, v in _fields(metric) if f == 7)
    assert isinstance(histogram, bytes)
    hf = _fields(histogram)
    assert (1, 4) in hf  # sample_count
    assert (5, 6) in hf  # schema 3, zigzag-encoded
    classic = [dict(_fields(b)) for f, b in hf if f == 3 and isinstance(b, bytes)]
    assert [b[1] for b in classic] == [2, 3]  # cumulative counts at le=0.1 and le=1
    deltas = next(v for f, v in hf if f == 13)
    assert isinstance(deltas, bytes)
    counts, total, j = [], 0, 0
    while j < len(deltas):
        z, j = _varint(deltas, j)
        total += (z >> 1) ^ -(z & 1)
        counts.append(total)
    assert sorted(counts) == [1, 1, 2]  # 0.01 twice, 0.5 and 30 once each
