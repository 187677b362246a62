#!/usr/bin/env python3
"""A Hugging Face ``transformers`` causal LM served behind the frontend through
``dynamo.llm`` (CUDA when present, else CPU).

Give it a local model directory (``--model-path``; nothing is downloaded), or
``--random-tiny`` for a small randomly initialised GPT-2 built from a config,
whose vocabulary is the frontend's (tiktoken ``cl100k_base``, 100,277 ids), so
the answer detokenizes as text (random text: the weights are random).

The frontend tokenizes prompts with its own tokenizer; a local model with
another vocabulary gets the ids modulo its vocabulary size, and what it
generates is read by the frontend's tokenizer. That serves to measure and to
watch the metrics, not to read the answers.

Each request runs its own generation loop with the model's KV cache
(``past_key_values``); requests are not batched together. The engine gauges
count 16-token blocks of every running sequence against ``--kv-blocks``.

    nats-server -p 4222 &
    dynamo serve --nats nats://127.0.0.1:4222 --role frontend --http 0.0.0.0:8080 &
    NATS_SERVER=nats://127.0.0.1:4222 DYN_SYSTEM_PORT=8081 \\
      python3 examples/engines/transformers_engine.py --random-tiny --model tiny-gpt2
    dynamo load --model tiny-gpt2 --requests 100 --concurrency 8

Needs ``torch`` and ``transformers`` (``pip install torch transformers``) beside
the ``dynamo`` package.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import threading
import time
from collections.abc import AsyncGenerator
from typing import Any

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from dynamo.llm import EngineMetrics, register_llm
from dynamo.runtime import DistributedRuntime, shutdown_signal

CL100K_VOCAB = 100_277
BLOCK_SIZE = 16


def load_model(args: argparse.Namespace, device: torch.device) -> Any:
    if args.random_tiny:
        torch.manual_seed(0)
        config = GPT2Config(vocab_size=CL100K_VOCAB, n_positions=2048, n_embd=64, n_layer=2, n_head=2)
        model = GPT2LMHeadModel(config)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model_path, torch_dtype="auto", local_files_only=True)
    return model.to(device).eval()


class Engine:
    """One generation loop per request, run on a worker thread (the model's
    forward pass holds the GIL's peers off the event loop)."""

    def __init__(self, model: Any, device: torch.device, metrics: EngineMetrics, kv_blocks: int) -> None:
        self.model = model
        self.device = device
        self.vocab = int(model.config.vocab_size)
        self.metrics = metrics
        self.kv_blocks = kv_blocks
        self.active = 0
        self.waiting = 0
        self.lock = threading.Lock()
        self.metrics.set_kv_stats(0, kv_blocks)
        self.metrics.set_waiting(0)

    def _account(self, blocks: int) -> None:
        with self.lock:
            self.active += blocks
            self.metrics.set_kv_stats(min(self.active, self.kv_blocks), self.kv_blocks)

    @torch.inference_mode()
    def _step(self, ids: torch.Tensor, past: Any, temperature: float | None) -> tuple[int, Any]:
        out = self.model(input_ids=ids, past_key_values=past, use_cache=True)
        logits = out.logits[0, -1].float()
        if temperature and temperature > 0:
            token = int(torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1).item())
        else:
            token = int(torch.argmax(logits).item())
        return token, out.past_key_values

    async def generate(self, request: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        prompt = [t % self.vocab for t in (request["token_ids"] or [0])]
        stop = request.get("stop_conditions") or {}
        max_tokens = int(stop.get("max_tokens") or request.get("max_tokens") or 16)
        temperature = (request.get("sampling_options") or {}).get("temperature")
        if temperature is not None and temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        limit = int(getattr(self.model.config, "n_positions", 0) or getattr(self.model.config, "max_position_embeddings", 2048))
        max_tokens = max(0, min(max_tokens, limit - len(prompt)))
        held = math.ceil(len(prompt) / BLOCK_SIZE)
        self._account(held)
        try:
            ids = torch.tensor([prompt], device=self.device)
            past = None
            for i in range(max_tokens):
                token, past = await asyncio.to_thread(self._step, ids, past, temperature)
                ids = torch.tensor([[token]], device=self.device)
                grown = math.ceil((len(prompt) + i + 1) / BLOCK_SIZE)
                if grown > held:
                    self._account(grown - held)
                    held = grown
                yield {"token_ids": [token], "finish_reason": "length" if i + 1 == max_tokens else None}
        finally:
            self._account(-held)


async def serve(args: argparse.Namespace) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.monotonic()
    model = load_model(args, device)
    print(f"model loaded on {device} in {time.monotonic() - started:.1f} s", flush=True)
    drt = DistributedRuntime()
    endpoint = drt.namespace("dynamo").component("transformers").endpoint("generate")
    engine = Engine(model, device, EngineMetrics(endpoint), args.kv_blocks)
    served = await endpoint.serve_endpoint(engine.generate)
    card = await register_llm(endpoint, args.model)
    print(f"serving {args.model!r}", flush=True)
    await shutdown_signal()
    await card.unregister()
    await served.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-path", help="a local model directory (config, weights)")
    source.add_argument("--random-tiny", action="store_true", help="a small random GPT-2 with the frontend's vocabulary")
    parser.add_argument("--model", default="transformers", help="the model name the frontend serves it as")
    parser.add_argument("--kv-blocks", type=int, default=4096, help="KV-cache blocks the gauges count against")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
