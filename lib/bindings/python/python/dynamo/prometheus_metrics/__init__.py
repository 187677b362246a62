"""The metric classes returned by ``metrics.create_*``."""

from dynamo._core import (
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

__all__ = [
    "Counter",
    "CounterVec",
    "Gauge",
    "GaugeVec",
    "Histogram",
    "HistogramVec",
    "IntCounter",
    "IntCounterVec",
    "IntGauge",
    "IntGaugeVec",
]
