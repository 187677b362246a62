"""Engines written in Python behind the frontend.

``await register_llm(endpoint, "my-model")`` publishes that ``endpoint``
serves the model; ``await endpoint.serve_endpoint(handler)`` serves it with an
async generator that receives the preprocessed request (``token_ids``,
``max_tokens``, ``stop_conditions``, ``sampling_options``) and yields
``{"token_ids": [...], "finish_reason": None | "stop" | "length"}``.
``EngineMetrics(endpoint)`` sets the engine's KV-cache and scheduler gauges.
"""

from dynamo._core import EngineMetrics, RegisteredModel, register_llm

__all__ = ["EngineMetrics", "RegisteredModel", "register_llm"]
