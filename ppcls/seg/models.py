"""ReXUNet and DLA-Up as PaddleSeg models (``manager.MODELS``).

Both follow PaddleSeg's model contract: ``forward(x)`` returns a list of class-score maps at the input
size, the first being the prediction; training pairs the list with the config's ``loss.types`` (one loss
and one ``coef`` per map); ``pretrained`` loads a PaddleSeg checkpoint of the whole model.
"""
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg import utils
from paddleseg.cvlibs import manager

from ..arch.backbone.dla_up import DLASeg
from ..arch.backbone.rexnet import LinearBottleneck
from ..arch.backbone.rexunet import HEAD_CHANNELS, ReXUNet as ReXUNetNet
from ..utils.errors import ConfigError


def _check_inputs(name, num_classes, in_channels):
    # PaddleSeg's builder adds in_channels to the model section for its built-in datasets (Cityscapes ...)
    if in_channels != 3:
        raise ConfigError(f"{name}.in_channels: the zoo's networks take 3-channel images, got {in_channels}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ConfigError(f"{name}.num_classes: at least 2 classes (background included), got {num_classes!r}")


class _MultiClassReXUNet(ReXUNetNet):
    """The zoo's ReXUNet with ``num_classes`` score channels on each of its six heads instead of one mask."""

    def __init__(self, num_classes):
        super().__init__(class_num=1)
        for i, c in enumerate(HEAD_CHANNELS, 1):
            setattr(self, f"output_conv{i}", nn.Conv2D(c, num_classes, 3, padding=1))
        self.decode_conv6 = LinearBottleneck(16, num_classes, t=1, stride=1, use_se=True)


@manager.MODELS.add_component
class ReXUNet(nn.Layer):
    """ReXUNet (the ReXNet-1.0 U-Net) for ``num_classes`` classes with its six outputs (strides 1 .. 32,
    finest first). Training returns all six, each resized to the input (bilinear), for a ``loss.types``
    list of six with a ``coef`` each (deep supervision); evaluation and export return the finest.

    ``encoder_pretrained``: ImageNet weights of ReXNet-1.0 for the encoder (``True``, a tag, a path or a
    URL, as ``Arch.pretrained``). ``pretrained``: a PaddleSeg checkpoint of this model. Input sides must
    be multiples of 32."""

    def __init__(self, num_classes, pretrained=None, encoder_pretrained=None, align_corners=False, in_channels=3):
        super().__init__()
        _check_inputs("ReXUNet", num_classes, in_channels)
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.net = _MultiClassReXUNet(num_classes)
        if encoder_pretrained:
            from ..arch.weights import read_weights_file, resolve_weights
            path, from_cache = resolve_weights("ReXNet_1_0", encoder_pretrained, where="ReXUNet.encoder_pretrained")
            self.net.load_encoder(read_weights_file("ReXNet_1_0", path, cache_conversion=from_cache))
        self.pretrained = pretrained
        if pretrained:
            utils.load_entire_model(self, pretrained)

    def forward(self, x):
        maps = self.net.decode(x)
        if not self.training:
            return [maps[0]]  # already at the input size
        size = x.shape[2:]
        return [maps[0]] + [F.interpolate(m, size, mode="bilinear", align_corners=self.align_corners)
                            for m in maps[1:]]


@manager.MODELS.add_component
class DLAUp(nn.Layer):
    """DLA-Up, the DLA original's segmentation network (``ppcls.arch.backbone.dla_up.DLASeg``), on the DLA
    ``base`` (DLA34, DLA60, DLA102, DLA169, ... any DLA), aggregating to stride ``down_ratio``. Returns the
    original's first output, log-softmax scores at the input size (softmax cross entropy on them equals
    that on the scores, the argmax is the same).

    ``backbone_pretrained``: ImageNet weights of the base DLA (``True``, a tag, a path or a URL).
    ``pretrained``: a PaddleSeg checkpoint of this model. Input sides must be multiples of 32."""

    def __init__(self, num_classes, base="DLA34", down_ratio=2, pretrained=None, backbone_pretrained=None,
                 in_channels=3):
        super().__init__()
        _check_inputs("DLAUp", num_classes, in_channels)
        self.num_classes = num_classes
        self.net = DLASeg(base=base, class_num=num_classes, down_ratio=down_ratio)
        if backbone_pretrained:
            from ..arch.weights import load_weights
            load_weights(self.net.base, base, backbone_pretrained, where="DLAUp.backbone_pretrained")
        self.pretrained = pretrained
        if pretrained:
            utils.load_entire_model(self, pretrained)

    def forward(self, x):
        log_probs, _ = self.net(x)
        return [log_probs]
