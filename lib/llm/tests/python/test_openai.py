"""The real `openai` package as the client of `dynamo serve`, streaming and
not; the frontend's /metrics parsed afterwards with prometheus_client's parser
and checked: counts exact, sums plausible against the mock's delays."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator

import openai
import pytest
from llm_support import dynamo_binary
from prometheus_client.parser import text_string_to_metric_families

TTFT_MS, ITL_MS = 40, 5


@pytest.fixture(scope="module")
def frontend() -> Iterator[str]:
    binary = str(dynamo_binary())
    env = {**os.environ, "DYN_SYSTEM_PORT": "0", "RUST_LOG": "warn"}
    env.pop("NATS_SERVER", None)
    proc = subprocess.Popen(
        [binary, "serve", "--http", "127.0.0.1:0", "--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("frontend on http://"), line
    yield line.split()[2]
    proc.kill()
    proc.wait()


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(s: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return s.get((name, frozenset(labels.items())), 0.0)


def test_openai_client_streaming_and_unary(frontend: str) -> None:
    client = openai.OpenAI(base_url=f"{frontend}/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == ["mock-model"]

    streams, tokens_each = 3, 6
    for _ in range(streams):
        chunks = list(
            client.chat.completions.create(
                model="mock-model",
                messages=[{"role": "user", "content": "Tell me a story"}],
                max_tokens=tokens_each,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.startswith("The quick brown fox")
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == tokens_each

    unary = client.chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert unary.usage is not None and unary.usage.completion_tokens == 4
    assert unary.choices[0].finish_reason == "length"
    completion = client.completions.create(model="mock-model", prompt="hello", max_tokens=3)
    assert completion.choices[0].text == "The quick brown"

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "hi"}], max_tokens=0)

    s = samples(frontend)
    m = "mock-model"
    total = "dynamo_frontend_requests_total"
    assert value(s, total, model=m, endpoint="chat_completions", request_type="stream", status="success") == streams
    assert value(s, total, model=m, endpoint="chat_completions", request_type="unary", status="success") == 1
    assert value(s, total, model=m, endpoint="completions", request_type="unary", status="success") == 1
    # A model that is not served is counted under the fixed value, never under its name.
    assert value(s, total, model="unknown", endpoint="chat_completions", request_type="unary", status="error") == 1
    assert not [k for k in s if ("model", "no-such-model") in k[1]]
    assert value(s, "dynamo_frontend_request_errors_total", model=m, endpoint="chat_completions", error_type="invalid_request") == 1
    assert value(s, "dynamo_frontend_inflight_requests", model=m) == 0
    n = streams + 2
    out_tokens = streams * tokens_each + 4 + 3
    assert value(s, "dynamo_frontend_output_sequence_tokens_sum", model=m) == out_tokens
    assert value(s, "dynamo_frontend_time_to_first_token_seconds_count", model=m) == n
    assert value(s, "dynamo_frontend_inter_token_latency_seconds_count", model=m) == out_tokens - n
    ttft_mean = value(s, "dynamo_frontend_time_to_first_token_seconds_sum", model=m) / n
    assert TTFT_MS / 1000 <= ttft_mean < 1.0, ttft_mean
    itl_mean = value(s, "dynamo_frontend_inter_token_latency_seconds_sum", model=m) / (out_tokens - n)
    assert ITL_MS / 1000 * 0.9 <= itl_mean < 0.5, itl_mean
    duration_mean = value(s, "dynamo_frontend_request_duration_seconds_sum", model=m) / n
    assert duration_mean >= ttft_mean
