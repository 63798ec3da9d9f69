"""ReXNet v1 (Han et al., "Rethinking Channel Dimensions", clovaai/rexnet): one constructor for any
width multiplier; ReXNet_1_0 ... ReXNet_3_0 are its registered rows.

The module tree mirrors the original (``features.<i>``, ``output.1``), so the official checkpoints
map key for key. Channel widths follow the original's float accumulation with Python's
round-half-to-even; the residual adds the block input to the first ``in`` output channels only.
"""
import math
from collections import namedtuple

import paddle
import paddle.nn as nn

from ..registry import ModelCard, variant
from ..weight_table import Weights, paddleclas_weights, register_weights, timm_weights
from .base import Backbone

__all__ = ["ReXNet", "REXNET_SPECS", "rexnet_channels", "ReXNet_1_0", "ReXNet_1_3", "ReXNet_1_5", "ReXNet_2_0",
           "ReXNet_3_0"]

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


def _silu():
    """SiLU, x * sigmoid(x), as ``nn.Swish`` (beta 1): the same function (outputs within 2e-7), but
    Paddle Inference's oneDNN passes fuse swish into the preceding conv, while ``silu`` has no oneDNN
    kernel and ran as a plain CPU op between two layout conversions (ReXNet_1_0 in Paddle Inference on
    2 cores, batch 1 / 8: 29.9 / 38.3 -> 55.3 / 74.2 images/s)."""
    return nn.Swish()


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
            layers += [nn.Conv2D(cin, dw, 1, bias_attr=False), nn.BatchNorm2D(dw), _silu()]
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
        layers = [nn.Conv2D(3, stem, 3, stride=2, padding=1, bias_attr=False), nn.BatchNorm2D(stem), _silu()]
        for cin, cout, t, s, se in blocks:
            layers.append(LinearBottleneck(cin, cout, t, s, use_se and se, se_ratio))
        last = blocks[-1][1]
        layers += [nn.Conv2D(last, pen, 1, bias_attr=False), nn.BatchNorm2D(pen), _silu(), nn.AdaptiveAvgPool2D(1)]
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


ReXNetRow = namedtuple("ReXNetRow", "width_mult params macs")
# params / conv+linear MACs at 224: measured from the built models (tests/test_model_cards.py)
REXNET_SPECS = {
    "ReXNet_1_0": ReXNetRow(1.0, 4796873, 398370392),
    "ReXNet_1_3": ReXNetRow(1.3, 7557091, 662229098),
    "ReXNet_1_5": ReXNetRow(1.5, 9728593, 875828154),
    "ReXNet_2_0": ReXNetRow(2.0, 16366620, 1528850782),
    "ReXNet_3_0": ReXNetRow(3.0, 34708792, 3395980620),
}


def _rexnet(name):
    row = REXNET_SPECS[name]
    return variant(name, ReXNet, dict(width_mult=row.width_mult), f"ReXNet v1, width multiplier {row.width_mult}.",
                   ModelCard("ReXNet", row.params, row.macs))


ReXNet_1_0 = _rexnet("ReXNet_1_0")
ReXNet_1_3 = _rexnet("ReXNet_1_3")
ReXNet_1_5 = _rexnet("ReXNet_1_5")
ReXNet_2_0 = _rexnet("ReXNet_2_0")
ReXNet_3_0 = _rexnet("ReXNet_3_0")


# -- published weights: PaddleClas's conversions, timm's Hub files of the NAVER originals ("nav"), and
# clovaai's own (Google Drive only); accuracies as each source published them
_CLOVAAI_ACC = "clovaai/rexnet README.md (ImageNet-1k pretrained models table, @61debcc4)"


def _paddleclas(name, top1, top5):
    return paddleclas_weights(name, top1, top5, "docs/zh_CN/models/ImageNet1k/ReXNet.md", "MIT clovaai/rexnet")


def _timm(hub, top1, top5):
    return timm_weights("timm_nav_in1k", hub, top1, top5, "MIT", interpolation="bicubic")


def _clovaai(file, page, top1, top5):
    return Weights("original", "torch", file, pages=(page,), top1=top1, top5=top5, published=_CLOVAAI_ACC,
                   license="MIT (clovaai/rexnet)",
                   notes="eval transform not published (224x224); the file name is the README's for 1.0")


REXNET_WEIGHTS = {
    "ReXNet_1_0": (_paddleclas("ReXNet_1_0", 77.46, 93.7), _timm("timm/rexnet_100.nav_in1k", 77.862, 93.89), _clovaai("rexnetv1_1.0.pth", "https://drive.google.com/file/d/1xeIJ3wb83uOowU008ykYj6wDX2dsncA9/view?usp=sharing", 77.9, 93.9)),
    "ReXNet_1_3": (_paddleclas("ReXNet_1_3", 79.13, 94.64), _timm("timm/rexnet_130.nav_in1k", 79.492, 94.68), _clovaai("rexnetv1_1.3.pth", "https://drive.google.com/file/d/1x2ziK9Oyv66Y9NsxJxXsdjzpQF2uSJj0/view?usp=sharing", 79.5, 94.7)),
    "ReXNet_1_5": (_paddleclas("ReXNet_1_5", 80.06, 95.12), _timm("timm/rexnet_150.nav_in1k", 80.322, 95.164), _clovaai("rexnetv1_1.5.pth", "https://drive.google.com/file/d/1TOBGsbDhTHWBgqcRnyKIR0tHsJTOPUIG/view?usp=sharing", 80.3, 95.2)),
    "ReXNet_2_0": (_paddleclas("ReXNet_2_0", 81.22, 95.36), _timm("timm/rexnet_200.nav_in1k", 81.636, 95.672), _clovaai("rexnetv1_2.0.pth", "https://drive.google.com/file/d/1R1aOTKIe1Mvck86NanqcjWnlR8DY-Z4C/view?usp=sharing", 81.6, 95.7)),
    "ReXNet_3_0": (_paddleclas("ReXNet_3_0", 82.09, 96.12), _timm("timm/rexnet_300.nav_in1k", 82.78, 96.23), _clovaai("rexnetv1_3.0.pth", "https://drive.google.com/file/d/1iXAsr8gs3pRz0QyHKomdj5SGVzPWbIs2/view?usp=sharing", 82.8, 96.2)),
}
register_weights(REXNET_WEIGHTS)
