"""Data operators. Importing this package registers every op."""
import importlib

from .registry import BATCH_OPS, OPS, register_batch_op, register_op
from . import ops  # noqa: F401
from . import batch_ops  # noqa: F401
from .batch_ops import build_batch_ops
from .ops import DecodeError

for _mod in ("autoaugment", "random_erasing"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{_mod}":
            raise


def create_operators(op_configs, where="transform_ops"):
    """``[{Name: {kwargs}}, ...]`` -> list of op instances."""
    out = []
    for i, item in enumerate(op_configs or []):
        name, kwargs = next(iter(item.items()))
        cls = OPS.get(name, where=f"{where}[{i}]")
        out.append(cls(**(kwargs or {})))
    return out
