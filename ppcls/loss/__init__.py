"""Losses. ``build_loss(config_list)`` builds the weighted sum PaddleClas calls CombinedLoss."""
import paddle.nn as nn

from ..utils.errors import ConfigError
from ..utils.registry import split_entry
from .registry import LOSSES, register_loss
from . import celoss, distillationloss, seg_loss  # noqa: F401  (register)


def _weight(name, options, where):
    """An entry's ``weight`` (1.0 when not given; required by the losses that PaddleClas requires it of)."""
    if "weight" not in options and getattr(LOSSES.get(name, where=where), "weight_required", False):
        raise ConfigError(f"{where}.{name}.weight: required (as in PaddleClas), e.g. weight: 1.0")
    return float(options.pop("weight", 1.0))


class CombinedLoss(nn.Layer):
    """``forward(output, target) -> {LossName: value, ..., "loss": weighted sum}``. A loss returning a
    mapping (the distillation losses: one value per model pair) adds each of its entries under its own
    name, each weighted by the entry's ``weight``."""

    def __init__(self, config_list, where="Loss"):
        super().__init__()
        if not config_list:
            raise ConfigError(f"{where}: at least one loss is required")
        self.names, self.weights = [], []
        self.losses = nn.LayerList()
        for i, item in enumerate(config_list):
            name, kwargs = split_entry(item, f"{where}[{i}]")
            weight = _weight(name, kwargs, f"{where}[{i}]")
            self.losses.append(LOSSES.build(name, kwargs, f"{where}[{i}].{name}", name_where=f"{where}[{i}]"))
            self.names.append(name)
            self.weights.append(weight)

    def forward(self, output, target):
        out, total = {}, None
        for name, w, fn in zip(self.names, self.weights, self.losses):
            value = fn(output, target)
            for key, v in (value.items() if isinstance(value, dict) else ((name, value),)):
                out[key] = v
                total = v * w if total is None else total + v * w
        out["loss"] = total
        return out


def build_loss(config_list, where="Loss"):
    return CombinedLoss(config_list, where) if config_list else None


def validate_losses(section):
    """``Loss.Train`` / ``Loss.Eval``: lists of registered losses, each with an optional ``weight``."""
    from ..utils.config import check_keys
    check_keys("Loss", section, {"Train": list, "Eval": list})
    for part in ("Train", "Eval"):
        entries = (section or {}).get(part)
        LOSSES.validate_entries(entries, f"Loss.{part}", extra=("weight",))
        for i, entry in enumerate(entries or []):
            name, options = split_entry(entry, f"Loss.{part}[{i}]")
            _weight(name, options, f"Loss.{part}[{i}]")
