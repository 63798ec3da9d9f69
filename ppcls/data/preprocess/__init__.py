"""Data operators. Importing this package registers every op."""
from .registry import BATCH_OPS, OPS, register_batch_op, register_op
from . import ops, batch_ops, autoaugment, random_erasing  # noqa: F401  (register)
from .batch_ops import build_batch_ops
from .ops import DecodeError


def create_operators(op_configs, where="transform_ops"):
    """``[{Name: {kwargs}}, ...]`` -> list of op instances."""
    return OPS.build_entries(op_configs, where)
