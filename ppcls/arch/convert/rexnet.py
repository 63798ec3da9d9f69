"""Conversion rules for the official ReXNet checkpoints (clovaai/rexnet, rexnetv1_<w>x.pth) and the
zshn25 fork's ReXUNet: the module trees match key for key; only BatchNorm statistics are renamed."""
from ..backbone.rexnet import REXNET_WIDTHS
from .core import Rules, register_rules

register_rules(list(REXNET_WIDTHS) + ["ReXUNet"], Rules("torch"))
