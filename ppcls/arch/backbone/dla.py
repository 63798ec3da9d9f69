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

import paddle
import paddle.nn as nn

from ..registry import register_model
from .base import Backbone

# name: (levels, channels, block, residual_root, cardinality)
DLA_SPECS = {
    "DLA34": ((1, 1, 1, 2, 2, 1), (16, 32, 64, 128, 256, 512), "basic", False, None),
    "DLA46_c": ((1, 1, 1, 2, 2, 1), (16, 32, 64, 64, 128, 256), "bottleneck", False, None),
    "DLA46x_c": ((1, 1, 1, 2, 2, 1), (16, 32, 64, 64, 128, 256), "bottleneck", False, 32),
    "DLA60x_c": ((1, 1, 1, 2, 3, 1), (16, 32, 64, 64, 128, 256), "bottleneck", False, 32),
    "DLA60": ((1, 1, 1, 2, 3, 1), (16, 32, 128, 256, 512, 1024), "bottleneck", False, None),
    "DLA60x": ((1, 1, 1, 2, 3, 1), (16, 32, 128, 256, 512, 1024), "bottleneck", False, 32),
    "DLA102": ((1, 1, 1, 3, 4, 1), (16, 32, 128, 256, 512, 1024), "bottleneck", True, None),
    "DLA102x": ((1, 1, 1, 3, 4, 1), (16, 32, 128, 256, 512, 1024), "bottleneck", True, 32),
    "DLA102x2": ((1, 1, 1, 3, 4, 1), (16, 32, 128, 256, 512, 1024), "bottleneck", True, 64),
    "DLA169": ((1, 1, 2, 3, 5, 1), (16, 32, 128, 256, 512, 1024), "bottleneck", True, None),
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


def _factory(name, spec):
    levels, channels, block, residual_root, cardinality = spec

    def factory(class_num=1000, **kwargs):
        return DLA(levels, channels, block, residual_root, cardinality, class_num=class_num, **kwargs)
    factory.__name__ = name
    factory.__qualname__ = name
    factory.__doc__ = f"{name}: levels {levels}, channels {channels}, {block} blocks" + \
        (f", cardinality {cardinality}" if cardinality else "") + (", residual roots" if residual_root else "")
    return register_model(name)(factory)


for _name, _spec in DLA_SPECS.items():
    globals()[_name] = _factory(_name, _spec)
