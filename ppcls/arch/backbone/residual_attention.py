"""Residual Attention Networks (Wang et al. 2017), ported from the Gluon implementation
(haoxintong/ResidualAttentionNetwork-Gluon): Attention-56 ... 452 for ImageNet and the CIFAR nets.

One attention-module implementation (pre-activation bottlenecks, trunk branch, mask branch with its
pooling/up-sampling path and skip units, ``(1 + mask) * trunk``) builds every depth from the
``ATTENTION_SPECS`` table. Module names follow the Gluon structural parameter names, so its
``save_parameters`` files convert key for key.

Up-sampling is bilinear with aligned corners, as the reference's BilinearResize2D. The reference
resizes to fixed sizes (56/28/14 or 32/16/8) and so only runs at 224 (CIFAR: 32); here each resize
targets the size of the tensor it is added to, which is identical at the reference size and works
at any other. The resize is written as matrix products (``resize.py``) when the sizes are static
(always in dygraph, and in exported models with a fixed input size), so Paddle Inference runs the
exported model with oneDNN.
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...utils.errors import ConfigError
from ..registry import ModelCard, variant
from .base import Backbone
from .resize import bilinear_resize

__all__ = ["ResidualAttentionNet", "ATTENTION_SPECS", "ATTENTION_MODELS",
           "AttentionNet56", "AttentionNet92", "AttentionNet128", "AttentionNet164", "AttentionNet236",
           "AttentionNet452", "AttentionNet56_CIFAR", "AttentionNet92_CIFAR", "AttentionNet128_CIFAR",
           "AttentionNet164_CIFAR", "AttentionNet236_CIFAR", "AttentionNet452_CIFAR"]

# depth: ((p, t, r), modules per stage)
ATTENTION_SPECS = {
    56: ((1, 2, 1), (1, 1, 1)),
    92: ((1, 2, 1), (1, 2, 3)),
    128: ((1, 2, 1), (3, 3, 3)),
    164: ((1, 2, 1), (4, 4, 4)),
    236: ((1, 2, 1), (6, 6, 6)),
    452: ((2, 4, 3), (6, 6, 6)),
}


class BottleneckV2(nn.Layer):
    """Pre-activation bottleneck: BN-ReLU first; the projection (when present) reads the activated
    input; the stride sits on the 3x3 conv; nothing after the addition."""

    def __init__(self, cin, cout, stride=1, downsample=False):
        super().__init__()
        mid = cout // 4
        self.bn1 = nn.BatchNorm2D(cin)
        self.conv1 = nn.Conv2D(cin, mid, 1, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(mid)
        self.conv2 = nn.Conv2D(mid, mid, 3, stride=stride, padding=1, bias_attr=False)
        self.bn3 = nn.BatchNorm2D(mid)
        self.conv3 = nn.Conv2D(mid, cout, 1, bias_attr=False)
        self.downsample = nn.Conv2D(cin, cout, 1, stride=stride, bias_attr=False) if downsample else None

    def forward(self, x):
        a = F.relu(self.bn1(x))
        shortcut = self.downsample(a) if self.downsample is not None else x
        y = self.conv1(a)
        y = self.conv2(F.relu(self.bn2(y)))
        y = self.conv3(F.relu(self.bn3(y)))
        return y + shortcut


def _units(channels, n):
    return nn.Sequential(*[BottleneckV2(channels, channels) for _ in range(n)])


def _upsample_to(x, ref):
    h, w = ref.shape[2], ref.shape[3]
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return bilinear_resize(x, [h, w], align_corners=True)
    return F.interpolate(x, size=paddle.shape(ref)[2:4], mode="bilinear", align_corners=True)


class MaskBranch(nn.Layer):
    """Down/up path over levels ``first_level``..3 (stage 1 uses levels 1-3, stage 2 levels 2-3,
    stage 3 level 3); levels 1 and 2 have a skip unit added after the up-sampling from below."""

    def __init__(self, channels, r, stage):
        super().__init__()
        self.levels = list(range(stage, 4))
        self.pool = nn.MaxPool2D(3, 2, 1)
        for lvl in self.levels:
            setattr(self, f"down_res_unit_{lvl}", _units(channels, r))
            if lvl < 3:
                setattr(self, f"skip_connection_{lvl}", BottleneckV2(channels, channels))
            setattr(self, f"up_res_unit_{lvl}", _units(channels, r))
        self.output = nn.Sequential(nn.BatchNorm2D(channels), nn.ReLU(), nn.Conv2D(channels, channels, 1, bias_attr=False),
                                    nn.BatchNorm2D(channels), nn.ReLU(), nn.Conv2D(channels, channels, 1, bias_attr=False),
                                    nn.Sigmoid())

    def forward(self, x):
        inputs, skips = [x], {}
        d = x
        for lvl in self.levels:
            d = getattr(self, f"down_res_unit_{lvl}")(self.pool(d))
            inputs.append(d)
            if lvl < 3:
                skips[lvl] = getattr(self, f"skip_connection_{lvl}")(d)
        u = d
        for i, lvl in enumerate(reversed(self.levels)):
            if lvl in skips:
                u = u + skips[lvl]
            u = getattr(self, f"up_res_unit_{lvl}")(u)
            u = _upsample_to(u, inputs[len(self.levels) - 1 - i])
        return self.output(u)


class AttentionBlock(nn.Layer):
    def __init__(self, channels, stage, p, t, r):
        super().__init__()
        self.pre = _units(channels, p)
        self.trunk_branch = _units(channels, t)
        self.mask_branch = MaskBranch(channels, r, stage)
        self.post = _units(channels, p)

    def forward(self, x):
        x = self.pre(x)
        mask = self.mask_branch(x)
        trunk = self.trunk_branch(x)
        return self.post((1 + mask) * trunk)


class ResidualAttentionNet(Backbone):
    """``cifar=False``: the ImageNet net (7x7/2 stem + max-pool, widths 256..2048, reference input 224);
    ``cifar=True``: the CIFAR net (3x3 stem, widths 128..1024, reference input 32).
    Stages for ``return_stages``: 0 = stem, 1..3 = the attention stages, 4 = the tail (after the final
    BN-ReLU). ``class_num <= 0`` returns the pooled features."""

    def __init__(self, depth=56, cifar=False, class_num=1000, return_stages=None, frozen_stages=-1, norm_eval=False):
        super().__init__(return_stages, frozen_stages, norm_eval)
        if depth not in ATTENTION_SPECS:
            raise ConfigError(f"depth {depth}: one of {sorted(ATTENTION_SPECS)}")
        (p, t, r), modules = ATTENTION_SPECS[depth]
        if cifar:
            stem, widths = [nn.Conv2D(3, 32, 3, padding=1, bias_attr=False), nn.BatchNorm2D(32), nn.ReLU()], (128, 256, 512, 1024)
            stem_ch, stride0 = 32, 1
        else:
            stem = [nn.Conv2D(3, 64, 7, stride=2, padding=3, bias_attr=False), nn.BatchNorm2D(64), nn.ReLU(),
                    nn.MaxPool2D(3, 2, 1)]
            widths, stem_ch, stride0 = (256, 512, 1024, 2048), 64, 4
        layers, ends = list(stem), [len(stem) - 1]
        cin = stem_ch
        for stage in range(3):
            layers.append(BottleneckV2(cin, widths[stage], 1 if stage == 0 else 2, downsample=True))
            layers += [AttentionBlock(widths[stage], stage + 1, p, t, r) for _ in range(modules[stage])]
            ends.append(len(layers) - 1)
            cin = widths[stage]
        layers += [BottleneckV2(cin, widths[3], 2, downsample=True), BottleneckV2(widths[3], widths[3]),
                   BottleneckV2(widths[3], widths[3]), nn.BatchNorm2D(widths[3]), nn.ReLU()]
        ends.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)
        self._stage_ends = ends
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.class_num = class_num
        self.output = nn.Linear(widths[3], class_num) if class_num > 0 else None
        self._init_weights()
        chans = [stem_ch] + list(widths)
        strides = [stride0, stride0, stride0 * 2, stride0 * 4, stride0 * 8]
        self._set_feature_info([dict(name=n, channels=c, reduction=s) for n, c, s in
                                zip(("stem", "stage1", "stage2", "stage3", "stage4"), chans, strides)])

    def _init_weights(self):
        # the reference's MSRAPrelu: Gaussian, variance 1.88235 / mean(fan_in, fan_out)
        for m in self.sublayers():
            if isinstance(m, (nn.Conv2D, nn.Linear)):
                shape = m.weight.shape
                if isinstance(m, nn.Linear):
                    fan_in, fan_out = shape[0], shape[1]
                else:
                    k = shape[2] * shape[3]
                    fan_in, fan_out = shape[1] * k, shape[0] * k
                std = math.sqrt(2.0 / (1 + 0.25 ** 2) / ((fan_in + fan_out) / 2.0))
                m.weight.set_value(paddle.normal(0.0, std, shape))
                if getattr(m, "bias", None) is not None:
                    m.bias.set_value(paddle.zeros(m.bias.shape))

    def stage_layers(self):
        layers = list(self.features.children())
        starts = [0] + [e + 1 for e in self._stage_ends[:-1]]
        return [layers[a:b + 1] for a, b in zip(starts, self._stage_ends)]

    def forward_features(self, x):
        stages = []
        for i, layer in enumerate(self.features.children()):
            x = layer(x)
            if i in self._stage_ends:
                stages.append(x)
        return stages, x

    def forward_head(self, x):
        x = self.pool(x).flatten(1)
        return x if self.output is None else self.output(x)


# name: (params, conv+linear MACs per image at the reference size: 224, CIFAR 32), measured from
# the built models (tests/test_model_cards.py)
_CARDS = {
    "AttentionNet128": (57467048, 15001460736),
    "AttentionNet128_CIFAR": (13905770, 1215703040),
    "AttentionNet164": (70295208, 19366772736),
    "AttentionNet164_CIFAR": (17124970, 1572055040),
    "AttentionNet236": (95951528, 28097396736),
    "AttentionNet236_CIFAR": (23563370, 2284759040),
    "AttentionNet452": (176499368, 48487317504),
    "AttentionNet452_CIFAR": (43783274, 3949242368),
    "AttentionNet56": (31810728, 6270836736),
    "AttentionNet56_CIFAR": (7467370, 502999040),
    "AttentionNet92": (52466344, 10533789696),
    "AttentionNet92_CIFAR": (12646506, 850995200),
}


def _attention(depth, cifar):
    name = f"AttentionNet{depth}" + ("_CIFAR" if cifar else "")
    params, macs = _CARDS[name]
    doc = f"Residual Attention Network, depth {depth}, {'CIFAR (32x32)' if cifar else 'ImageNet (224x224)'}."
    return variant(name, ResidualAttentionNet, dict(depth=depth, cifar=cifar), doc,
                   ModelCard("ResidualAttention", params, macs, 32 if cifar else 224),
                   defaults=dict(class_num=10) if cifar else None)


AttentionNet56 = _attention(56, False)
AttentionNet92 = _attention(92, False)
AttentionNet128 = _attention(128, False)
AttentionNet164 = _attention(164, False)
AttentionNet236 = _attention(236, False)
AttentionNet452 = _attention(452, False)
AttentionNet56_CIFAR = _attention(56, True)
AttentionNet92_CIFAR = _attention(92, True)
AttentionNet128_CIFAR = _attention(128, True)
AttentionNet164_CIFAR = _attention(164, True)
AttentionNet236_CIFAR = _attention(236, True)
AttentionNet452_CIFAR = _attention(452, True)

ATTENTION_MODELS = [f"AttentionNet{d}{s}" for d in ATTENTION_SPECS for s in ("", "_CIFAR")]
