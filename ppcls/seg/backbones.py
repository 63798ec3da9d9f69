"""The zoo's backbone families in PaddleSeg's ``manager.BACKBONES``, under the zoo's own names.

Each registered class builds the zoo model (``ppcls.arch.build_model``) without its classifier and
returns the feature maps at the strides asked for (``out_strides``, by default 4, 8, 16, 32: one map per
stride, the last stage at that stride), so PaddleSeg's heads find what they expect of a backbone:
a list of maps and ``feat_channels`` (DeepLabV3P picks two of them with ``backbone_indices: [0, 3]``).

``pretrained`` takes what ``Arch.pretrained`` takes (``True`` for the default ImageNet weights, a tag of
the weights table, a path or a URL), loaded with ``ppcls.arch.weights.load_weights``.

Families: DLA, RLA-Net, ReXNet and the ImageNet Residual Attention nets. Paddle's own ResNets and
MobileNetV2 are left out (PaddleSeg has its own), as is any name PaddleSeg already registers.
"""
import paddle.nn as nn
from paddleseg.cvlibs import manager

from ..arch import CARDS, build_model, list_models
from ..utils.errors import ConfigError

FAMILIES = ("DLA", "RLA-Net", "ReXNet", "ResidualAttention")
DEFAULT_STRIDES = (4, 8, 16, 32)
_STAGES = {}  # model name -> feature_info of the built model (stage names, channels, strides)


def _feature_info(name):
    if name not in _STAGES:
        _STAGES[name] = build_model({"name": name, "class_num": 0}).feature_info
    return _STAGES[name]


def stages_for_strides(name, strides):
    """The stage indices of model ``name`` giving ``strides`` (the last stage at each stride)."""
    info = _feature_info(name)
    by_stride = {}
    for d in info:
        by_stride[d["reduction"]] = d["stage"]
    missing = [s for s in strides if s not in by_stride]
    if missing:
        raise ConfigError(f"{name}.out_strides: {missing} not available; {name} has feature maps at strides "
                          f"{sorted(by_stride)}")
    return [by_stride[s] for s in strides]


class ZooBackbone(nn.Layer):
    """A zoo network as a PaddleSeg backbone: ``forward(x)`` -> feature maps at ``out_strides``."""

    model_name = None  # the zoo model; each registered subclass sets it

    def __init__(self, pretrained=None, out_strides=DEFAULT_STRIDES, in_channels=3, **options):
        super().__init__()
        if in_channels != 3:
            raise ConfigError(f"{self.model_name}.in_channels: the zoo's networks take 3-channel images, got {in_channels}")
        strides = [int(s) for s in out_strides]
        self.net = build_model({"name": self.model_name, "class_num": 0,
                                "return_stages": stages_for_strides(self.model_name, strides), **options})
        self.feat_channels = list(self.net.out_channels)
        self.out_strides = list(self.net.out_strides)
        if pretrained:
            from ..arch.weights import load_weights
            load_weights(self.net, self.model_name, pretrained, where=f"{self.model_name}.pretrained")

    def forward(self, x):
        return list(self.net(x))


def _names():
    return [n for n in list_models() if n in CARDS and CARDS[n].family in FAMILIES
            and n != "ReXUNet" and not n.endswith("_CIFAR") and not n.startswith("DLAUp_")]


def register_backbones():
    """Register every family's variants not already known to PaddleSeg; returns the registered names."""
    done = []
    for name in _names():
        if name in manager.BACKBONES.components_dict:
            continue
        cls = type(name, (ZooBackbone,), {"model_name": name, "__doc__": f"{name} of the zoo as a PaddleSeg backbone."})
        manager.BACKBONES.add_component(cls)
        done.append(name)
    return done


REGISTERED = register_backbones()
