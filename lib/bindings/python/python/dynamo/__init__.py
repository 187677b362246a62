"""Python bindings of dynamo-runtime.

- ``dynamo.runtime``: ``DistributedRuntime`` and the hierarchy (namespace,
  component, endpoint), their ``metrics``, serving and calling endpoints.
- ``dynamo.prometheus_metrics``: the metric classes the ``metrics.create_*``
  methods return.
"""

import atexit

from dynamo import _core

# Before the interpreter finalizes: stop runtime threads from calling into
# Python, and let one that is handing a result to asyncio finish.
atexit.register(_core._shutdown)
