"""Python bindings of dynamo-runtime.

- ``dynamo.runtime``: ``DistributedRuntime`` and the hierarchy (namespace,
  component, endpoint), their ``metrics``, serving and calling endpoints.
- ``dynamo.prometheus_metrics``: the metric classes the ``metrics.create_*``
  methods return.
"""
