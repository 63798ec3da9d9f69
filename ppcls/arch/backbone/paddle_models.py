"""Paddle's own ResNet and MobileNetV2 (paddle.vision.models), registered so the engine can be used
with them; they are not re-implemented here."""
from paddle.vision import models as _pv

from ..registry import ModelCard, register_model

__all__ = ["ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "MobileNetV2"]

# params / conv+linear MACs at 224: measured from the built models (tests/test_model_cards.py)
_CARDS = {
    "MobileNetV2": (3504872, 300774272),
    "ResNet101": (44549160, 7801405440),
    "ResNet152": (60192808, 11513626624),
    "ResNet18": (11689512, 1814073344),
    "ResNet34": (21797672, 3663761408),
    "ResNet50": (25557032, 4089184256),
}


def _wrap(name, ctor):
    def factory(class_num=1000, **kwargs):
        return ctor(pretrained=False, num_classes=class_num, **kwargs)
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"paddle.vision.models.{ctor.__name__} with class_num (no download)."
    return register_model(name, card=ModelCard("Paddle", *_CARDS[name]))(factory)


ResNet18 = _wrap("ResNet18", _pv.resnet18)
ResNet34 = _wrap("ResNet34", _pv.resnet34)
ResNet50 = _wrap("ResNet50", _pv.resnet50)
ResNet101 = _wrap("ResNet101", _pv.resnet101)
ResNet152 = _wrap("ResNet152", _pv.resnet152)
MobileNetV2 = _wrap("MobileNetV2", _pv.mobilenet_v2)
