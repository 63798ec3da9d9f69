"""Conversion rules for the original RLA-Net checkpoints (joyfang1106/RLANet, PyTorch). Training files
wrap the weights in ``state_dict`` with a DataParallel ``module.`` prefix; the core unwraps both and
handles the BatchNorm names, ``num_batches_tracked`` and the Linear transposition (fc, classifier.1,
the SE fc.0 / fc.2).

ResNet / ResNeXt family: key for key (the port keeps the original's names).
MobileNetV2 family: the original's five entries of its recurrent-conv list are one shared module, so a
checkpoint holds the same tensor under ``recurrent_dsconvs.0..4`` (depthwise, the paper's rows) or
``recurrent_convs.0..4`` (full conv). All of them map to the one parameter ``recurrent_conv``; the core
refuses them if they differ. A depthwise checkpoint offered to a full-conv model (or the reverse) is
refused by name.
"""
import re

from ..backbone.rlanet import RLA_MOBILENET_SPECS, RLA_RESNET_SPECS
from .core import Rules, register_rules


def _shared_recurrent(list_name):
    pattern = re.compile(rf"^{list_name}\.\d+\.")
    return lambda key: pattern.sub("recurrent_conv.", key) if pattern.match(key) else None


register_rules(list(RLA_RESNET_SPECS), Rules("torch"))
for _name, _row in RLA_MOBILENET_SPECS.items():
    _list = "recurrent_dsconvs" if _row.depthwise_recurrent else "recurrent_convs"
    register_rules([_name], Rules("torch", rename=_shared_recurrent(_list)))
