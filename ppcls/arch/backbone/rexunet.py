"""ReXUNet (zshn25/rexnet fork): a U-Net on the ReXNet-1.0 encoder with six sigmoid outputs, finest
first (strides 1, 2, 4, 8, 16, 32). Input sides must be multiples of 32.

The encoder keeps the fork's module names (``conv0`` ... ``conv5`` holding ``features`` entries under
their original indices), so its checkpoints and a ReXNet-1.0 classifier's weights map directly.
Up-sampling is a fixed x2 bilinear (align_corners False), which the skip sizes match exactly; it is
written as matrix products (``resize.py``) so that Paddle Inference runs the export with oneDNN.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...utils.errors import ConfigError
from ..registry import ModelCard, register_model
from .base import Backbone
from .resize import bilinear_resize
from .rexnet import LinearBottleneck, ReXNet

# encoder level -> indices of ReXNet-1.0 ``features`` it holds (the global pool, 22, is left out)
ENCODER_SLICES = {"conv0": range(0, 4), "conv1": range(4, 5), "conv2": range(5, 7), "conv3": range(7, 9),
                  "conv4": range(9, 15), "conv5": range(15, 22)}
DECODER = ((1280, 140), (140, 72), (72, 50), (50, 27), (27, 16), (16, 1))
HEAD_CHANNELS = (16, 27, 50, 72, 140)  # output_conv1..5


__all__ = ["ReXUNet"]


@register_model(card=ModelCard("ReXNet", 4009167, 416744756))
class ReXUNet(Backbone):
    """U-Net on the ReXNet-1.0 encoder: six sigmoid masks, finest first (strides 1..32)."""

    def __init__(self, class_num=1, encoder_pretrained=None, return_stages=None, frozen_stages=-1, norm_eval=False):
        super().__init__(return_stages, frozen_stages, norm_eval)
        if class_num != 1:
            raise ConfigError(f"Arch.class_num={class_num}: ReXUNet predicts one mask channel; set Arch.class_num: 1")
        features = list(ReXNet(1.0, class_num=0).features.children())
        for name, idx in ENCODER_SLICES.items():
            setattr(self, name, nn.Sequential(*[(str(i), features[i]) for i in idx]))
        for i, (cin, cout) in enumerate(DECODER, 1):
            setattr(self, f"decode_conv{i}", LinearBottleneck(cin, cout, t=1, stride=1, use_se=True))
        for i, c in enumerate(HEAD_CHANNELS, 1):
            setattr(self, f"output_conv{i}", nn.Conv2D(c, 1, 3, padding=1))
        self._set_feature_info([dict(name=f"out{i}", channels=1, reduction=2 ** i) for i in range(6)])
        if encoder_pretrained:
            self.load_encoder(encoder_pretrained)

    def load_encoder(self, path):
        """Initialise the encoder from a ReXNet-1.0 classifier checkpoint (``features.k.*`` keys), a
        ``.pdparams`` path or its state dict already read; its classifier is ignored. Returns the number
        of tensors loaded."""
        from ...utils.save_load import load_state_file
        if isinstance(path, dict):
            file, state = "the given state dict", path
        else:
            file = path if path.endswith(".pdparams") else path + ".pdparams"
            state = load_state_file(file, "encoder weights")
        level_of = {i: name for name, idx in ENCODER_SLICES.items() for i in idx}
        target = self.state_dict()
        mapped, bad = {}, []
        for k, v in state.items():
            if not k.startswith("features."):
                continue
            idx = int(k.split(".")[1])
            if idx not in level_of:
                continue
            new = f"{level_of[idx]}.{k[len('features.'):]}"
            if new not in target or list(v.shape) != list(target[new].shape):
                bad.append(k)
                continue
            mapped[new] = v
        encoder_keys = [k for k in target if k.split(".")[0] in ENCODER_SLICES]
        missing = [k for k in encoder_keys if k not in mapped]
        if bad or missing:
            raise ConfigError(f"encoder_pretrained: {file} is not a ReXNet-1.0 checkpoint "
                              f"({len(bad)} mis-shaped, {len(missing)} encoder tensors missing)")
        self.set_state_dict(mapped)
        from ...utils.logger import logger
        logger.info(f"ReXUNet encoder initialised from {file} ({len(mapped)} tensors)")
        return len(mapped)

    def stage_layers(self):
        return [[getattr(self, n)] for n in ENCODER_SLICES]

    def decode(self, x):
        """The six maps before the sigmoid, finest first (segmentation heads train on these)."""
        if paddle.in_dynamic_mode() and (x.shape[2] % 32 or x.shape[3] % 32):
            raise ConfigError(f"ReXUNet: input {x.shape[2]}x{x.shape[3]} must have sides that are multiples of 32")
        x1 = self.conv0(x)
        x2 = self.conv1(x1)
        x3 = self.conv2(x2)
        x4 = self.conv3(x3)
        x5 = self.conv4(x4)
        bottleneck = self.conv5(x5)

        def up(t):
            h, w = t.shape[2], t.shape[3]
            if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
                return bilinear_resize(t, [2 * h, 2 * w], align_corners=False)
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)
        d1 = self.decode_conv1(bottleneck) + x5
        out5 = self.output_conv5(d1)
        d2 = up(self.decode_conv2(d1)) + x4
        out4 = self.output_conv4(d2)
        d3 = up(self.decode_conv3(d2)) + x3
        out3 = self.output_conv3(d3)
        d4 = up(self.decode_conv4(d3)) + x2
        out2 = self.output_conv2(d4)
        d5 = up(self.decode_conv5(d4)) + x1
        out1 = self.output_conv1(d5)
        out0 = up(self.decode_conv6(d5))
        return [out0, out1, out2, out3, out4, out5]

    def forward_features(self, x):
        outs = [F.sigmoid(t) for t in self.decode(x)]
        return outs, outs

    def forward_head(self, outs):
        return outs
