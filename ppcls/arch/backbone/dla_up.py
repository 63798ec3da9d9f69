"""DLA-Up (Yu et al. 2018, ucbdrive/dla ``dla_up.py``): the DLA original's segmentation network.

A DLA backbone gives its levels (strides 1 .. 32); from ``down_ratio`` on, iterative deep aggregation
(``DLAUp``: one ``IDAUp`` per level above the first, deepest first) merges them back up to stride
``down_ratio``; a 1x1 convolution gives the class scores there, and a fixed bilinear depthwise
transposed convolution brings them to the input size. ``forward`` returns what the original returns,
the pair ``(log_probs, logits)``: log-softmax over classes at the input size, and the class scores at
stride ``down_ratio`` before the up-sampling. Input sides must be multiples of 32.

Parameter names are the original's, so its checkpoints convert key for key (``ppcls.arch.convert
.dla_up``). Two kinds of original keys have no counterpart, both without effect on the output: the base
DLA's ImageNet classifier (``base.fc``), which ``DLASeg`` never runs, and the ``project`` layers of the
base's non-leaf trees (see ``backbone/dla.py``). The up-sampling kernels inside ``DLAUp`` start
bilinear and are trained, as in the original; the final one is bilinear and frozen.
"""
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...utils.errors import ConfigError
from ..registry import ModelCard, variant
from .dla import DLA, DLA_SPECS

__all__ = ["DLASeg", "DLA_UP_VARIANTS", "DLAUp_DLA34", "DLAUp_DLA60", "DLAUp_DLA102", "DLAUp_DLA169",
           "bilinear_kernel"]

DOWN_RATIOS = (2, 4, 8, 16)
# registered name -> base DLA (the original's dla34up .. dla169up); params / conv+linear MACs at 224
# with the default 19 classes, down_ratio 2: measured from the built models (tests/test_dla_up.py)
DLA_UP_VARIANTS = {
    "DLAUp_DLA34": ("DLA34", 17540131, 5457141760),
    "DLAUp_DLA60": ("DLA60", 29980451, 10938970112),
    "DLAUp_DLA102": ("DLA102", 41212707, 13867642880),
    "DLAUp_DLA169": ("DLA169", 61333539, 18260652032),
}


def bilinear_kernel(channels, size):
    """The original's ``fill_up_weights``: one separable bilinear ``size`` x ``size`` kernel per channel,
    in the depthwise transposed-convolution layout ``[channels, 1, size, size]``."""
    f = math.ceil(size / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = 1 - np.abs(np.arange(size) / f - c)
    return np.broadcast_to(np.outer(ramp, ramp), (channels, 1, size, size)).astype("float32")


def _bilinear_up(channels, factor, trainable):
    """x``factor`` depthwise transposed convolution, initialised bilinear (output exactly factor x input)."""
    up = nn.Conv2DTranspose(channels, channels, factor * 2, stride=factor, padding=factor // 2,
                            groups=channels, bias_attr=False)
    up.weight.set_value(paddle.to_tensor(bilinear_kernel(channels, factor * 2)))
    up.weight.stop_gradient = not trainable
    return up


def _conv_bn_relu(cin, cout, kernel):
    return nn.Sequential(nn.Conv2D(cin, cout, kernel, padding=kernel // 2, bias_attr=False),
                         nn.BatchNorm2D(cout), nn.ReLU())


def _he_init(conv):
    # the original's init: N(0, 2 / (k * k * out_channels)); BatchNorm starts at weight 1, bias 0
    k = conv.weight.shape
    conv.weight.set_value(paddle.normal(0.0, math.sqrt(2.0 / (k[0] * k[2] * k[3])), k))


class IDAUp(nn.Layer):
    """Iterative deep aggregation of ``len(channels)`` inputs into ``out_dim`` channels at the first
    input's resolution: each input is projected (1x1 conv-BN-ReLU unless already ``out_dim`` wide) and
    up-sampled by its factor, then ``node_i`` merges the running aggregate with input i. Returns the
    last aggregate and the list of all of them (one per input after the first)."""

    def __init__(self, node_kernel, out_dim, channels, up_factors):
        super().__init__()
        self.n_inputs = len(channels)
        for i, (c, f) in enumerate(zip(channels, up_factors)):
            setattr(self, f"proj_{i}", nn.Identity() if c == out_dim else _conv_bn_relu(c, out_dim, 1))
            setattr(self, f"up_{i}", nn.Identity() if f == 1 else _bilinear_up(out_dim, int(f), trainable=True))
        for i in range(1, len(channels)):
            setattr(self, f"node_{i}", _conv_bn_relu(out_dim * 2, out_dim, node_kernel))
        for m in self.sublayers():
            if type(m) is nn.Conv2D:  # the transposed convolutions keep their bilinear start
                _he_init(m)

    def forward(self, layers):
        ups = [getattr(self, f"up_{i}")(getattr(self, f"proj_{i}")(x)) for i, x in enumerate(layers)]
        x = ups[0]
        aggregates = []
        for i in range(1, len(ups)):
            x = getattr(self, f"node_{i}")(paddle.concat([x, ups[i]], axis=1))
            aggregates.append(x)
        return x, aggregates


class DLAUp(nn.Layer):
    """Deep layer aggregation upwards: ``ida_0`` merges the two deepest levels, each next ``ida_i`` one
    level shallower with all the aggregates so far, until the result sits at the first level's stride
    with its channels. ``scales`` are the levels' strides relative to the first."""

    def __init__(self, channels, scales):
        super().__init__()
        channels = list(channels)
        in_channels = list(channels)
        scales = list(scales)
        self.n_levels = len(channels)
        for i in range(len(channels) - 1):
            j = -i - 2
            setattr(self, f"ida_{i}", IDAUp(3, channels[j], in_channels[j:], [s // scales[j] for s in scales[j:]]))
            # what ida_i returns replaces the levels above j: now at level j's stride and width
            scales[j + 1:] = [scales[j]] * len(scales[j + 1:])
            in_channels[j + 1:] = [channels[j]] * len(in_channels[j + 1:])

    def forward(self, layers):
        layers = list(layers)
        for i in range(len(layers) - 1):
            x, aggregates = getattr(self, f"ida_{i}")(layers[-i - 2:])
            layers[-i - 1:] = aggregates
        return x


class DLASeg(nn.Layer):
    """DLA-Up on the DLA ``base`` (a name of ``DLA_SPECS``) for ``class_num`` classes, aggregating up to
    stride ``down_ratio`` (2, 4, 8 or 16). ``forward(x)`` returns ``(log_probs, logits)``:
    ``[N, class_num, H, W]`` log-softmax and ``[N, class_num, H / down_ratio, W / down_ratio]`` scores."""

    def __init__(self, base="DLA34", class_num=19, down_ratio=2):
        super().__init__()
        if base not in DLA_SPECS:
            raise ConfigError(f"base={base!r}: not a DLA; choose one of {', '.join(DLA_SPECS)}")
        if down_ratio not in DOWN_RATIOS:
            raise ConfigError(f"down_ratio={down_ratio!r}: DLA-Up aggregates to stride 2, 4, 8 or 16")
        if not isinstance(class_num, int) or class_num < 1:
            raise ConfigError(f"class_num={class_num!r}: DLA-Up needs at least one class")
        row = DLA_SPECS[base]
        self.base_name = base
        self.class_num = class_num
        self.down_ratio = down_ratio
        self.first_level = int(math.log2(down_ratio))
        self.base = DLA(row.levels, row.channels, row.block, row.residual_root, row.cardinality, class_num=0,
                        return_stages=list(range(self.first_level, 6)))
        channels = list(row.channels[self.first_level:])
        self.dla_up = DLAUp(channels, [2 ** i for i in range(len(channels))])
        self.fc = nn.Sequential(nn.Conv2D(channels[0], class_num, 1))
        _he_init(self.fc[0])
        # the bias keeps PyTorch's default init, as in the original
        bound = 1.0 / math.sqrt(channels[0])
        self.fc[0].bias.set_value(paddle.uniform([class_num], min=-bound, max=bound))
        self.up = _bilinear_up(class_num, down_ratio, trainable=False)

    def forward(self, x):
        # checked in dygraph only (an export traces sides it does not know); odd level sizes would break the
        # concatenations
        h, w = (x.shape[2], x.shape[3]) if paddle.in_dynamic_mode() else (0, 0)
        if (h > 0 and h % 32) or (w > 0 and w % 32):
            raise ValueError(f"DLA-Up ({self.base_name}): input sides must be multiples of 32, got {h}x{w}")
        x = self.dla_up(self.base(x))
        logits = self.fc(x)
        return F.log_softmax(self.up(logits), axis=1), logits


def _dla_up(name):
    base, params, macs = DLA_UP_VARIANTS[name]
    doc = (f"{name}: DLA-Up on {base} (the original's {base.lower()}up): returns (log_probs at the input "
           f"size, logits at stride down_ratio)")
    return variant(name, DLASeg, dict(base=base), doc, ModelCard("DLA", params, macs))


DLAUp_DLA34 = _dla_up("DLAUp_DLA34")
DLAUp_DLA60 = _dla_up("DLAUp_DLA60")
DLAUp_DLA102 = _dla_up("DLAUp_DLA102")
DLAUp_DLA169 = _dla_up("DLAUp_DLA169")
