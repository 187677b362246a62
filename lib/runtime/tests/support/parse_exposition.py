"""Parses exposition text with prometheus_client's reference parsers.

Reads a JSON list on stdin: each item is either a string (text format 0.0.4)
or {"format": "openmetrics", "text": "..."} (OpenMetrics 1.0, parsed by
prometheus_client's strict OpenMetrics parser). Writes, for each, either
{"ok": true, "families": {name: type}, "samples": [[name, labels, value], ...],
 "exemplars": [[name, labels, exemplar_labels, exemplar_value, timestamp], ...]}
or {"ok": false, "error": "..."}. Used by the Rust integration tests.
"""
import json
import math
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families


def number(value):
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    return value


def parse(item):
    if isinstance(item, dict):
        text, parser = item["text"], openmetrics_families
    else:
        text, parser = item, text_string_to_metric_families
    try:
        families = {}
        samples = []
        exemplars = []
        for family in parser(text):
            families[family.name] = family.type
            for s in family.samples:
                samples.append([s.name, s.labels, number(s.value)])
                if s.exemplar is not None:
                    e = s.exemplar
                    ts = None if e.timestamp is None else float(e.timestamp)
                    exemplars.append([s.name, s.labels, e.labels, number(e.value), ts])
        return {
            "ok": True,
            "families": families,
            "samples": samples,
            "exemplars": exemplars,
        }
    except Exception as e:  # the parsers raise ValueError and others
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


json.dump([parse(t) for t in json.load(sys.stdin)], sys.stdout)
