"""Losses. ``build_loss(config_list)`` builds the weighted sum PaddleClas calls CombinedLoss."""
import paddle.nn as nn

from ..utils.errors import ConfigError
from ..utils.registry import split_entry
from .registry import LOSSES, register_loss
from . import celoss, seg_loss  # noqa: F401  (register)


class CombinedLoss(nn.Layer):
    """``forward(output, target) -> {LossName: value, ..., "loss": weighted sum}``."""

    def __init__(self, config_list, where="Loss"):
        super().__init__()
        if not config_list:
            raise ConfigError(f"{where}: at least one loss is required")
        self.names, self.weights = [], []
        self.losses = nn.LayerList()
        for i, item in enumerate(config_list):
            name, kwargs = split_entry(item, f"{where}[{i}]")
            weight = float(kwargs.pop("weight", 1.0))
            self.losses.append(LOSSES.build(name, kwargs, f"{where}[{i}].{name}", name_where=f"{where}[{i}]"))
            self.names.append(name)
            self.weights.append(weight)

    def forward(self, output, target):
        out, total = {}, None
        for name, w, fn in zip(self.names, self.weights, self.losses):
            value = fn(output, target)
            out[name] = value
            total = value * w if total is None else total + value * w
        out["loss"] = total
        return out


def build_loss(config_list, where="Loss"):
    return CombinedLoss(config_list, where) if config_list else None


def validate_losses(section):
    """``Loss.Train`` / ``Loss.Eval``: lists of registered losses, each with an optional ``weight``."""
    from ..utils.config import check_keys
    check_keys("Loss", section, {"Train": list, "Eval": list})
    for part in ("Train", "Eval"):
        LOSSES.validate_entries((section or {}).get(part), f"Loss.{part}", extra=("weight",))
