"""Parses Prometheus text with prometheus_client's reference parser.

Reads a JSON list of exposition texts on stdin and writes, for each, either
{"ok": true, "families": {name: type}, "samples": [[name, labels, value], ...]}
or {"ok": false, "error": "..."}. Used by the Rust integration tests.
"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def parse(text):
    try:
        families = {}
        samples = []
        for family in text_string_to_metric_families(text):
            families[family.name] = family.type
            for s in family.samples:
                value = s.value
                if math.isinf(value) or math.isnan(value):
                    value = str(value)
                samples.append([s.name, s.labels, value])
        return {"ok": True, "families": families, "samples": samples}
    except Exception as e:  # the parser raises ValueError and others
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


json.dump([parse(t) for t in json.load(sys.stdin)], sys.stdout)
