"""Metrics (accumulated on the device; all-reduced across workers by the engine)."""
from .registry import METRICS, register_metric
from . import distillation, topk, seg_metrics  # noqa: F401  (register)


class CombinedMetrics:
    def __init__(self, config_list, where="Metric"):
        self.metrics = METRICS.build_entries(config_list, where)

    def __bool__(self):
        return bool(self.metrics)

    def reset(self):
        for m in self.metrics:
            m.reset()

    def update(self, output, label):
        for m in self.metrics:
            m.update(output, label)

    def all_reduce(self):
        import paddle.distributed as dist
        if dist.get_world_size() <= 1:
            return
        for m in self.metrics:
            tensors = m.state_tensors()
            for t in tensors:
                dist.all_reduce(t)
            if hasattr(m, "set_state_tensors"):
                m.set_state_tensors(tensors)

    def compute(self):
        out = {}
        for m in self.metrics:
            out.update(m.compute())
        return out


def validate_metrics(section):
    from ..utils.config import check_keys
    check_keys("Metric", section, {"Train": list, "Eval": list})
    for part in ("Train", "Eval"):
        METRICS.validate_entries((section or {}).get(part), f"Metric.{part}")
