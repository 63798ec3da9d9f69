"""DLA (Deep Layer Aggregation, Yu et al. 2018): the ten ImageNet classifiers of ucbdrive/dla.

Variants are rows of ``DLA_SPECS`` over one Tree / Root / block implementation. Differences from the
original, all without effect on the logits at the reference size 224:
- the ``project`` layers the original builds in non-leaf trees (their output never reaches the
  logits) are left out, as in timm and PaddleClas; the converter drops their checkpoint keys;
- pooling is global (identical to the original's 7x7 average pool at 224), and the tree's
  down-sampling max-pool rounds up, like the strided convolutions beside it, so that any input
  size works (the original only runs sizes H, W in {32m - 1, 32m});
- the classifier is the original 1x1 convolution with bias, then flatten.
"""
import math
from collections import namedtuple

import paddle
import paddle.nn as nn

from ..registry import ModelCard, variant
from ..weight_table import Weights, paddleclas_weights, register_weights, timm_weights
from .base import Backbone

__all__ = ["DLA", "DLA_SPECS", "DLA34", "DLA46_c", "DLA46x_c", "DLA60x_c", "DLA60", "DLA60x", "DLA102",
           "DLA102x", "DLA102x2", "DLA169"]

DLARow = namedtuple("DLARow", "levels channels block residual_root cardinality params macs")
_NARROW, _WIDE = (16, 32, 64, 64, 128, 256), (16, 32, 128, 256, 512, 1024)
# params / conv+linear MACs at 224: measured from the built models (tests/test_model_cards.py)
DLA_SPECS = {
    "DLA34": DLARow((1, 1, 1, 2, 2, 1), (16, 32, 64, 128, 256, 512), "basic", False, None, 15742104, 3060043776),
    "DLA46_c": DLARow((1, 1, 1, 2, 2, 1), _NARROW, "bottleneck", False, None, 1301400, 574269440),
    "DLA46x_c": DLARow((1, 1, 1, 2, 2, 1), _NARROW, "bottleneck", False, 32, 1068440, 532723712),
    "DLA60x_c": DLARow((1, 1, 1, 2, 3, 1), _NARROW, "bottleneck", False, 32, 1319832, 581294080),
    "DLA60": DLARow((1, 1, 1, 2, 3, 1), _WIDE, "bottleneck", False, None, 22036632, 4235878400),
    "DLA60x": DLARow((1, 1, 1, 2, 3, 1), _WIDE, "bottleneck", False, 32, 17352344, 3516555264),
    "DLA102": DLARow((1, 1, 1, 3, 4, 1), _WIDE, "bottleneck", True, None, 33268888, 7164551168),
    "DLA102x": DLARow((1, 1, 1, 3, 4, 1), _WIDE, "bottleneck", True, 32, 26309272, 5847932928),
    "DLA102x2": DLARow((1, 1, 1, 3, 4, 1), _WIDE, "bottleneck", True, 64, 41282200, 9283985408),
    "DLA169": DLARow((1, 1, 2, 3, 5, 1), _WIDE, "bottleneck", True, None, 53389720, 11557560320),
}


def _conv(cin, cout, k, stride=1, groups=1):
    return nn.Conv2D(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias_attr=False)


class BasicBlock(nn.Layer):
    def __init__(self, cin, cout, stride=1, cardinality=None):
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride)
        self.bn1 = nn.BatchNorm2D(cout)
        self.conv2 = _conv(cout, cout, 3)
        self.bn2 = nn.BatchNorm2D(cout)
        self.relu = nn.ReLU()

    def forward(self, x, residual=None):
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + residual)


class Bottleneck(nn.Layer):
    """1x1 -> 3x3 (strided, grouped when ``cardinality``) -> 1x1. Width out/2, or out*cardinality/32
    for the ResNeXt-style blocks (the original's BottleneckX)."""

    def __init__(self, cin, cout, stride=1, cardinality=None):
        super().__init__()
        mid = cout // 2 if cardinality is None else cout * cardinality // 32
        self.conv1 = _conv(cin, mid, 1)
        self.bn1 = nn.BatchNorm2D(mid)
        self.conv2 = _conv(mid, mid, 3, stride, groups=cardinality or 1)
        self.bn2 = nn.BatchNorm2D(mid)
        self.conv3 = _conv(mid, cout, 1)
        self.bn3 = nn.BatchNorm2D(cout)
        self.relu = nn.ReLU()

    def forward(self, x, residual=None):
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + residual)


class Root(nn.Layer):
    """1x1 conv over the concatenated children; the residual is the first child."""

    def __init__(self, cin, cout, residual):
        super().__init__()
        self.conv = _conv(cin, cout, 1)
        self.bn = nn.BatchNorm2D(cout)
        self.relu = nn.ReLU()
        self.residual = residual

    def forward(self, *xs):
        out = self.bn(self.conv(paddle.concat(xs, axis=1)))
        if self.residual:
            out = out + xs[0]
        return self.relu(out)


class Tree(nn.Layer):
    def __init__(self, levels, block, cin, cout, stride=1, level_root=False, root_dim=0, root_residual=False,
                 cardinality=None):
        super().__init__()
        root_dim = root_dim or 2 * cout
        if level_root:
            root_dim += cin
        self.levels = levels
        self.level_root = level_root
        if levels == 1:
            self.tree1 = block(cin, cout, stride, cardinality)
            self.tree2 = block(cout, cout, 1, cardinality)
            self.root = Root(root_dim, cout, root_residual)
        else:
            self.tree1 = Tree(levels - 1, block, cin, cout, stride, root_residual=root_residual,
                              cardinality=cardinality)
            self.tree2 = Tree(levels - 1, block, cout, cout, 1, root_dim=root_dim + cout,
                              root_residual=root_residual, cardinality=cardinality)
        # ceil_mode: the pooled shortcut matches the strided convolution's size at odd sizes too
        self.downsample = nn.MaxPool2D(stride, stride, ceil_mode=True) if stride > 1 else None
        # only a leaf uses its shortcut projection; the original's non-leaf ones never reach the output
        self.project = nn.Sequential(_conv(cin, cout, 1), nn.BatchNorm2D(cout)) \
            if levels == 1 and cin != cout else None

    def forward(self, x, residual=None, children=None):
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample is not None else x
        if self.level_root:
            children.append(bottom)
        if self.levels == 1:
            shortcut = self.project(bottom) if self.project is not None else bottom
            x1 = self.tree1(x, shortcut)
            x2 = self.tree2(x1)
            return self.root(x2, x1, *children)
        x1 = self.tree1(x)
        children.append(x1)
        return self.tree2(x1, children=children)


def _conv_level(cin, cout, convs, stride):
    layers = []
    for i in range(convs):
        layers += [_conv(cin, cout, 3, stride if i == 0 else 1), nn.BatchNorm2D(cout), nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers)


class DLA(Backbone):
    """Stages for ``return_stages``: 0 = level0 (stride 1), 1 = level1 (2), 2..5 = level2..level5
    (4, 8, 16, 32). ``class_num <= 0`` returns the pooled features [N, C]."""

    def __init__(self, levels, channels, block="basic", residual_root=False, cardinality=None, class_num=1000,
                 drop_rate=0.0, return_stages=None, frozen_stages=-1, norm_eval=False):
        super().__init__(return_stages, frozen_stages, norm_eval)
        block_cls = BasicBlock if block == "basic" else Bottleneck
        c = channels
        self.base_layer = nn.Sequential(_conv(3, c[0], 7), nn.BatchNorm2D(c[0]), nn.ReLU())
        self.level0 = _conv_level(c[0], c[0], levels[0], 1)
        self.level1 = _conv_level(c[0], c[1], levels[1], 2)
        for i in range(2, 6):
            setattr(self, f"level{i}", Tree(levels[i], block_cls, c[i - 1], c[i], 2, level_root=i > 2,
                                            root_residual=residual_root, cardinality=cardinality))
        self.class_num = class_num
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else None
        self.fc = nn.Conv2D(c[5], class_num, 1) if class_num > 0 else None
        self._init_weights()
        self._set_feature_info([dict(name=f"level{i}", channels=c[i], reduction=2 ** i) for i in range(6)])

    def _init_weights(self):
        for m in self.sublayers():
            if isinstance(m, nn.Conv2D):
                k = m.weight.shape
                std = math.sqrt(2.0 / (k[2] * k[3] * k[0]))
                m.weight.set_value(paddle.normal(0.0, std, m.weight.shape))
        if self.fc is not None:
            bound = 1.0 / math.sqrt(self.fc.weight.shape[1])
            self.fc.bias.set_value(paddle.uniform(self.fc.bias.shape, min=-bound, max=bound))

    def stage_layers(self):
        return [[self.base_layer, self.level0], [self.level1]] + [[getattr(self, f"level{i}")] for i in range(2, 6)]

    def forward_features(self, x):
        x = self.level0(self.base_layer(x))
        stages = [x]
        for i in range(1, 6):
            x = getattr(self, f"level{i}")(x)
            stages.append(x)
        return stages, x

    def forward_head(self, x):
        x = self.avgpool(x)
        if self.fc is None:
            return x.flatten(1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.fc(x).flatten(1)


def _dla(name):
    row = DLA_SPECS[name]
    doc = (f"{name}: levels {row.levels}, channels {row.channels}, {row.block} blocks"
           + (f", cardinality {row.cardinality}" if row.cardinality else "")
           + (", residual roots" if row.residual_root else ""))
    fixed = dict(levels=row.levels, channels=row.channels, block=row.block, residual_root=row.residual_root,
                 cardinality=row.cardinality)
    return variant(name, DLA, fixed, doc, ModelCard("DLA", row.params, row.macs))


DLA34 = _dla("DLA34")
DLA46_c = _dla("DLA46_c")
DLA46x_c = _dla("DLA46x_c")
DLA60x_c = _dla("DLA60x_c")
DLA60 = _dla("DLA60")
DLA60x = _dla("DLA60x")
DLA102 = _dla("DLA102")
DLA102x = _dla("DLA102x")
DLA102x2 = _dla("DLA102x2")
DLA169 = _dla("DLA169")


# -- published weights: PaddleClas's conversions, timm's Hub files, the authors' own (whose host,
# dl.yf.io, may no longer answer); accuracies as each source published them
def _paddleclas(name, top1, top5):
    return paddleclas_weights(name, top1, top5, "docs/zh_CN/models/ImageNet1k/DLA.md", "BSD-3-Clause ucbdrive/dla")


def _timm(hub, top1, top5):
    return timm_weights("timm_in1k", hub, top1, top5, "BSD-3-Clause")


def _ucbdrive(file):
    return Weights("original", "torch", file, url=f"http://dl.yf.io/dla/models/imagenet/{file}",
                   sha256_prefix=file.rsplit("-", 1)[1].split(".")[0], license="BSD-3-Clause (ucbdrive/dla)",
                   notes="the ucbdrive README publishes no accuracy table")


DLA_WEIGHTS = {
    "DLA34": (_paddleclas("DLA34", 76.03, 92.98), _timm("timm/dla34.in1k", 74.632, 92.052), _ucbdrive("dla34-ba72cf86.pth")),
    "DLA46_c": (_paddleclas("DLA46_c", 63.21, 85.3), _timm("timm/dla46_c.in1k", 64.88, 86.33), _ucbdrive("dla46_c-2bfd52c3.pth")),
    "DLA46x_c": (_paddleclas("DLA46x_c", 64.36, 86.01), _timm("timm/dla46x_c.in1k", 66.008, 86.946), _ucbdrive("dla46x_c-d761bae7.pth")),
    "DLA60": (_paddleclas("DLA60", 76.1, 92.92), _timm("timm/dla60.in1k", 77.036, 93.316), _ucbdrive("dla60-24839fc4.pth")),
    "DLA60x": (_paddleclas("DLA60x", 77.53, 93.78), _timm("timm/dla60x.in1k", 78.234, 94.022), _ucbdrive("dla60x-d15cacda.pth")),
    "DLA60x_c": (_paddleclas("DLA60x_c", 66.45, 87.54), _timm("timm/dla60x_c.in1k", 67.928, 88.426), _ucbdrive("dla60x_c-b870c45c.pth")),
    "DLA102": (_paddleclas("DLA102", 78.93, 94.52), _timm("timm/dla102.in1k", 78.016, 93.952), _ucbdrive("dla102-d94d9790.pth")),
    "DLA102x": (_paddleclas("DLA102x", 78.1, 94.0), _timm("timm/dla102x.in1k", 78.516, 94.226), _ucbdrive("dla102x-ad62be81.pth")),
    "DLA102x2": (_paddleclas("DLA102x2", 78.85, 94.45), _timm("timm/dla102x2.in1k", 79.448, 94.654), _ucbdrive("dla102x2-262837b6.pth")),
    "DLA169": (_paddleclas("DLA169", 78.09, 94.09), _timm("timm/dla169.in1k", 78.702, 94.334), _ucbdrive("dla169-0914e092.pth")),
}
register_weights(DLA_WEIGHTS)
