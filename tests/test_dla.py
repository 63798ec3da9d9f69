"""DLA: exactness against the original (fixtures), features, sizes, conversion."""
import os

import numpy as np
import paddle
import pytest

from alignment import check_model_against_fixture, load_fixture
from ppcls.arch import build_model
from ppcls.arch.convert import ConversionError, convert_checkpoint, convert_state_dict, get_rules
from ppcls.utils.errors import ConfigError

VARIANTS = [("dla34", "DLA34"), ("dla46_c", "DLA46_c"), ("dla46x_c", "DLA46x_c"), ("dla60x_c", "DLA60x_c"),
            ("dla60", "DLA60"), ("dla60x", "DLA60x"), ("dla102", "DLA102"), ("dla102x", "DLA102x"),
            ("dla102x2", "DLA102x2"), ("dla169", "DLA169")]
SMALL = {"dla34", "dla46_c", "dla46x_c", "dla60x_c"}


@pytest.mark.parametrize("fixture,name", [pytest.param(f, n, marks=[] if f in SMALL else [pytest.mark.slow])
                                          for f, n in VARIANTS])
def test_matches_original(fixture, name):
    errs, tol, params, macs, meta = check_model_against_fixture(fixture, name)
    assert max(errs) <= tol, errs
    assert params == meta["params"]
    assert macs == meta["conv_linear_macs_per_image"]


@pytest.mark.parametrize("size", [(256, 256), (288, 288), (320, 320), (200, 296), (225, 231), (64, 64)])
def test_any_input_size_with_global_pooling(size):
    model = build_model({"name": "DLA46_c", "class_num": 7})
    model.eval()
    with paddle.no_grad():
        out = model(paddle.randn([1, 3, *size]))
    assert out.shape == [1, 7]


def test_return_stages_shapes_and_strides():
    model = build_model({"name": "DLA34", "class_num": 10, "return_stages": [2, 3, 4, 5]})
    assert model.out_channels == [64, 128, 256, 512] and model.out_strides == [4, 8, 16, 32]
    model.eval()
    feats = model(paddle.randn([2, 3, 128, 96]))
    assert [list(f.shape) for f in feats] == [[2, 64, 32, 24], [2, 128, 16, 12], [2, 256, 8, 6], [2, 512, 4, 3]]
    all_info = build_model({"name": "DLA60", "class_num": 0}).feature_info
    assert [d["reduction"] for d in all_info] == [1, 2, 4, 8, 16, 32]
    assert [d["channels"] for d in all_info] == [16, 32, 128, 256, 512, 1024]
    with pytest.raises(ConfigError, match="stage 6 does not exist"):
        build_model({"name": "DLA34", "return_stages": [6]})


def test_class_num_and_headless():
    assert build_model({"name": "DLA34", "class_num": 3})(paddle.randn([1, 3, 64, 64])).shape == [1, 3]
    assert build_model({"name": "DLA34", "class_num": 0})(paddle.randn([1, 3, 64, 64])).shape == [1, 512]


def test_frozen_stages_and_norm_eval():
    model = build_model({"name": "DLA34", "frozen_stages": 2, "norm_eval": True})
    assert all(p.stop_gradient for p in model.level2.parameters())
    assert not model.level3.tree1.root.conv.weight.stop_gradient and not model.level3.tree1.root.bn.weight.stop_gradient
    model.train()
    assert not model.level0[1].training and not model.level5.root.bn.training and model.level5.root.conv.training


def _write_npz(weights, path):
    np.savez(path, **weights)
    return path


def test_convert_tool_npz_roundtrip(tmp_path):
    meta, weights, x, expected = load_fixture("dla46_c")
    src = _write_npz(weights, str(tmp_path / "dla46_c.npz"))
    dst, n, dropped = convert_checkpoint("DLA46_c", src, str(tmp_path / "DLA46_c_pretrained"))
    assert sorted(dropped) == sorted(meta["unused_keys"])
    model = build_model({"name": "DLA46_c", "pretrained": dst[:-len(".pdparams")]})
    model.eval()
    out = model(paddle.to_tensor(x)).numpy()
    assert np.linalg.norm(out - expected[0]) / np.linalg.norm(expected[0]) < 1e-3


def test_convert_tool_cli(tmp_path):
    from engine_utils import run_tool
    meta, weights, _, _ = load_fixture("dla46x_c")
    src = _write_npz(weights, str(tmp_path / "w.npz"))
    r = run_tool("convert_weights.py", "-a", "DLA46x_c", "--src", src, "--dst", str(tmp_path / "out.pdparams"))
    assert r.returncode == 0 and "dropped 5 unused keys" in r.stdout, r.stderr
    r = run_tool("convert_weights.py", "-a", "DLA46x", "--src", src, "--dst", str(tmp_path / "o.pdparams"))
    assert r.returncode == 2 and "did you mean 'DLA46x_c'" in r.stderr


def test_converter_refuses_with_full_list():
    _, weights, _, _ = load_fixture("dla34")
    model = build_model({"name": "DLA34"})
    rules = get_rules("DLA34")
    broken = dict(weights)
    del broken["level2.root.conv.weight"]
    broken["level9.extra.weight"] = np.zeros(3, np.float32)
    broken["fc.weight"] = np.zeros((10, 512, 1, 1), np.float32)
    with pytest.raises(ConversionError) as e:
        convert_state_dict(model, broken, rules)
    msg = str(e.value)
    assert "missing 1: level2.root.conv.weight" in msg and "unexpected 1: level9.extra.weight" in msg
    assert "mis-shaped 1: fc.weight [10, 512, 1, 1] -> fc.weight [1000, 512, 1, 1]" in msg


def test_training_checkpoint_with_module_prefix_via_torch(tmp_path):
    torch = pytest.importorskip("torch")
    meta, weights, x, expected = load_fixture("dla46_c")
    state = {"module." + k: torch.from_numpy(v) for k, v in weights.items()}
    for k in list(state):
        if k.endswith("running_var"):
            state[k[:-len("running_var")] + "num_batches_tracked"] = torch.tensor(7)
    torch.save({"epoch": 3, "arch": "dla46_c", "state_dict": state, "best_prec1": 60.0}, tmp_path / "ckpt.pth.tar")
    dst, n, dropped = convert_checkpoint("DLA46_c", str(tmp_path / "ckpt.pth.tar"), str(tmp_path / "c.pdparams"))
    model = build_model({"name": "DLA46_c", "pretrained": str(tmp_path / "c")})
    model.eval()
    out = model(paddle.to_tensor(x)).numpy()
    assert np.linalg.norm(out - expected[0]) / np.linalg.norm(expected[0]) < 1e-3
