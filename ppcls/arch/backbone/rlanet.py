"""RLA-Net (Zhao et al., "Recurrent Layer Aggregation", joyfang1106/RLANet): RLA-ResNet, RLA-ECANet,
RLA-ResNeXt and RLA-MobileNetV2.

The RLA module is written once (``RLAState``): a hidden state h of ``rla_channel`` (k) channels
runs beside the body; every block sees concat([x, h]) and, after it,
    h <- recurrent_conv( tanh( bn_block( pool?(h) + conv_out(y) ) ) )
with one conv_out per stage, one BN per block and a recurrent 3x3 conv per stage (ResNet) or a
single one shared by the whole network (MobileNetV2; depthwise in the paper's "dsrla" rows). The
head concatenates the activated h with the last feature map. What the original feeds as y: the
block output for the ResNet bottleneck (its in-place add and ReLU alias the branch tensor), the
pre-residual projection for the MobileNetV2 block.
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...utils.errors import ConfigError
from ..registry import register_model
from .base import Backbone


class ECA(nn.Layer):
    """Efficient channel attention: a 1-D conv across the pooled channel vector, sigmoid gate."""

    def __init__(self, kernel_size):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv = nn.Conv1D(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias_attr=False)

    def forward(self, x):
        w = self.avg_pool(x).squeeze(-1).transpose([0, 2, 1])  # [N, 1, C]
        w = F.sigmoid(self.conv(w)).transpose([0, 2, 1]).unsqueeze(-1)  # [N, C, 1, 1]
        return x * w


class SE(nn.Layer):
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias_attr=False), nn.ReLU(),
                                nn.Linear(channels // reduction, channels, bias_attr=False), nn.Sigmoid())

    def forward(self, x):
        w = self.fc(self.avg_pool(x).flatten(1))
        return x * w.unsqueeze(-1).unsqueeze(-1)


def _zero_hidden(x, k):
    """h0: zeros with k channels and x's batch and spatial size (dynamic shapes export fine)."""
    return paddle.zeros_like(x[:, :1]).tile([1, k, 1, 1])


def _rla_update(h, y, conv_out, bn, recurrent):
    return recurrent(paddle.tanh(bn(h + conv_out(y))))


# -- ResNet family -------------------------------------------------------------------------------
class RLABottleneck(nn.Layer):
    expansion = 4

    def __init__(self, cin, planes, k, stride=1, downsample=False, groups=1, width_per_group=64, se=False, eca=None):
        super().__init__()
        width = int(planes * width_per_group / 64) * groups
        cout = planes * 4
        self.conv1 = nn.Conv2D(cin + k, width, 1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(width)
        self.conv2 = nn.Conv2D(width, width, 3, stride=stride, padding=1, groups=groups, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(width)
        self.conv3 = nn.Conv2D(width, cout, 1, bias_attr=False)
        self.bn3 = nn.BatchNorm2D(cout)
        self.downsample = nn.Sequential(nn.Conv2D(cin, cout, 1, stride=stride, bias_attr=False),
                                        nn.BatchNorm2D(cout)) if downsample else None
        self.se = SE(cout) if se else None
        self.eca = ECA(eca) if eca else None
        self.hidden_pool = nn.AvgPool2D(2, 2) if downsample and stride != 1 else None

    def forward(self, x, h):
        out = F.relu(self.bn1(self.conv1(paddle.concat([x, h], axis=1))))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        if self.eca is not None:
            out = self.eca(out)
        shortcut = self.downsample(x) if self.downsample is not None else x
        out = F.relu(out + shortcut)
        if self.hidden_pool is not None:
            h = self.hidden_pool(h)
        return out, out, h  # y is the block output (see the module docstring)


class _RLABase(Backbone):
    """Shared forward of the RLA networks: ``self.stages`` (lists of blocks), ``self.conv_outs``
    (per stage), ``self.stage_bns`` (per block), ``self._recurrent(i)`` (the recurrent conv of stage i)."""

    def _check_size(self, x, divisor, what):
        if paddle.in_dynamic_mode():
            h, w = x.shape[2], x.shape[3]
            if h % divisor or w % divisor:
                raise ConfigError(f"{type(self).__name__}: input {h}x{w} does not fit the original {what}; "
                                  f"use sides that are multiples of 32")

    def forward(self, x):
        # like Backbone.forward, plus the hidden states of the returned stages with return_hidden
        stages, head_input = self.forward_features(x)
        if self._return_stages is not None:
            feats = [stages[s] for s in self._return_stages]
            if self.return_hidden:
                feats += [self._hidden[s] for s in self._return_stages]
            return feats
        return self.forward_head(head_input)

    def _run_stages(self, x, h):
        stage_x, stage_h = [], []
        for i, blocks in enumerate(self.stages):
            for j, block in enumerate(blocks):
                x, y, h = block(x, h)
                h = _rla_update(h, y, self.conv_outs[i], self.stage_bns[i][j], self._recurrent(i))
            stage_x.append(x)
            stage_h.append(h)
        return x, h, stage_x, stage_h


RESNET_STAGE_PLANES = (64, 128, 256, 512)


class RLAResNet(_RLABase):
    """Stages for ``return_stages``: 0 = stem (stride 4, 64 channels), 1..4 = the four stages (strides
    4..32, 256..2048 channels). ``return_hidden=True`` appends each returned stage's hidden state h
    (k channels) after the feature maps. ``class_num <= 0`` returns the pooled [x, h] features."""

    def __init__(self, layers, class_num=1000, rla_channel=32, se=False, eca=None, groups=1, width_per_group=64,
                 zero_init_last_bn=True, return_stages=None, return_hidden=False, frozen_stages=-1, norm_eval=False):
        super().__init__(return_stages, frozen_stages, norm_eval)
        k = self.rla_channel = rla_channel
        eca = list(eca) if eca else [None] * 4
        self.conv1 = nn.Conv2D(3, 64, 7, stride=2, padding=3, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(64)
        self.maxpool = nn.MaxPool2D(3, 2, 1)
        self.conv_outs = nn.LayerList([nn.Conv2D(p * 4, k, 1, bias_attr=False) for p in RESNET_STAGE_PLANES])
        self.recurrent_convs = nn.LayerList([nn.Conv2D(k, k, 3, padding=1, bias_attr=False) for _ in range(4)])
        stages, bns, cin = [], [], 64
        for i, (planes, n) in enumerate(zip(RESNET_STAGE_PLANES, layers)):
            stride = 1 if i == 0 else 2
            blocks = [RLABottleneck(cin, planes, k, stride, downsample=stride != 1 or cin != planes * 4, groups=groups,
                                    width_per_group=width_per_group, se=se, eca=eca[i])]
            cin = planes * 4
            blocks += [RLABottleneck(cin, planes, k, 1, groups=groups, width_per_group=width_per_group, se=se, eca=eca[i])
                       for _ in range(1, n)]
            stages.append(nn.LayerList(blocks))
            bns.append(nn.LayerList([nn.BatchNorm2D(k) for _ in range(n)]))
        self.stages = nn.LayerList(stages)
        self.stage_bns = nn.LayerList(bns)
        self.bn2 = nn.BatchNorm2D(k)
        self.class_num = class_num
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(cin + k, class_num) if class_num > 0 else None
        self.return_hidden = return_hidden
        self._init_weights(zero_init_last_bn)
        self._set_feature_info([dict(name="stem", channels=64, reduction=4)] +
                               [dict(name=f"stages.{i}", channels=p * 4, reduction=4 * 2 ** i)
                                for i, p in enumerate(RESNET_STAGE_PLANES)])

    def _init_weights(self, zero_init_last_bn):
        for m in self.sublayers():
            if isinstance(m, nn.Conv2D):
                o, _, kh, kw = m.weight.shape
                m.weight.set_value(paddle.normal(0.0, math.sqrt(2.0 / (o * kh * kw)), m.weight.shape))
        if zero_init_last_bn:
            for blocks in self.stages:
                for b in blocks:
                    b.bn3.weight.set_value(paddle.zeros(b.bn3.weight.shape))

    def _recurrent(self, i):
        return self.recurrent_convs[i]

    def stage_layers(self):
        stem = [self.conv1, self.bn1]
        return [stem] + [[self.stages[i], self.stage_bns[i], self.conv_outs[i], self.recurrent_convs[i]]
                         for i in range(4)]

    def forward_features(self, x):
        self._check_size(x, 32, "stride pattern (ceil(H/4) must be a multiple of 8)")
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        h = _zero_hidden(x, self.rla_channel)
        stem = x
        x, h, stage_x, stage_h = self._run_stages(x, h)
        self._hidden = [h] + stage_h  # the stem has h0 (zeros)
        head = paddle.concat([x, F.relu(self.bn2(h))], axis=1)
        return [stem] + stage_x, head

    def forward_head(self, x):
        x = self.avgpool(x).flatten(1)
        return x if self.fc is None else self.fc(x)


# name: (layers, groups, width_per_group, se, eca kernel sizes)
RLA_RESNET_SPECS = {
    "RLA_ResNet50": ((3, 4, 6, 3), 1, 64, False, None),
    "RLA_ResNet101": ((3, 4, 23, 3), 1, 64, False, None),
    "RLA_ResNet152": ((3, 8, 36, 3), 1, 64, False, None),
    "RLA_ECANet50": ((3, 4, 6, 3), 1, 64, False, (5, 5, 5, 7)),
    "RLA_ECANet101": ((3, 4, 23, 3), 1, 64, False, (5, 5, 5, 7)),
    "RLA_ECANet152": ((3, 8, 36, 3), 1, 64, False, (5, 5, 5, 7)),
    "RLA_ResNeXt50_32x4d": ((3, 4, 6, 3), 32, 4, False, None),
    "RLA_ResNeXt50_32x4d_SE": ((3, 4, 6, 3), 32, 4, True, None),
    "RLA_ResNeXt50_32x4d_ECA": ((3, 4, 6, 3), 32, 4, False, (5, 5, 5, 7)),
    "RLA_ResNeXt101_32x4d": ((3, 4, 23, 3), 32, 4, False, None),
    "RLA_ResNeXt101_32x4d_SE": ((3, 4, 23, 3), 32, 4, True, None),
    "RLA_ResNeXt101_32x4d_ECA": ((3, 4, 23, 3), 32, 4, False, (5, 5, 5, 7)),
}


# -- MobileNetV2 family --------------------------------------------------------------------------
# (expansion t, channels c, blocks n, stride s) per stage
MBV2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class RLAInvertedResidual(nn.Layer):
    """[1x1 expand, BN, ReLU6] -> concat h -> 3x3 depthwise over hidden + k, BN, ReLU6 -> 1x1 project,
    BN -> [ECA]. y is the projection (before the residual add)."""

    def __init__(self, cin, cout, stride, t, k, eca=None):
        super().__init__()
        hidden = cin * t
        self.conv1x1 = nn.Sequential(nn.Conv2D(cin, hidden, 1, bias_attr=False), nn.BatchNorm2D(hidden),
                                     nn.ReLU6()) if t != 1 else None
        dw = hidden + k
        layers = [nn.Sequential(nn.Conv2D(dw, dw, 3, stride=stride, padding=1, groups=dw, bias_attr=False),
                                nn.BatchNorm2D(dw), nn.ReLU6()),
                  nn.Conv2D(dw, cout, 1, bias_attr=False), nn.BatchNorm2D(cout)]
        if eca:
            layers.append(ECA(eca))
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout
        self.hidden_pool = nn.AvgPool2D(2, 2) if stride != 1 else None

    def forward(self, x, h):
        e = self.conv1x1(x) if self.conv1x1 is not None else x
        y = self.conv(paddle.concat([e, h], axis=1))
        out = x + y if self.use_res else y
        if self.hidden_pool is not None:
            h = self.hidden_pool(h)
        return out, y, h


# feature stages: ends of MobileNetV2 stages 0, 1, 2, 4, 6 (strides 2, 4, 8, 16, 32)
_MBV2_FEATURE_STAGES = (0, 1, 2, 4, 6)


class RLAMobileNetV2(_RLABase):
    """``depthwise_recurrent=True``: the paper's RLA-MobileNetV2 (the original's dsrla_ models), a 3x3
    depthwise recurrent conv; False: a full 3x3 conv. One recurrent conv serves every stage.
    Stages for ``return_stages``: the ends of MobileNetV2 stages 0, 1, 2, 4, 6 (strides 2..32).
    ``return_hidden=True`` appends their hidden states. ``class_num <= 0`` returns pooled features."""

    def __init__(self, class_num=1000, rla_channel=32, eca=False, depthwise_recurrent=True, dropout=0.2,
                 return_stages=None, return_hidden=False, frozen_stages=-1, norm_eval=False):
        super().__init__(return_stages, frozen_stages, norm_eval)
        k = self.rla_channel = rla_channel
        self.conv1 = nn.Sequential(nn.Conv2D(3, 32, 3, stride=2, padding=1, bias_attr=False), nn.BatchNorm2D(32),
                                   nn.ReLU6())
        stages, bns, cin = [], [], 32
        for t, c, n, s in MBV2_SETTING:
            e = (1 if c < 96 else 3) if eca else None
            blocks = []
            for b in range(n):
                blocks.append(RLAInvertedResidual(cin, c, s if b == 0 else 1, t, k, e))
                cin = c
            stages.append(nn.LayerList(blocks))
            bns.append(nn.LayerList([nn.BatchNorm2D(k) for _ in range(n)]))
        self.stages = nn.LayerList(stages)
        self.conv_outs = nn.LayerList([nn.Conv2D(c, k, 1, bias_attr=False) for _, c, _, _ in MBV2_SETTING])
        self.recurrent_conv = nn.Conv2D(k, k, 3, padding=1, groups=k if depthwise_recurrent else 1, bias_attr=False)
        self.stage_bns = nn.LayerList(bns)
        self.conv2 = nn.Sequential(nn.Conv2D(cin + k, 1280, 1, bias_attr=False), nn.BatchNorm2D(1280), nn.ReLU6())
        self.bn2 = nn.BatchNorm2D(k)
        self.class_num = class_num
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, class_num)) if class_num > 0 else None
        self.return_hidden = return_hidden
        self._init_weights()
        chans = [MBV2_SETTING[i][1] for i in _MBV2_FEATURE_STAGES]
        self._set_feature_info([dict(name=f"stages.{i}", channels=c, reduction=r)
                                for i, c, r in zip(_MBV2_FEATURE_STAGES, chans, (2, 4, 8, 16, 32))])

    def _init_weights(self):
        for m in self.sublayers():
            if isinstance(m, nn.Conv2D):
                o, _, kh, kw = m.weight.shape
                m.weight.set_value(paddle.normal(0.0, math.sqrt(2.0 / (o * kh * kw)), m.weight.shape))
            elif isinstance(m, nn.Linear):
                m.weight.set_value(paddle.normal(0.0, 0.01, m.weight.shape))
                m.bias.set_value(paddle.zeros(m.bias.shape))

    def _recurrent(self, i):
        return self.recurrent_conv

    def stage_layers(self):
        groups, start = [], 0
        for end in _MBV2_FEATURE_STAGES:
            layers = [self.stages[i] for i in range(start, end + 1)] + \
                     [self.stage_bns[i] for i in range(start, end + 1)] + \
                     [self.conv_outs[i] for i in range(start, end + 1)]
            groups.append(([self.conv1] if start == 0 else []) + layers)
            start = end + 1
        return groups

    def forward_features(self, x):
        self._check_size(x, 32, "stride pattern (ceil(H/2) must be a multiple of 16)")
        x = self.conv1(x)
        h = _zero_hidden(x, self.rla_channel)
        x, h, stage_x, stage_h = self._run_stages(x, h)
        self._hidden = [stage_h[i] for i in _MBV2_FEATURE_STAGES]
        head = self.conv2(paddle.concat([x, F.relu6(self.bn2(h))], axis=1))
        return [stage_x[i] for i in _MBV2_FEATURE_STAGES], head

    def forward_head(self, x):
        # a functional pool, as in the original: the paper's profiler (a layer-hook counter) does not
        # count it, and count_paper_flops reproduces the paper's 351.8M / 352.4M only this way
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x if self.classifier is None else self.classifier(x)


# name: (eca, depthwise recurrent conv)
RLA_MOBILENET_SPECS = {
    "RLA_MobileNetV2": (False, True),
    "RLA_ECA_MobileNetV2": (True, True),
    "RLA_MobileNetV2_FullConv": (False, False),
    "RLA_ECA_MobileNetV2_FullConv": (True, False),
}


def _resnet_factory(name, spec):
    layers, groups, wpg, se, eca = spec

    def factory(class_num=1000, rla_channel=32, **kwargs):
        return RLAResNet(layers, class_num, rla_channel, se=se, eca=eca, groups=groups, width_per_group=wpg, **kwargs)
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"{name}: RLA on a bottleneck ResNet {layers}, {groups}x{wpg}" + (", SE" if se else "") + \
        (f", ECA {eca}" if eca else "")
    return register_model(name)(factory)


def _mobilenet_factory(name, spec):
    eca, dw = spec

    def factory(class_num=1000, rla_channel=32, **kwargs):
        return RLAMobileNetV2(class_num, rla_channel, eca=eca, depthwise_recurrent=dw, **kwargs)
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"{name}: RLA on MobileNetV2, {'depthwise' if dw else 'full'} 3x3 recurrent conv" + \
        (", ECA" if eca else "")
    return register_model(name)(factory)


for _n, _s in RLA_RESNET_SPECS.items():
    globals()[_n] = _resnet_factory(_n, _s)
for _n, _s in RLA_MOBILENET_SPECS.items():
    globals()[_n] = _mobilenet_factory(_n, _s)
