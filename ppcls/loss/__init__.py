"""Losses. ``build_loss(config_list)`` builds the weighted sum PaddleClas calls CombinedLoss."""
import paddle.nn as nn

from ..utils.errors import ConfigError
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
            name, kwargs = next(iter(item.items()))
            kwargs = dict(kwargs or {})
            weight = float(kwargs.pop("weight", 1.0))
            self.losses.append(LOSSES.get(name, where=f"{where}[{i}]")(**kwargs))
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
