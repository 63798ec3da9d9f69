"""Registry of metrics. A metric accumulates on the device (no host sync per batch):
``update(output, target)`` adds to tensors listed by ``state_tensors()`` (sums and counts, so the
engine can all-reduce them across workers), ``compute()`` returns ``{name: float}`` from them, and
``reset()`` zeroes them."""
from ..utils.registry import Registry

METRICS = Registry("metric")
register_metric = METRICS.register
