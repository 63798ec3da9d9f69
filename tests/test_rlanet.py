"""RLA-Net: exactness against the original, the paper's table, features, conversion, log tools."""
import json
import os

import numpy as np
import paddle
import pytest

from alignment import check_model_against_fixture, load_fixture
from engine_utils import run_tool, tiny_config
from ppcls.arch import build_model
from ppcls.arch.convert import ConversionError, convert_checkpoint, convert_state_dict, get_rules
from ppcls.utils.errors import ConfigError

FAST = {"rla_resnet50", "rla_resnet50_eca", "dsrla_mobilenetv2_k32", "dsrla_mobilenetv2_k32_eca", "rla_mobilenetv2_k32"}
VARIANTS = [("rla_resnet50", "RLA_ResNet50"), ("rla_resnet50_eca", "RLA_ECANet50"), ("rla_resnet101", "RLA_ResNet101"),
            ("rla_resnet101_eca", "RLA_ECANet101"), ("rla_resnet152", "RLA_ResNet152"),
            ("dsrla_mobilenetv2_k32", "RLA_MobileNetV2"), ("dsrla_mobilenetv2_k32_eca", "RLA_ECA_MobileNetV2"),
            ("rla_mobilenetv2_k32", "RLA_MobileNetV2_FullConv")]


@pytest.mark.parametrize("fixture,name", [pytest.param(f, n, marks=[] if f in FAST else [pytest.mark.slow])
                                          for f, n in VARIANTS])
def test_matches_original(fixture, name):
    errs, tol, params, macs, meta = check_model_against_fixture(fixture, name)
    assert max(errs) <= tol, errs
    assert params == meta["params"]
    assert macs == meta["conv_linear_macs_per_image"]


PAPER = [("RLA_ResNet50", "24.67M", "4.17G"), ("RLA_ECANet50", "24.67M", "4.18G"), ("RLA_ResNet101", "42.92M", "7.79G"),
         ("RLA_ECANet101", "42.92M", "7.80G"), ("RLA_MobileNetV2", "3.46M", "351.8M"),
         ("RLA_ECA_MobileNetV2", "3.46M", "352.4M")]


@pytest.mark.parametrize("name,params,flops", PAPER)
def test_paper_table_rows(name, params, flops):
    r = run_tool("paras_flops.py", "-a", name, "--json")
    assert r.returncode == 0, r.stderr[-1000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["paper_params"] == params and info["paper_flops_str"] == flops
    assert {"name", "input_size", "params", "macs", "paper_flops"} <= info.keys()


def test_paras_flops_other_families_and_sizes():
    r = run_tool("paras_flops.py", "-a", "DLA34", "--json", "--input-size", "256")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["params"] == 15742104 and info["input_size"] == 256
    assert run_tool("paras_flops.py", "-a", "RLA_ResNet5").returncode == 2


def test_resnext_se_eca_counts():
    # the fact sheet's measured counts of the original constructors
    from ppcls.utils.model_stats import count_params
    assert count_params(build_model({"name": "RLA_ResNeXt50_32x4d"})) == 25463400
    assert count_params(build_model({"name": "RLA_ResNeXt50_32x4d_SE"})) == 27978344
    assert count_params(build_model({"name": "RLA_ResNeXt50_32x4d_ECA"})) == 25463486


def test_rla_channel_configurable():
    from ppcls.utils.model_stats import count_params
    assert count_params(build_model({"name": "RLA_MobileNetV2", "rla_channel": 12})) == 3549608
    assert count_params(build_model({"name": "RLA_MobileNetV2_FullConv", "rla_channel": 6})) == 3527510
    m = build_model({"name": "RLA_ResNet50", "rla_channel": 16, "class_num": 3})
    assert m(paddle.randn([2, 3, 64, 64])).shape == [2, 3]


def test_detection_features_hidden_frozen_norm_eval():
    m = build_model({"name": "RLA_ResNet50", "return_stages": [1, 2, 3, 4], "return_hidden": True,
                     "frozen_stages": 1, "norm_eval": True})
    assert m.out_channels == [256, 512, 1024, 2048] and m.out_strides == [4, 8, 16, 32]
    m.train()
    outs = m(paddle.randn([2, 3, 128, 96]))
    assert [list(o.shape) for o in outs[:4]] == [[2, 256, 32, 24], [2, 512, 16, 12], [2, 1024, 8, 6], [2, 2048, 4, 3]]
    assert [list(o.shape) for o in outs[4:]] == [[2, 32, 32, 24], [2, 32, 16, 12], [2, 32, 8, 6], [2, 32, 4, 3]]
    assert m.conv1.weight.stop_gradient and m.stages[0][0].conv1.weight.stop_gradient
    assert not m.stages[1][0].conv1.weight.stop_gradient
    assert not m.bn1.training and not m.stage_bns[3][0].training
    mb = build_model({"name": "RLA_MobileNetV2", "return_stages": [0, 1, 2, 3, 4]})
    mb.eval()
    assert [o.shape[1] for o in mb(paddle.randn([1, 3, 64, 64]))] == [16, 24, 32, 96, 320]
    assert mb.out_strides == [2, 4, 8, 16, 32]


def test_input_size_rule_is_a_clear_error():
    m = build_model({"name": "RLA_ResNet50", "class_num": 2})
    with pytest.raises(ConfigError, match="multiples of 32"):
        m(paddle.randn([1, 3, 100, 100]))


def test_shared_recurrent_conv_converts_from_five_keys(tmp_path):
    meta, weights, x, expected = load_fixture("dsrla_mobilenetv2_k32")
    w = dict(weights)
    for i in range(1, 5):  # a real checkpoint stores the shared conv under five keys
        w[f"recurrent_dsconvs.{i}.weight"] = w["recurrent_dsconvs.0.weight"]
    np.savez(tmp_path / "ds.npz", **w)
    dst, n, _ = convert_checkpoint("RLA_MobileNetV2", str(tmp_path / "ds.npz"), str(tmp_path / "ds"))
    m = build_model({"name": "RLA_MobileNetV2", "pretrained": str(tmp_path / "ds")})
    m.eval()
    out = m(paddle.to_tensor(x)).numpy()
    assert np.linalg.norm(out - expected[0]) / np.linalg.norm(expected[0]) < 1e-3
    w["recurrent_dsconvs.3.weight"] = w["recurrent_dsconvs.0.weight"] + 1
    with pytest.raises(ConversionError, match="conflicting"):
        convert_state_dict(build_model({"name": "RLA_MobileNetV2"}), w, get_rules("RLA_MobileNetV2"))


def test_training_checkpoint_pth(tmp_path):
    torch = pytest.importorskip("torch")
    meta, weights, x, expected = load_fixture("rla_resnet50_eca")
    sd = {"module." + k: torch.from_numpy(v) for k, v in weights.items()}
    torch.save({"epoch": 100, "state_dict": sd, "best_acc1": torch.tensor(77.85)}, tmp_path / "ecanet50_rla.pth.tar")
    dst, n, _ = convert_checkpoint("RLA_ECANet50", str(tmp_path / "ecanet50_rla.pth.tar"), str(tmp_path / "e50"))
    m = build_model({"name": "RLA_ECANet50", "pretrained": str(tmp_path / "e50")})
    m.eval()
    out = m(paddle.to_tensor(x)).numpy()
    assert np.linalg.norm(out - expected[0]) / np.linalg.norm(expected[0]) < 1e-3


def test_log_tools_on_engine_logs(tmp_path):
    path, _ = tiny_config(tmp_path, epochs=3)
    r = run_tool("train.py", "-c", path)
    assert r.returncode == 0, r.stderr[-1000:]
    out = os.path.join(str(tmp_path), "output", "ResNet18")
    from ppcls.utils.log_tools import best_epochs, parse_log
    parsed = parse_log(os.path.join(out, "train.log"))
    assert sorted(parsed["eval"]) == [1, 2, 3] and sorted(parsed["train"]) == [1, 2, 3]
    r = run_tool("best.py", "--log-dir", out)
    assert r.returncode == 0
    best = best_epochs(parsed)
    assert f"best top1: {best['top1'][0]:.5f} at epoch {best['top1'][1]}" in r.stdout
    r = run_tool("eval_visual.py", "--log-dir", out, "--out-dir", str(tmp_path / "plots"))
    assert r.returncode == 0, r.stderr
    for name in ("acc1_plot.png", "loss_plot.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_best_on_multi_worker_logs(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    for rank in range(2):
        (log / f"workerlog.{rank}").write_text(
            "[2026/01/01 00:00:00] ppcls INFO: [Eval][Epoch 1][Avg]CELoss: 2.00000, loss: 2.00000, top1: 0.40000, top5: 0.80000 (10 samples)\n"
            "[2026/01/01 00:00:00] ppcls INFO: [Eval][Epoch 2][Avg]CELoss: 1.00000, loss: 1.00000, top1: 0.60000, top5: 0.80000 (10 samples)\n"
            "[2026/01/01 00:00:00] ppcls INFO: [Eval][Epoch 2][Avg]EMA CELoss: 1.00000, loss: 1.00000, top1: 0.90000, top5: 0.90000 (10 samples)\n")
    r = run_tool("best.py", "--log-dir", str(log))
    assert "best top1: 0.60000 at epoch 2" in r.stdout and "best top5: 0.80000 at epoch 1" in r.stdout
    assert run_tool("best.py", "--log-dir", str(tmp_path / "nothing")).returncode == 2
