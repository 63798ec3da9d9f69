"""Conversion rules for the original RLA-Net checkpoints (joyfang1106/RLANet, PyTorch; training files
wrap the weights in ``state_dict`` with a ``module.`` prefix, which the core unwraps).

ResNet family: key for key. MobileNetV2 family: the checkpoint holds the single shared recurrent conv
under five keys (``recurrent_dsconvs.0..4`` or ``recurrent_convs.0..4``); they map to one parameter,
``recurrent_conv``, and must be equal.
"""
import re

from ..backbone.rlanet import RLA_MOBILENET_SPECS, RLA_RESNET_SPECS
from .core import Rules, register_rules

_SHARED = re.compile(r"^recurrent_(ds)?convs\.\d+\.")

register_rules(list(RLA_RESNET_SPECS), Rules("torch"))
register_rules(list(RLA_MOBILENET_SPECS), Rules("torch", rename=lambda k: _SHARED.sub("recurrent_conv.", k)))
