"""ReXNet v1 (Han et al., "Rethinking Channel Dimensions", clovaai/rexnet): one constructor for any
width multiplier; ReXNet_1_0 ... ReXNet_3_0 are its registered rows.

The module tree mirrors the original (``features.<i>``, ``output.1``), so the official checkpoints
map key for key. Channel widths follow the original's float accumulation with Python's
round-half-to-even; the residual adds the block input to the first ``in`` output channels only.
"""
import math

import paddle
import paddle.nn as nn

from ..registry import register_model
from .base import Backbone

STAGE_LAYERS = (1, 2, 2, 3, 3, 5)
STAGE_STRIDES = (1, 2, 2, 2, 1, 2)
STAGE_SE = (False, False, True, True, True, True)


def rexnet_channels(width_mult=1.0, depth_mult=1.0, input_ch=16, final_ch=180):
    """(stem, [(in, out, t, stride, use_se)] per block, penultimate width) as the original computes them."""
    layers = [math.ceil(n * depth_mult) for n in STAGE_LAYERS]
    strides = sum([[s] + [1] * (n - 1) for s, n in zip(STAGE_STRIDES, layers)], [])
    ses = sum([[se] * n for se, n in zip(STAGE_SE, layers)], [])
    ts = [1] * layers[0] + [6] * (sum(layers) - layers[0])
    n_blocks = sum(layers)
    stem = 32 / width_mult if width_mult < 1.0 else 32
    planes = input_ch / width_mult if width_mult < 1.0 else input_ch
    blocks = []
    for i in range(n_blocks):
        if i == 0:
            cin, cout = int(round(stem * width_mult)), int(round(planes * width_mult))
        else:
            cin = int(round(planes * width_mult))
            planes += final_ch / (n_blocks * 1.0)
            cout = int(round(planes * width_mult))
        blocks.append((cin, cout, ts[i], strides[i], ses[i]))
    return int(round(stem * width_mult)), blocks, int(1280 * width_mult)


class SE(nn.Layer):
    def __init__(self, channels, ratio=12):
        super().__init__()
        mid = channels // ratio
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Sequential(nn.Conv2D(channels, mid, 1), nn.BatchNorm2D(mid), nn.ReLU(),
                                nn.Conv2D(mid, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.fc(self.pool(x))


class LinearBottleneck(nn.Layer):
    """[1x1 expand, BN, SiLU] (t != 1) -> 3x3 depthwise, BN -> [SE] -> ReLU6 -> 1x1 project, BN (linear).
    The shortcut (stride 1 and in <= out) adds the input to the first ``in`` channels."""

    def __init__(self, cin, cout, t, stride, use_se=True, se_ratio=12):
        super().__init__()
        dw = cin * t
        layers = []
        if t != 1:
            layers += [nn.Conv2D(cin, dw, 1, bias_attr=False), nn.BatchNorm2D(dw), nn.Silu()]
        layers += [nn.Conv2D(dw, dw, 3, stride=stride, padding=1, groups=dw, bias_attr=False), nn.BatchNorm2D(dw)]
        if use_se:
            layers.append(SE(dw, se_ratio))
        layers += [nn.ReLU6(), nn.Conv2D(dw, cout, 1, bias_attr=False), nn.BatchNorm2D(cout)]
        self.out = nn.Sequential(*layers)
        self.shortcut_channels = cin if stride == 1 and cin <= cout else 0
        self.cout = cout

    def forward(self, x):
        y = self.out(x)
        c = self.shortcut_channels
        if not c:
            return y
        if c == self.cout:
            return y + x
        return paddle.concat([y[:, :c] + x, y[:, c:]], axis=1)


# stage ends in ``features`` (index of the last layer of each stage) and their strides
_STAGE_ENDS = (3, 5, 7, 13, 21)


class ReXNet(Backbone):
    """Stages for ``return_stages``: 0 = stem + block 0 (stride 2), 1..3 = blocks 1-2, 3-4, 5-10
    (strides 4, 8, 16), 4 = blocks 11-15 + the 1x1 head conv (stride 32, 1280*w channels).
    ``class_num <= 0`` returns the pooled features [N, 1280*w]."""

    def __init__(self, width_mult=1.0, depth_mult=1.0, class_num=1000, dropout=0.2, use_se=True, se_ratio=12,
                 return_stages=None, frozen_stages=-1, norm_eval=False):
        super().__init__(return_stages, frozen_stages, norm_eval)
        if depth_mult != 1.0:
            raise ValueError("depth_mult other than 1.0 changes the stage boundaries; not supported")
        stem, blocks, pen = rexnet_channels(width_mult, depth_mult)
        layers = [nn.Conv2D(3, stem, 3, stride=2, padding=1, bias_attr=False), nn.BatchNorm2D(stem), nn.Silu()]
        for cin, cout, t, s, se in blocks:
            layers.append(LinearBottleneck(cin, cout, t, s, use_se and se, se_ratio))
        last = blocks[-1][1]
        layers += [nn.Conv2D(last, pen, 1, bias_attr=False), nn.BatchNorm2D(pen), nn.Silu(), nn.AdaptiveAvgPool2D(1)]
        self.features = nn.Sequential(*layers)
        self.class_num = class_num
        self.output = nn.Sequential(nn.Dropout(dropout), nn.Conv2D(pen, class_num, 1)) if class_num > 0 else None
        chans = [blocks[0][1], blocks[2][1], blocks[4][1], blocks[10][1], pen]
        self._set_feature_info([dict(name=f"features.{e}", channels=c, reduction=2 ** (i + 1))
                                for i, (e, c) in enumerate(zip(_STAGE_ENDS, chans))])

    def stage_layers(self):
        layers = list(self.features.children())
        starts = (0,) + tuple(e + 1 for e in _STAGE_ENDS[:-1])
        return [layers[a:b + 1] for a, b in zip(starts, _STAGE_ENDS)]

    def forward_features(self, x):
        stages, layers = [], list(self.features.children())
        for i, layer in enumerate(layers[:-1]):
            x = layer(x)
            if i in _STAGE_ENDS:
                stages.append(x)
        return stages, x

    def forward_head(self, x):
        x = self.features[len(self.features) - 1](x)
        if self.output is None:
            return x.flatten(1)
        return self.output(x).flatten(1)


REXNET_WIDTHS = {"ReXNet_1_0": 1.0, "ReXNet_1_3": 1.3, "ReXNet_1_5": 1.5, "ReXNet_2_0": 2.0, "ReXNet_3_0": 3.0}


def _factory(name, width):
    def factory(class_num=1000, **kwargs):
        return ReXNet(width_mult=width, class_num=class_num, **kwargs)
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"ReXNet v1, width multiplier {width}."
    return register_model(name)(factory)


for _name, _w in REXNET_WIDTHS.items():
    globals()[_name] = _factory(_name, _w)
