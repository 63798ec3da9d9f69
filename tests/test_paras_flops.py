"""tools/paras_flops.py and ppcls.utils.model_stats: exact parameter / MAC counts, and the RLA-Net
paper's table reproduced by its counting rule (count_paper_flops) and units (paper_units)."""
import json
import os
import subprocess
import sys

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

from alignment import FIXTURES
from engine_utils import ROOT, run_tool
from ppcls.arch import list_models
from ppcls.arch.info import model_summary
from ppcls.utils.model_stats import count_paper_flops, paper_units

# the paper's table: (model, Param., FLOPs) exactly as printed
PAPER = [("RLA_ResNet50", "24.67M", "4.17G"), ("RLA_ECANet50", "24.67M", "4.18G"),
         ("RLA_ResNet101", "42.92M", "7.79G"), ("RLA_ECANet101", "42.92M", "7.80G"),
         ("RLA_MobileNetV2", "3.46M", "351.8M"), ("RLA_ECA_MobileNetV2", "3.46M", "352.4M")]

# measured on the original constructors at 224 (fact sheet): params, conv+linear MACs, and the
# paper-rule FLOPs (thop 0.1.1's total minus 2 x the BatchNorm input elements), all exact
ORIGINAL = [
    ("RLA_ResNet50", {}, 25870696, 4454648064, 4501022176 - 2 * 11559296),
    ("RLA_ECANet50", {}, 25870782, 4454735872, 4506644448 - 2 * 11559296),
    ("RLA_ResNet101", {}, 45003176, 8334055680, 8401328096 - 2 * 16783872),
    ("RLA_ECANet101", {}, 45003347, 8334230528, 8410466784 - 2 * 16783872),
    ("RLA_ResNet152", {}, 60770792, 12267251968, 12360540640 - 2 * 23287936),
    ("RLA_ECANet152", {}, 60771048, 12267503616, 12373986272 - 2 * 23287936),
    ("RLA_ResNeXt50_32x4d", {}, 25463400, 4656957696, 4716477920 - 2 * 14845824),
    ("RLA_ResNeXt50_32x4d_SE", {}, 27978344, 4659472640, 4724527328 - 2 * 14845824),
    ("RLA_ResNeXt50_32x4d_ECA", {}, 25463486, 4657045504, 4722100192 - 2 * 14845824),
    ("RLA_ResNeXt101_32x4d", {}, 44891816, 8590956800, 8678199264 - 2 * 21776384),
    ("RLA_ResNeXt101_32x4d_SE", {}, 49634984, 8595699968, 8691906272 - 2 * 21776384),
    ("RLA_ResNeXt101_32x4d_ECA", {}, 44891987, 8591131648, 8687337952 - 2 * 21776384),
    ("RLA_MobileNetV2", {}, 3624168, 352505728, 385178144 - 2 * 8134784),
    ("RLA_ECA_MobileNetV2", {}, 3624199, 352509408, 385755648 - 2 * 8134784),
    ("RLA_MobileNetV2_FullConv", {}, 3633096, 555492736, 588165152 - 2 * 8134784),
    ("RLA_ECA_MobileNetV2_FullConv", {}, 3633127, 555496416, 588742656 - 2 * 8134784),
    ("RLA_MobileNetV2", {"rla_channel": 12}, 3549608, 320173568, 349121004 - 2 * 7224364),
    ("RLA_ECA_MobileNetV2_FullConv", {"rla_channel": 6}, 3527541, 316616320, 345020086 - 2 * 6951238),
]
PAPER_ROWS = {p[0] for p in PAPER}
FIXTURE_OF = {"RLA_ResNet50": "rla_resnet50", "RLA_ECANet50": "rla_resnet50_eca", "RLA_ResNet101": "rla_resnet101",
              "RLA_ECANet101": "rla_resnet101_eca", "RLA_ResNet152": "rla_resnet152",
              "RLA_MobileNetV2": "dsrla_mobilenetv2_k32", "RLA_ECA_MobileNetV2": "dsrla_mobilenetv2_k32_eca",
              "RLA_MobileNetV2_FullConv": "rla_mobilenetv2_k32"}


@pytest.mark.parametrize("name,kwargs,params,macs,flops", [
    pytest.param(*row, id=row[0] + "".join(f"_{k}{v}" for k, v in row[1].items()),
                 marks=[] if row[0] in PAPER_ROWS and not row[1] else [pytest.mark.slow]) for row in ORIGINAL])
def test_counts_equal_the_original(name, kwargs, params, macs, flops):
    info = model_summary(name, 224, **kwargs)
    assert (info["params"], info["macs"], info["paper_flops"]) == (params, macs, flops)
    if name in FIXTURE_OF and not kwargs:  # and the alignment fixture's own counts
        with open(os.path.join(FIXTURES, FIXTURE_OF[name] + ".json")) as f:
            meta = json.load(f)
        assert (info["params"], info["macs"]) == (meta["params"], meta["conv_linear_macs_per_image"])
    row = [p for p in PAPER if p[0] == name]
    if row and not kwargs:
        assert (info["paper_params"], info["paper_flops_str"]) == row[0][1:]


def test_tool_prints_the_paper_rows():
    r = run_tool("paras_flops.py", "-a", "RLA_ECANet50", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["name"] == "RLA_ECANet50" and info["input_size"] == 224
    assert (info["params"], info["macs"], info["paper_flops"]) == (25870782, 4454735872, 4483525856)
    assert (info["paper_params"], info["paper_flops_str"]) == ("24.67M", "4.18G")
    r = run_tool("paras_flops.py", "-a", "RLA_MobileNetV2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "3,624,168" in r.stdout and "352,505,728" in r.stdout and "Param. 3.46M, FLOPs 351.8M" in r.stdout


def test_tool_without_torch_and_paddle_flops():
    # torch made unimportable and paddle.flops made to fail, then the tool's own main()
    code = ("import sys, runpy, paddle\n"
            "sys.modules['torch'] = None\n"
            "def _no(*a, **k): raise AssertionError('paddle.flops used')\n"
            "paddle.flops = _no\n"
            f"sys.argv = ['paras_flops.py', '-a', 'RLA_ECA_MobileNetV2', '--json', '-o', 'class_num=10']\n"
            f"runpy.run_path({os.path.join(ROOT, 'tools', 'paras_flops.py')!r}, run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["params"] == 3624199 - 1281 * 990 and info["paper_flops_str"] == "351.2M"


def test_tool_options_and_errors():
    r = run_tool("paras_flops.py", "--list")
    assert r.returncode == 0 and r.stdout.split() == list_models()
    r = run_tool("paras_flops.py", "-a", "RLA_ResNet5")
    assert r.returncode == 2 and "did you mean" in r.stderr
    r = run_tool("paras_flops.py", "-a", "RLA_MobileNetV2", "-o", "rla_chanel=12")
    assert r.returncode == 2 and "rla_channel" in r.stderr
    r = run_tool("paras_flops.py", "-a", "DLA34", "--json", "--input-size", "256")
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["params"] == 15742104 and info["input_size"] == 256


@pytest.mark.slow
def test_every_registered_model():
    for name in list_models():
        info = model_summary(name, 64)
        assert info["params"] > 0 and info["macs"] > 0 and info["paper_flops"] > info["macs"] // 2, name
        json.dumps(info)


# -- the counting rule itself, on layers whose counts are worked out by hand -------------------------
class _Toy(nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 8, 3, padding=1)                         # bias: 8*8*8 * (3*9 + 1)
        self.dw = nn.Conv2D(8, 8, 3, padding=1, groups=8, bias_attr=False)  # 8*8*8 * 9
        self.bn = nn.BatchNorm2D(8)                                       # 2 * 8*8*8
        self.pool = nn.AvgPool2D(2, 2)                                    # 8*4*4 (counted twice: shared)
        self.gap = nn.AdaptiveAvgPool2D(1)                                # 8 * (2*2 + 1)
        self.fc = nn.Linear(8, 5)                                         # 8 * 5, bias not counted
        self.eca = nn.Conv1D(1, 1, 3, padding=1, bias_attr=False)         # 8 * 3

    def forward(self, x):
        x = F.relu(self.bn(self.dw(self.conv(x))))
        x = F.max_pool2d(self.pool(self.pool(x) * 0 + self.pool(x)), 1)  # 4x4 then 2x2; max pool free
        x = self.gap(x) + F.adaptive_avg_pool2d(x, 1)                       # the functional pool is free
        e = self.eca(x.flatten(1).unsqueeze(1))
        return self.fc(x.flatten(1) + e.squeeze(1))


def test_paper_rule_by_hand():
    m = _Toy()
    expected = (512 * 28 + 512 * 9 + 2 * 512 + (128 + 128 + 32) + 8 * 5 + 40 + 24)
    assert count_paper_flops(m, (1, 3, 8, 8)) == expected
    assert m.training  # the count leaves the mode as it was


def test_paper_units():
    assert paper_units(25870696, 4477903584) == ("24.67M", "4.17G")
    assert paper_units(3624168, 368908576) == ("3.46M", "351.8M")
    assert paper_units(1, 2 ** 30 - 1) == ("0.00M", "1024.0M") and paper_units(1, 2 ** 30)[1] == "1.00G"
