"""Paddle's own ResNet and MobileNetV2 (paddle.vision.models), registered so the engine can be used
with them; they are not re-implemented here."""
from paddle.vision import models as _pv

from ..registry import register_model


def _wrap(name, ctor):
    def factory(class_num=1000, **kwargs):
        return ctor(pretrained=False, num_classes=class_num, **kwargs)
    factory.__name__ = name
    factory.__doc__ = f"paddle.vision.models.{ctor.__name__} with class_num (no download)."
    register_model(name)(factory)
    return factory


ResNet18 = _wrap("ResNet18", _pv.resnet18)
ResNet34 = _wrap("ResNet34", _pv.resnet34)
ResNet50 = _wrap("ResNet50", _pv.resnet50)
ResNet101 = _wrap("ResNet101", _pv.resnet101)
ResNet152 = _wrap("ResNet152", _pv.resnet152)
MobileNetV2 = _wrap("MobileNetV2", _pv.mobilenet_v2)
