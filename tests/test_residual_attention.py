"""Residual Attention Networks: exactness against the Gluon reference, other input sizes, export."""
import os

import numpy as np
import paddle
import pytest

from alignment import check_model_against_fixture, load_fixture
from ppcls.arch import build_model
from ppcls.arch.convert import convert_checkpoint

FAST = {"attention56_cifar10", "attention92_cifar10", "attention56"}
VARIANTS = [("attention56_cifar10", "AttentionNet56_CIFAR"), ("attention92_cifar10", "AttentionNet92_CIFAR"),
            ("attention56", "AttentionNet56"), ("attention92", "AttentionNet92"), ("attention128", "AttentionNet128"),
            ("attention164", "AttentionNet164"), ("attention236", "AttentionNet236"), ("attention452", "AttentionNet452")]


@pytest.mark.parametrize("fixture,name", [pytest.param(f, n, marks=[] if f in FAST else [pytest.mark.slow])
                                          for f, n in VARIANTS])
def test_matches_gluon_reference(fixture, name):
    kwargs = {"class_num": 10} if fixture.endswith("cifar10") else None
    errs, tol, params, macs, meta = check_model_against_fixture(fixture, name, kwargs)
    assert max(errs) <= tol, errs
    assert params == meta["params"]
    assert macs == meta["conv_linear_macs_per_image"]


def test_layer_count_rule():
    from ppcls.arch.backbone.residual_attention import ATTENTION_SPECS
    for depth, ((p, t, r), modules) in ATTENTION_SPECS.items():
        if (p, t, r) == (1, 2, 1):
            assert 36 * sum(modules) / 3 + 20 == depth


@pytest.mark.parametrize("name,size", [("AttentionNet56_CIFAR", (40, 40)), ("AttentionNet56_CIFAR", (48, 36)),
                                       ("AttentionNet92_CIFAR", (24, 24)), ("AttentionNet56", (256, 256)),
                                       ("AttentionNet56", (192, 160))])
def test_other_input_sizes(name, size):
    m = build_model({"name": name, "class_num": 4})
    m.eval()
    with paddle.no_grad():
        assert m(paddle.randn([1, 3, *size])).shape == [1, 4]


def test_return_stages_and_frozen():
    m = build_model({"name": "AttentionNet56_CIFAR", "return_stages": [0, 1, 2, 3, 4], "frozen_stages": 1})
    m.eval()
    feats = m(paddle.randn([2, 3, 32, 32]))
    assert [f.shape[1] for f in feats] == m.out_channels == [32, 128, 256, 512, 1024]
    assert m.out_strides == [1, 1, 2, 4, 8]
    assert [f.shape[2] for f in feats] == [32, 32, 16, 8, 4]
    assert m.features[4].pre[0].conv1.weight.stop_gradient and not m.features[5].conv1.weight.stop_gradient
    im = build_model({"name": "AttentionNet56", "return_stages": [1, 4], "class_num": 0})
    assert im.out_strides == [4, 32] and im.out_channels == [256, 2048]


def test_gluon_npz_conversion(tmp_path):
    meta, weights, x, expected = load_fixture("attention56_cifar10")
    np.savez(tmp_path / "gluon.npz", **weights)
    dst, n, dropped = convert_checkpoint("AttentionNet56_CIFAR", str(tmp_path / "gluon.npz"), str(tmp_path / "a56"),
                                         {"class_num": 10})
    m = build_model({"name": "AttentionNet56_CIFAR", "class_num": 10, "pretrained": str(tmp_path / "a56")})
    m.eval()
    out = m(paddle.to_tensor(x)).numpy()
    assert np.linalg.norm(out - expected[0]) / np.linalg.norm(expected[0]) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("AttentionNet56_CIFAR", 32), ("AttentionNet56_CIFAR", 48)])
def test_exported_model_runs_with_onednn(tmp_path, name, size):
    from ppcls.inference.export import export_model
    from ppcls.inference.predictor import Predictor
    m = build_model({"name": name, "class_num": 10})
    m.eval()
    x = np.random.RandomState(0).rand(2, 3, size, size).astype("float32")
    ref = m(paddle.to_tensor(x)).numpy()
    d = export_model(m, str(tmp_path), [3, size, size], add_softmax=False)
    out = Predictor({"cpu_num_threads": 2, "enable_mkldnn": True}, d).run(x)
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
