"""ReXNet and ReXUNet: exactness against the official implementation and the fork, features, export."""
import numpy as np
import paddle
import pytest

from alignment import check_model_against_fixture, load_fixture
from ppcls.arch import build_model
from ppcls.arch.backbone.rexnet import rexnet_channels
from ppcls.arch.convert import convert_checkpoint
from ppcls.utils.errors import ConfigError

VARIANTS = [("rexnet_1_0", "ReXNet_1_0"), ("rexnet_1_3", "ReXNet_1_3"), ("rexnet_1_5", "ReXNet_1_5"),
            ("rexnet_2_0", "ReXNet_2_0"), ("rexnet_3_0", "ReXNet_3_0"), ("rexunet", "ReXUNet")]


@pytest.mark.parametrize("fixture,name", [pytest.param(f, n, marks=[pytest.mark.slow] if f in ("rexnet_2_0", "rexnet_3_0") else [])
                                          for f, n in VARIANTS])
def test_matches_original(fixture, name):
    errs, tol, params, macs, meta = check_model_against_fixture(fixture, name)
    assert len(errs) == len(meta["outputs"]) and max(errs) <= tol, errs
    assert params == meta["params"]
    assert macs == meta["conv_linear_macs_per_image"]


def test_channel_rule_rounds_half_to_even():
    stem, blocks, pen = rexnet_channels(1.0)
    assert stem == 32 and pen == 1280
    assert [b[1] for b in blocks] == [16, 27, 38, 50, 61, 72, 84, 95, 106, 117, 128, 140, 151, 162, 174, 185]
    assert [b[1] for b in rexnet_channels(2.0)[1]][:4] == [32, 54, 77, 100]
    assert rexnet_channels(1.3)[2] == 1664


def test_any_width_through_one_constructor():
    from ppcls.arch.backbone.rexnet import ReXNet
    m = ReXNet(width_mult=0.9, class_num=5)
    assert m(paddle.randn([2, 3, 64, 64])).shape == [2, 5]


def test_return_stages_and_headless():
    m = build_model({"name": "ReXNet_1_0", "class_num": 10, "return_stages": [0, 1, 2, 3, 4]})
    m.eval()
    feats = m(paddle.randn([1, 3, 96, 64]))
    assert [f.shape[1] for f in feats] == m.out_channels == [16, 38, 61, 128, 1280]
    assert m.out_strides == [2, 4, 8, 16, 32]
    assert [tuple(f.shape[2:]) for f in feats] == [(96 // s, 64 // s) for s in m.out_strides]
    assert build_model({"name": "ReXNet_1_3", "class_num": 0})(paddle.randn([2, 3, 64, 64])).shape == [2, 1664]
    frozen = build_model({"name": "ReXNet_1_0", "frozen_stages": 1})
    assert frozen.features[4].out[0].weight.stop_gradient and not frozen.features[6].out[0].weight.stop_gradient


def test_rexunet_sizes():
    m = build_model({"name": "ReXUNet"})
    m.eval()
    outs = m(paddle.randn([1, 3, 64, 96]))
    assert [tuple(o.shape[2:]) for o in outs] == [(64 // 2 ** i, 96 // 2 ** i) for i in range(6)]
    assert all(float(o.min()) >= 0 and float(o.max()) <= 1 for o in outs)
    with pytest.raises(ConfigError, match="multiples of 32"):
        m(paddle.randn([1, 3, 100, 100]))


def test_rexunet_encoder_from_classifier_checkpoint(tmp_path):
    cls = build_model({"name": "ReXNet_1_0", "class_num": 1000})
    paddle.save(cls.state_dict(), str(tmp_path / "rex.pdparams"))
    unet = build_model({"name": "ReXUNet", "encoder_pretrained": str(tmp_path / "rex")})
    assert np.array_equal(unet.conv4["12"].out[0].weight.numpy(), cls.features[12].out[0].weight.numpy())
    assert np.array_equal(unet.conv5["19"].weight.numpy(), cls.features[19].weight.numpy())
    other = build_model({"name": "ReXNet_1_3"})
    paddle.save(other.state_dict(), str(tmp_path / "rex13.pdparams"))
    with pytest.raises(ConfigError, match="not a ReXNet-1.0 checkpoint"):
        build_model({"name": "ReXUNet", "encoder_pretrained": str(tmp_path / "rex13")})


def test_convert_npz_and_pth(tmp_path):
    meta, weights, x, expected = load_fixture("rexnet_1_0")
    np.savez(tmp_path / "r.npz", **weights)
    dst, n, dropped = convert_checkpoint("ReXNet_1_0", str(tmp_path / "r.npz"), str(tmp_path / "r1"))
    assert n == 351 and not dropped
    m = build_model({"name": "ReXNet_1_0", "pretrained": str(tmp_path / "r1")})
    m.eval()
    out = m(paddle.to_tensor(x)).numpy()
    assert np.linalg.norm(out - expected[0]) / np.linalg.norm(expected[0]) < 1e-3
    torch = pytest.importorskip("torch")
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, tmp_path / "rexnetv1_1.0.pth")
    dst, n, _ = convert_checkpoint("ReXNet_1_0", str(tmp_path / "rexnetv1_1.0.pth"), str(tmp_path / "r2"))
    assert n == 351
