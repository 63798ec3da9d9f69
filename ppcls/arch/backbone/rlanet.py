"""RLA-Net (Zhao et al., "Recurrent Layer Aggregation", joyfang1106/RLANet): RLA-ResNet, RLA-ECANet,
RLA-ResNeXt (plain, SE, ECA) and RLA-MobileNetV2 (depthwise or full recurrent conv).

The RLA module is written once, in ``RLANet``: a hidden state h of ``rla_channel`` (k) channels runs
beside the body. Every block reads concat([x, h]); after every block

    h <- recurrent( tanh( bn_block( pool?(h) + conv_out_stage(y) ) ) )

with one 1x1 ``conv_out`` per stage, one BatchNorm per block, a 2x2 average pool of h where the block
downsamples, and a 3x3 recurrent conv: one per stage (ResNet) or one for the whole network
(MobileNetV2; depthwise in the paper's rows). The head concatenates act(bn2(h)) to the last feature map.

What the original feeds as y differs by body, and matters:
- ResNet bottleneck: the block OUTPUT (after the residual add and ReLU). The original binds y to the
  branch tensor but then adds the shortcut and applies ReLU in place, so y aliases the output.
  Paddle's ``+`` and ReLU are out of place; a literal port would feed the branch and diverge.
- MobileNetV2 block: the projection before the residual add (that add is out of place upstream).

Parameter names follow the original checkpoints (``conv_outs.i``, ``recurrent_convs.i``,
``stage_bns.i.j``, ``bn2``, ``stages.i.j.*``) so conversion is key for key; MobileNetV2's single
recurrent conv, stored five times upstream, is the one parameter ``recurrent_conv``.
"""
import math
from collections import namedtuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...utils.errors import ConfigError
from ..registry import ModelCard, variant
from ..weight_table import Weights, register_weights
from .base import Backbone

__all__ = ["RLANet", "RLAResNet", "RLAMobileNetV2", "RLA_RESNET_SPECS", "RLA_MOBILENET_SPECS",
           "RLA_ResNet50", "RLA_ResNet101", "RLA_ResNet152", "RLA_ECANet50", "RLA_ECANet101", "RLA_ECANet152",
           "RLA_ResNeXt50_32x4d", "RLA_ResNeXt50_32x4d_SE", "RLA_ResNeXt50_32x4d_ECA", "RLA_ResNeXt101_32x4d",
           "RLA_ResNeXt101_32x4d_SE", "RLA_ResNeXt101_32x4d_ECA", "RLA_MobileNetV2", "RLA_ECA_MobileNetV2",
           "RLA_MobileNetV2_FullConv", "RLA_ECA_MobileNetV2_FullConv"]


# -- initialisation as in the original (PyTorch), so training from scratch starts the same way -------
def _kaiming_normal_fan_out(conv):
    out_c, _, kh, kw = conv.weight.shape
    conv.weight.set_value(paddle.normal(0.0, math.sqrt(2.0 / (out_c * kh * kw)), conv.weight.shape))


def _torch_default_uniform(weight, fan_in):
    """PyTorch's default for Linear / Conv1d weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    weight.set_value(paddle.uniform(weight.shape, min=-bound, max=bound))


class ECA(nn.Layer):
    """Efficient channel attention: a 1-D conv across the pooled channel vector, sigmoid gate."""

    def __init__(self, kernel_size):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv = nn.Conv1D(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias_attr=False)
        _torch_default_uniform(self.conv.weight, kernel_size)

    def forward(self, x):
        w = self.avg_pool(x).squeeze(-1).transpose([0, 2, 1])  # [N, 1, C]
        w = F.sigmoid(self.conv(w)).transpose([0, 2, 1]).unsqueeze(-1)  # [N, C, 1, 1]
        return x * w


class SE(nn.Layer):
    """Squeeze-and-excitation with bias-free FCs (the original's ``se.fc.0`` / ``se.fc.2``)."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias_attr=False), nn.ReLU(),
                                nn.Linear(channels // reduction, channels, bias_attr=False), nn.Sigmoid())
        for fc in (self.fc[0], self.fc[2]):
            _torch_default_uniform(fc.weight, fc.weight.shape[0])

    def forward(self, x):
        w = self.fc(self.avg_pool(x).flatten(1))
        return x * w.unsqueeze(-1).unsqueeze(-1)


# -- the RLA module, shared by every body -------------------------------------------------------------
class RLANet(Backbone):
    """The RLA machinery over a body. A subclass builds its stem and ``self.stages`` (a LayerList of
    LayerLists of blocks; ``block(x, h) -> (out, y)``, ``block.pools_hidden`` says whether h is
    pooled after it), calls ``_build_rla``, and implements ``_recurrent(i)``, ``_stem`` and
    ``_features_and_hidden``.

    ``return_hidden=True`` (with ``return_stages``) appends the hidden state of every returned stage
    after the feature maps (same order)."""

    def __init__(self, return_stages=None, return_hidden=False, frozen_stages=-1, norm_eval=False):
        super().__init__(return_stages, frozen_stages, norm_eval)
        if return_hidden and return_stages is None:
            raise ConfigError(f"{type(self).__name__}: return_hidden=True needs return_stages "
                              "(the hidden states are returned next to the stage outputs)")
        self.return_hidden = bool(return_hidden)

    def _build_rla(self, k, stage_channels, blocks_per_stage, head_act):
        self.rla_channel = k
        self.conv_outs = nn.LayerList([nn.Conv2D(c, k, 1, bias_attr=False) for c in stage_channels])
        self.stage_bns = nn.LayerList([nn.LayerList([nn.BatchNorm2D(k) for _ in range(n)])
                                       for n in blocks_per_stage])
        self.bn2 = nn.BatchNorm2D(k)
        # a layer (not a functional call): the paper's FLOPs rule counts the pools of h
        self.hidden_pool = nn.AvgPool2D(2, 2)
        self._head_act = head_act
        # h is pooled with floor rounding where the strided convs round up: the stem output must
        # halve exactly at every pooling block
        self._stem_divisor = 2 ** sum(int(b.pools_hidden) for blocks in self.stages for b in blocks)

    def _recurrent(self, i):
        raise NotImplementedError

    def _check_stem(self, x):
        if not paddle.in_dynamic_mode():
            return
        h, w = x.shape[2], x.shape[3]
        d = self._stem_divisor
        if h % d or w % d:
            raise ConfigError(
                f"{type(self).__name__}: the input gives a {h}x{w} stem output, which must be divisible by {d} "
                f"(the original pools the hidden state with floor rounding while its strided convs round up, "
                f"so other sizes fail there too); use sides that are multiples of 32")

    def _run_rla(self, x):
        """x: the stem output. Returns (output of every stage, h after every stage, h0, head input)."""
        self._check_stem(x)
        h = h0 = paddle.zeros_like(x[:, :1]).tile([1, self.rla_channel, 1, 1])  # runtime batch and size
        stage_x, stage_h = [], []
        for i, blocks in enumerate(self.stages):
            conv_out, recurrent = self.conv_outs[i], self._recurrent(i)
            for block, bn in zip(blocks, self.stage_bns[i]):
                x, y = block(x, h)
                if block.pools_hidden:
                    h = self.hidden_pool(h)
                h = recurrent(paddle.tanh(bn(h + conv_out(y))))
            stage_x.append(x)
            stage_h.append(h)
        head = paddle.concat([x, self._head_act(self.bn2(h))], axis=1)
        return stage_x, stage_h, h0, head

    def _features_and_hidden(self, x):
        """(feature maps, their hidden states, head input) for the stages of ``feature_info``."""
        raise NotImplementedError

    def forward_features(self, x):
        feats, _, head = self._features_and_hidden(x)
        return feats, head

    def forward(self, x):
        feats, hidden, head = self._features_and_hidden(x)
        if self._return_stages is None:
            return self.forward_head(head)
        out = [feats[s] for s in self._return_stages]
        if self.return_hidden:
            out += [hidden[s] for s in self._return_stages]
        return out


# -- ResNet / ResNeXt body ----------------------------------------------------------------------------
RESNET_STAGE_PLANES = (64, 128, 256, 512)


class RLABottleneck(nn.Layer):
    """Bottleneck over concat([x, h]); optional SE then ECA on the branch. Returns (out, y) with y = out
    (see the module docstring)."""

    def __init__(self, cin, planes, k, stride=1, downsample=False, groups=1, width_per_group=64, se=False,
                 eca_kernel=None):
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
        self.eca = ECA(eca_kernel) if eca_kernel else None
        # the original pools h only in blocks that both have a projection shortcut and stride 2
        # (stage 0's first block has a projection but keeps the resolution)
        self.pools_hidden = downsample and stride != 1

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
        return out, out


class RLAResNet(RLANet):
    """RLA over a bottleneck ResNet / ResNeXt.

    Stages for ``return_stages``: 0 = stem (stride 4, 64 channels), 1..4 = the four stages (strides
    4..32, 256..2048 channels); their hidden states (``return_hidden``) have k channels, the stem's is
    h0 (zeros). ``frozen_stages`` = m freezes the stem and stages 1..m with their conv_out, recurrent
    conv and BNs of h (the original detection backbone's rule). ``class_num <= 0`` returns the pooled
    [x, h] features (2048 + k)."""

    def __init__(self, layers, class_num=1000, rla_channel=32, se=False, eca_kernels=None, groups=1,
                 width_per_group=64, zero_init_last_bn=True, return_stages=None, return_hidden=False,
                 frozen_stages=-1, norm_eval=False):
        super().__init__(return_stages, return_hidden, frozen_stages, norm_eval)
        k = rla_channel
        eca_kernels = list(eca_kernels) if eca_kernels else [None] * 4
        self.conv1 = nn.Conv2D(3, 64, 7, stride=2, padding=3, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(64)
        self.maxpool = nn.MaxPool2D(3, 2, 1)
        self.recurrent_convs = nn.LayerList([nn.Conv2D(k, k, 3, padding=1, bias_attr=False) for _ in range(4)])
        stages, cin = [], 64
        for i, (planes, n) in enumerate(zip(RESNET_STAGE_PLANES, layers)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                s = stride if j == 0 else 1
                blocks.append(RLABottleneck(cin, planes, k, s, downsample=j == 0 and (s != 1 or cin != planes * 4),
                                            groups=groups, width_per_group=width_per_group, se=se,
                                            eca_kernel=eca_kernels[i]))
                cin = planes * 4
            stages.append(nn.LayerList(blocks))
        self.stages = nn.LayerList(stages)
        self._build_rla(k, [p * 4 for p in RESNET_STAGE_PLANES], layers, F.relu)
        self.class_num = class_num
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(cin + k, class_num) if class_num > 0 else None
        self._init_weights(zero_init_last_bn)
        self._set_feature_info([dict(name="stem", channels=64, reduction=4)] +
                               [dict(name=f"stages.{i}", channels=p * 4, reduction=4 * 2 ** i)
                                for i, p in enumerate(RESNET_STAGE_PLANES)])

    def _init_weights(self, zero_init_last_bn):
        for m in self.sublayers():
            if isinstance(m, nn.Conv2D):
                _kaiming_normal_fan_out(m)
        if self.fc is not None:
            fan_in = self.fc.weight.shape[0]
            _torch_default_uniform(self.fc.weight, fan_in)
            _torch_default_uniform(self.fc.bias, fan_in)
        if zero_init_last_bn:
            for blocks in self.stages:
                for b in blocks:
                    b.bn3.weight.set_value(paddle.zeros(b.bn3.weight.shape))

    def _recurrent(self, i):
        return self.recurrent_convs[i]

    def stage_layers(self):
        return [[self.conv1, self.bn1]] + [[self.stages[i], self.stage_bns[i], self.conv_outs[i],
                                            self.recurrent_convs[i]] for i in range(4)]

    def _features_and_hidden(self, x):
        stem = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        stage_x, stage_h, h0, head = self._run_rla(stem)
        return [stem] + stage_x, [h0] + stage_h, head

    def forward_head(self, x):
        x = self.avgpool(x).flatten(1)
        return x if self.fc is None else self.fc(x)


# -- MobileNetV2 body ---------------------------------------------------------------------------------
# (expansion t, channels c, blocks n, stride s) per stage
MBV2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# feature stages: the ends of MobileNetV2 stages 0, 1, 2, 4, 6 (strides 2, 4, 8, 16, 32)
_MBV2_FEATURE_STAGES = (0, 1, 2, 4, 6)


class RLAInvertedResidual(nn.Layer):
    """[1x1 expand, BN, ReLU6] -> concat h -> 3x3 depthwise over hidden + k, BN, ReLU6 -> 1x1 project,
    BN -> [ECA]. Returns (out, y) with y the projection before the residual add."""

    def __init__(self, cin, cout, stride, t, k, eca_kernel=None):
        super().__init__()
        hidden = cin * t
        self.conv1x1 = nn.Sequential(nn.Conv2D(cin, hidden, 1, bias_attr=False), nn.BatchNorm2D(hidden),
                                     nn.ReLU6()) if t != 1 else None
        dw = hidden + k
        layers = [nn.Sequential(nn.Conv2D(dw, dw, 3, stride=stride, padding=1, groups=dw, bias_attr=False),
                                nn.BatchNorm2D(dw), nn.ReLU6()),
                  nn.Conv2D(dw, cout, 1, bias_attr=False), nn.BatchNorm2D(cout)]
        if eca_kernel:
            layers.append(ECA(eca_kernel))
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout
        self.pools_hidden = stride != 1

    def forward(self, x, h):
        e = self.conv1x1(x) if self.conv1x1 is not None else x
        y = self.conv(paddle.concat([e, h], axis=1))
        return (x + y if self.use_res else y), y


class RLAMobileNetV2(RLANet):
    """RLA over MobileNetV2 1.0. ``depthwise_recurrent=True``: the paper's RLA-MobileNetV2 (the
    original's ``dsrla_`` models, a 3x3 depthwise recurrent conv); False: a full 3x3 conv (``rla_``).
    One recurrent conv serves every stage.

    Stages for ``return_stages``: the ends of MobileNetV2 stages 0, 1, 2, 4, 6 (strides 2..32; 16, 24,
    32, 96, 320 channels). ``frozen_stages`` = m freezes feature stages 0..m (stage 0 includes the
    stem); the shared recurrent conv is frozen with the last one, i.e. once nothing trainable uses it.
    ``class_num <= 0`` returns the pooled 1280-d features."""

    def __init__(self, class_num=1000, rla_channel=32, eca=False, depthwise_recurrent=True, dropout=0.2,
                 return_stages=None, return_hidden=False, frozen_stages=-1, norm_eval=False):
        super().__init__(return_stages, return_hidden, frozen_stages, norm_eval)
        k = rla_channel
        self.conv1 = nn.Sequential(nn.Conv2D(3, 32, 3, stride=2, padding=1, bias_attr=False), nn.BatchNorm2D(32),
                                   nn.ReLU6())
        stages, cin = [], 32
        for t, c, n, s in MBV2_SETTING:
            eca_kernel = (1 if c < 96 else 3) if eca else None
            blocks = []
            for b in range(n):
                blocks.append(RLAInvertedResidual(cin, c, s if b == 0 else 1, t, k, eca_kernel))
                cin = c
            stages.append(nn.LayerList(blocks))
        self.stages = nn.LayerList(stages)
        self.recurrent_conv = nn.Conv2D(k, k, 3, padding=1, groups=k if depthwise_recurrent else 1, bias_attr=False)
        self._build_rla(k, [c for _, c, _, _ in MBV2_SETTING], [n for _, _, n, _ in MBV2_SETTING], F.relu6)
        self.conv2 = nn.Sequential(nn.Conv2D(cin + k, 1280, 1, bias_attr=False), nn.BatchNorm2D(1280), nn.ReLU6())
        self.class_num = class_num
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, class_num)) if class_num > 0 else None
        self._init_weights()
        self._set_feature_info([dict(name=f"stages.{i}", channels=MBV2_SETTING[i][1], reduction=r)
                                for i, r in zip(_MBV2_FEATURE_STAGES, (2, 4, 8, 16, 32))])

    def _init_weights(self):
        for m in self.sublayers():
            if isinstance(m, nn.Conv2D):
                _kaiming_normal_fan_out(m)
            elif isinstance(m, nn.Linear):
                m.weight.set_value(paddle.normal(0.0, 0.01, m.weight.shape))
                m.bias.set_value(paddle.zeros(m.bias.shape))

    def _recurrent(self, i):
        return self.recurrent_conv

    def stage_layers(self):
        groups, start = [], 0
        for end in _MBV2_FEATURE_STAGES:
            idx = range(start, end + 1)
            groups.append(([self.conv1] if start == 0 else []) + [self.stages[i] for i in idx] +
                          [self.stage_bns[i] for i in idx] + [self.conv_outs[i] for i in idx])
            start = end + 1
        groups[-1].append(self.recurrent_conv)
        return groups

    def _features_and_hidden(self, x):
        stage_x, stage_h, _, head = self._run_rla(self.conv1(x))
        pick = _MBV2_FEATURE_STAGES
        return [stage_x[i] for i in pick], [stage_h[i] for i in pick], self.conv2(head)

    def forward_head(self, x):
        # functional, as in the original: its profiler (and count_paper_flops, which counts layers as
        # it did) leaves this pool out, which is how the paper's 351.8M / 352.4M come about
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x if self.classifier is None else self.classifier(x)


# -- variants: rows of a table over the two bodies ------------------------------------------------------
# params / conv+linear MACs at 224: measured from the built models (tests/test_model_cards.py)
ResNetRow = namedtuple("ResNetRow", "layers groups width_per_group se eca_kernels original params macs")
MobileNetRow = namedtuple("MobileNetRow", "eca depthwise_recurrent original params macs")

_ECA_RESNET = (5, 5, 5, 7)
RLA_RESNET_SPECS = {
    "RLA_ResNet50": ResNetRow((3, 4, 6, 3), 1, 64, False, None, "rla_resnet50", 25870696, 4454648064),
    "RLA_ResNet101": ResNetRow((3, 4, 23, 3), 1, 64, False, None, "rla_resnet101", 45003176, 8334055680),
    "RLA_ResNet152": ResNetRow((3, 8, 36, 3), 1, 64, False, None, "rla_resnet152", 60770792, 12267251968),
    "RLA_ECANet50": ResNetRow((3, 4, 6, 3), 1, 64, False, _ECA_RESNET, "rla_resnet50_eca", 25870782, 4454735872),
    "RLA_ECANet101": ResNetRow((3, 4, 23, 3), 1, 64, False, _ECA_RESNET, "rla_resnet101_eca", 45003347, 8334230528),
    "RLA_ECANet152": ResNetRow((3, 8, 36, 3), 1, 64, False, _ECA_RESNET, "rla_resnet152_eca", 60771048, 12267503616),
    "RLA_ResNeXt50_32x4d": ResNetRow((3, 4, 6, 3), 32, 4, False, None, "rla_resnext50_32x4d", 25463400, 4656957696),
    "RLA_ResNeXt50_32x4d_SE": ResNetRow((3, 4, 6, 3), 32, 4, True, None, "rla_resnext50_32x4d_se", 27978344, 4659472640),
    "RLA_ResNeXt50_32x4d_ECA": ResNetRow((3, 4, 6, 3), 32, 4, False, _ECA_RESNET, "rla_resnext50_32x4d_eca", 25463486, 4657045504),
    "RLA_ResNeXt101_32x4d": ResNetRow((3, 4, 23, 3), 32, 4, False, None, "rla_resnext101_32x4d", 44891816, 8590956800),
    "RLA_ResNeXt101_32x4d_SE": ResNetRow((3, 4, 23, 3), 32, 4, True, None, "rla_resnext101_32x4d_se", 49634984, 8595699968),
    "RLA_ResNeXt101_32x4d_ECA": ResNetRow((3, 4, 23, 3), 32, 4, False, _ECA_RESNET, "rla_resnext101_32x4d_eca", 44891987, 8591131648),
}

RLA_MOBILENET_SPECS = {
    "RLA_MobileNetV2": MobileNetRow(False, True, "dsrla_mobilenetv2_k32", 3624168, 352505728),
    "RLA_ECA_MobileNetV2": MobileNetRow(True, True, "dsrla_mobilenetv2_k32_eca", 3624199, 352509408),
    "RLA_MobileNetV2_FullConv": MobileNetRow(False, False, "rla_mobilenetv2_k32", 3633096, 555492736),
    "RLA_ECA_MobileNetV2_FullConv": MobileNetRow(True, False, "rla_mobilenetv2_k32_eca", 3633127, 555496416),
}


def _rla_resnet(name):
    row = RLA_RESNET_SPECS[name]
    doc = (f"{name} (original: {row.original}): RLA over a bottleneck ResNet {list(row.layers)}, "
           f"{row.groups}x{row.width_per_group}" + (", SE" if row.se else "")
           + (f", ECA kernels {list(row.eca_kernels)}" if row.eca_kernels else ""))
    fixed = dict(layers=row.layers, se=row.se, eca_kernels=row.eca_kernels, groups=row.groups,
                 width_per_group=row.width_per_group)
    return variant(name, RLAResNet, fixed, doc, ModelCard("RLA-Net", row.params, row.macs))


def _rla_mobilenet(name):
    row = RLA_MOBILENET_SPECS[name]
    doc = (f"{name} (original: {row.original}): RLA over MobileNetV2 1.0, "
           f"{'depthwise' if row.depthwise_recurrent else 'full'} 3x3 recurrent conv" + (", ECA" if row.eca else ""))
    return variant(name, RLAMobileNetV2, dict(eca=row.eca, depthwise_recurrent=row.depthwise_recurrent), doc,
                   ModelCard("RLA-Net", row.params, row.macs))


RLA_ResNet50 = _rla_resnet("RLA_ResNet50")
RLA_ResNet101 = _rla_resnet("RLA_ResNet101")
RLA_ResNet152 = _rla_resnet("RLA_ResNet152")
RLA_ECANet50 = _rla_resnet("RLA_ECANet50")
RLA_ECANet101 = _rla_resnet("RLA_ECANet101")
RLA_ECANet152 = _rla_resnet("RLA_ECANet152")
RLA_ResNeXt50_32x4d = _rla_resnet("RLA_ResNeXt50_32x4d")
RLA_ResNeXt50_32x4d_SE = _rla_resnet("RLA_ResNeXt50_32x4d_SE")
RLA_ResNeXt50_32x4d_ECA = _rla_resnet("RLA_ResNeXt50_32x4d_ECA")
RLA_ResNeXt101_32x4d = _rla_resnet("RLA_ResNeXt101_32x4d")
RLA_ResNeXt101_32x4d_SE = _rla_resnet("RLA_ResNeXt101_32x4d_SE")
RLA_ResNeXt101_32x4d_ECA = _rla_resnet("RLA_ResNeXt101_32x4d_ECA")
RLA_MobileNetV2 = _rla_mobilenet("RLA_MobileNetV2")
RLA_ECA_MobileNetV2 = _rla_mobilenet("RLA_ECA_MobileNetV2")
RLA_MobileNetV2_FullConv = _rla_mobilenet("RLA_MobileNetV2_FullConv")
RLA_ECA_MobileNetV2_FullConv = _rla_mobilenet("RLA_ECA_MobileNetV2_FullConv")


# -- published weights: the authors' own, on Google Drive and Baidu pan only (a manual download)
_RLA_ACC = "joyfang1106/RLANet README.md (ImageNet table, 100 - published error, @4425663d)"


def _rlanet(file, drive, baidu, code, top1, top5):
    return Weights("original", "torch", file, pages=(drive, f"{baidu} (extract code {code})"), top1=top1, top5=top5,
                   published=_RLA_ACC, license="none published (joyfang1106/RLANet has no licence file)",
                   notes="the README names the file by its label; any name works when the path is given")


RLA_WEIGHTS = {
    "RLA_ResNet50": (_rlanet("resnet50_rla_2283.pth.tar", "https://drive.google.com/file/d/1cetP1SdOiwznLxlBUaHG8Q8c4RIwToWW/view?usp=sharing", "https://pan.baidu.com/s/1GrNxNariVpb9S5EUFW1eng", "5lf1", 77.17, 93.42),),
    "RLA_ECANet50": (_rlanet("ecanet50_rla_2215.pth.tar", "https://drive.google.com/file/d/173qoDPGe2q5l7CKVm54-_xJtg3_UFRR-/view?usp=sharing", "https://pan.baidu.com/s/1B5wVN4s_WVVq8nGiiOVncA", "xrfo", 77.85, 93.89),),
    "RLA_ResNet101": (_rlanet("resnet101_rla_2148.pth.tar", "https://drive.google.com/file/d/1V9Iv0KbN1O92ll8rcf45kLkD9EOA9VCE/view?usp=sharing", "https://pan.baidu.com/s/1sZQlAU4ksIjnOUg4iSSO-Q", "zrv5", 78.52, 94.2),),
    "RLA_ECANet101": (_rlanet("ecanet101_rla_2100.pth.tar", "https://drive.google.com/file/d/1QMR_yf0RYugpJosCSo0uNRBmfl2e7cGa/view?usp=sharing", "https://pan.baidu.com/s/1ILfQ8pK1WdnAxSWb5X88PQ", "vhpy", 79.0, 94.49),),
    "RLA_MobileNetV2": (_rlanet("dsrla_mobilenetv2_k32_2762.pth.tar", "https://drive.google.com/file/d/1yg9hsACBHZFT5R8s95igJTyaQ5iYKklV/view?usp=sharing", "https://pan.baidu.com/s/135Id3juTsj0IAo0jSKooxw", "g1pm", 72.38, 90.82),),
    "RLA_ECA_MobileNetV2": (_rlanet("dsrla_mobilenetv2_k32_eca_2707.pth.tar", "https://drive.google.com/file/d/1JdEkJg9_IOnJsHWKVPQ-4YHBVabiNJXD/view?usp=sharing", "https://pan.baidu.com/s/1YVN5Qze51HI9D6nNEb7iPA", "9orl", 72.93, 91.11),),
}
register_weights(RLA_WEIGHTS)
