"""Data operators. Importing this package registers every op."""
from .registry import BATCH_OPS, OPS, register_batch_op, register_op
from . import ops, batch_ops, autoaugment, random_erasing  # noqa: F401  (register)
from .batch_ops import build_batch_ops
from .ops import DecodeError


def create_operators(op_configs, where="transform_ops"):
    """``[{Name: {kwargs}}, ...]`` -> list of op instances."""
    out = []
    for i, item in enumerate(op_configs or []):
        name, kwargs = next(iter(item.items()))
        cls = OPS.get(name, where=f"{where}[{i}]")
        out.append(cls(**(kwargs or {})))
    return out
