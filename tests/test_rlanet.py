"""RLA-Net: exactness against the original (fixtures), features for detection, options, conversion.
Parameter / FLOP counts of every row: tests/test_paras_flops.py."""
import numpy as np
import paddle
import pytest

from alignment import check_model_against_fixture, load_fixture
from ppcls.arch import build_model
from ppcls.arch.convert import ConversionError, convert_checkpoint, convert_state_dict, get_rules
from ppcls.utils.errors import ConfigError
from ppcls.utils.model_stats import count_params

# fixture -> model; the deep ResNets (3-5 s each) only add depth to what the 50-layer ones pin down
VARIANTS = [("rla_resnet50", "RLA_ResNet50", False), ("rla_resnet50_eca", "RLA_ECANet50", False),
            ("rla_resnet101", "RLA_ResNet101", True), ("rla_resnet101_eca", "RLA_ECANet101", True),
            ("rla_resnet152", "RLA_ResNet152", True), ("dsrla_mobilenetv2_k32", "RLA_MobileNetV2", False),
            ("dsrla_mobilenetv2_k32_eca", "RLA_ECA_MobileNetV2", False),
            ("rla_mobilenetv2_k32", "RLA_MobileNetV2_FullConv", False)]


@pytest.mark.parametrize("fixture,name", [pytest.param(f, n, id=n, marks=[pytest.mark.slow] if slow else [])
                                          for f, n, slow in VARIANTS])
def test_matches_original(fixture, name):
    errs, tol, params, macs, meta = check_model_against_fixture(fixture, name)
    assert max(errs) <= tol, errs
    assert params == meta["params"]
    assert macs == meta["conv_linear_macs_per_image"]


def _small(name, **kw):
    m = build_model(dict(name=name, **kw))
    m.eval()
    return m


# -- features for detection -------------------------------------------------------------------------
def test_resnet_stages_hidden_frozen_norm_eval():
    m = build_model({"name": "RLA_ResNet50", "return_stages": [1, 2, 3, 4], "return_hidden": True,
                     "frozen_stages": 1, "norm_eval": True})
    assert m.out_channels == [256, 512, 1024, 2048] and m.out_strides == [4, 8, 16, 32]
    assert [d["name"] for d in m.feature_info] == ["stem", "stages.0", "stages.1", "stages.2", "stages.3"]
    m.train()
    outs = m(paddle.randn([2, 3, 128, 96]))
    assert [o.shape for o in outs[:4]] == [[2, 256, 32, 24], [2, 512, 16, 12], [2, 1024, 8, 6], [2, 2048, 4, 3]]
    assert [o.shape for o in outs[4:]] == [[2, 32, 32, 24], [2, 32, 16, 12], [2, 32, 8, 6], [2, 32, 4, 3]]
    # frozen: the stem and stage 1 with its RLA parts (conv_out, recurrent conv, BNs of h)
    def learnable(layer):  # BN running statistics are never learnable
        return [p for p in layer.parameters() if p.trainable]
    for layer in (m.conv1, m.bn1, m.stages[0], m.stage_bns[0], m.conv_outs[0], m.recurrent_convs[0]):
        assert all(p.stop_gradient for p in learnable(layer))
    for layer in (m.stages[1], m.stage_bns[1], m.conv_outs[1], m.recurrent_convs[1], m.bn2):
        assert not any(p.stop_gradient for p in learnable(layer))
    # norm_eval: every BN in eval mode although the model trains
    assert m.training and not m.bn1.training and not m.stage_bns[3][0].training and not m.stages[2][0].bn1.training
    # the stem's hidden state is h0 (zeros)
    stem_h = build_model({"name": "RLA_ResNet50", "return_stages": [0], "return_hidden": True})(
        paddle.randn([1, 3, 64, 64]))[1]
    assert stem_h.shape == [1, 32, 16, 16] and float(stem_h.abs().sum()) == 0.0


def test_mobilenet_stages_and_shared_recurrent_conv_freezing():
    m = _small("RLA_MobileNetV2", return_stages=[0, 1, 2, 3, 4], return_hidden=True)
    assert m.out_channels == [16, 24, 32, 96, 320] and m.out_strides == [2, 4, 8, 16, 32]
    outs = m(paddle.randn([1, 3, 64, 64]))
    assert [o.shape for o in outs] == [[1, 16, 32, 32], [1, 24, 16, 16], [1, 32, 8, 8], [1, 96, 4, 4],
                                       [1, 320, 2, 2], [1, 32, 32, 32], [1, 32, 16, 16], [1, 32, 8, 8],
                                       [1, 32, 4, 4], [1, 32, 2, 2]]
    part = build_model({"name": "RLA_MobileNetV2", "frozen_stages": 3})
    assert part.conv1[0].weight.stop_gradient and part.stages[4][0].conv[1].weight.stop_gradient
    assert not part.stages[5][0].conv[1].weight.stop_gradient
    assert not part.recurrent_conv.weight.stop_gradient  # still used by the trainable stages 5, 6
    full = build_model({"name": "RLA_MobileNetV2", "frozen_stages": 4})
    assert full.recurrent_conv.weight.stop_gradient and not full.conv2[0].weight.stop_gradient


def test_bad_feature_options_are_config_errors():
    with pytest.raises(ConfigError, match="return_stages"):
        build_model({"name": "RLA_ResNet50", "return_stages": [5]})
    with pytest.raises(ConfigError, match="return_stages"):
        build_model({"name": "RLA_MobileNetV2", "return_stages": [0, 5]})
    with pytest.raises(ConfigError, match="return_hidden"):
        build_model({"name": "RLA_ResNet50", "return_hidden": True})
    with pytest.raises(ConfigError, match="frozen_stages"):
        build_model({"name": "RLA_MobileNetV2", "frozen_stages": 5})
    with pytest.raises(ConfigError, match="did you mean 'rla_channel'"):
        build_model({"name": "RLA_ResNet50", "rla_chanel": 16})


# -- options ------------------------------------------------------------------------------------------
def test_class_num_and_rla_channel():
    x = paddle.randn([2, 3, 64, 64])
    assert _small("RLA_ResNet50", class_num=7, rla_channel=16)(x).shape == [2, 7]
    assert _small("RLA_ResNet50", class_num=0)(x).shape == [2, 2048 + 32]  # pooled [x, h]
    assert _small("RLA_ECA_MobileNetV2", class_num=5, rla_channel=12)(x).shape == [2, 5]
    assert _small("RLA_MobileNetV2", class_num=-1)(x).shape == [2, 1280]
    # k changes every RLA-dependent shape (counts of the original's k ablations)
    assert count_params(build_model({"name": "RLA_MobileNetV2", "rla_channel": 12})) == 3549608
    assert count_params(build_model({"name": "RLA_MobileNetV2_FullConv", "rla_channel": 6})) == 3527510


def test_input_size_rule_matches_the_original():
    # the original runs only where the stem output halves exactly at every pooling of h:
    # ResNet at H in {32m-3, ..., 32m}, MobileNetV2 at H in {32m-1, 32m}; the port says so clearly
    _small("RLA_ResNet50", class_num=2)(paddle.randn([1, 3, 61, 64]))
    with pytest.raises(ConfigError, match="multiples of 32"):
        _small("RLA_ResNet50", class_num=2)(paddle.randn([1, 3, 60, 64]))
    _small("RLA_MobileNetV2", class_num=2)(paddle.randn([1, 3, 63, 64]))
    with pytest.raises(ConfigError, match="divisible by 16"):
        _small("RLA_MobileNetV2", class_num=2)(paddle.randn([1, 3, 62, 64]))


def test_training_init_as_the_original():
    m = build_model({"name": "RLA_ECANet50"})
    assert all(float(b.bn3.weight.abs().sum()) == 0 for s in m.stages for b in s)  # zero_init_last_bn
    bound = 1 / np.sqrt(2080)  # PyTorch's Linear default on fc
    assert np.abs(m.fc.weight.numpy()).max() <= bound and np.abs(m.fc.bias.numpy()).max() <= bound
    assert np.abs(m.fc.bias.numpy()).max() > 0.5 * bound
    assert np.abs(m.stages[3][0].eca.conv.weight.numpy()).max() <= 1 / np.sqrt(7)
    conv = m.stages[2][1].conv2.weight.numpy()  # Kaiming normal, fan_out
    assert abs(conv.std() - np.sqrt(2 / (256 * 9))) < 0.05 * np.sqrt(2 / (256 * 9))
    mb = build_model({"name": "RLA_MobileNetV2"})
    w = mb.classifier[1].weight.numpy()
    assert abs(w.std() - 0.01) < 5e-4 and float(mb.classifier[1].bias.abs().sum()) == 0
    assert float(mb.stages[0][0].conv[2].weight.numpy().min()) == 1.0  # no BN zero-init in MobileNetV2


def test_static_graph_export_path():
    m = _small("RLA_MobileNetV2", class_num=3)
    x = paddle.randn([2, 3, 64, 64])
    ref = m(x).numpy()
    static = paddle.jit.to_static(m, input_spec=[paddle.static.InputSpec([None, 3, 64, 64], "float32")],
                                  full_graph=True)
    assert np.allclose(static(x).numpy(), ref, atol=1e-5)


# -- conversion ---------------------------------------------------------------------------------------
def _relerr(model_name, pdparams, x, expected):
    m = build_model({"name": model_name, "pretrained": pdparams})
    m.eval()
    out = m(paddle.to_tensor(x)).numpy()
    return np.linalg.norm(out - expected[0]) / np.linalg.norm(expected[0])


def test_shared_recurrent_conv_converts_from_five_keys(tmp_path):
    meta, weights, x, expected = load_fixture("dsrla_mobilenetv2_k32")
    w = {"module." + k: v for k, v in weights.items()}  # a DataParallel training file
    for i in range(1, 5):  # the original stores its one shared recurrent conv under five keys
        w[f"module.recurrent_dsconvs.{i}.weight"] = weights["recurrent_dsconvs.0.weight"]
    np.savez(tmp_path / "ds.npz", **w)
    dst, n, dropped = convert_checkpoint("RLA_MobileNetV2", str(tmp_path / "ds.npz"), str(tmp_path / "ds"))
    assert dropped == [] and _relerr("RLA_MobileNetV2", dst, x, expected) < 1e-3

    model, rules = build_model({"name": "RLA_MobileNetV2"}), get_rules("RLA_MobileNetV2")
    w = dict(weights, **{"recurrent_dsconvs.3.weight": weights["recurrent_dsconvs.0.weight"] + 1})
    with pytest.raises(ConversionError, match="conflicting.*recurrent_dsconvs.3"):
        convert_state_dict(model, w, rules)
    # a depthwise (dsrla_) checkpoint does not go into the full-conv model, by name
    with pytest.raises(ConversionError, match="unexpected.*recurrent_dsconvs.0"):
        convert_state_dict(build_model({"name": "RLA_MobileNetV2_FullConv"}), weights,
                           get_rules("RLA_MobileNetV2_FullConv"))


def test_converter_refuses_missing_extra_misshaped_keys():
    _, weights, _, _ = load_fixture("rla_resnet50")
    model, rules = build_model({"name": "RLA_ResNet50"}), get_rules("RLA_ResNet50")
    w = dict(weights)
    del w["stage_bns.2.4.running_var"]
    with pytest.raises(ConversionError, match=r"missing 1: stage_bns\.2\.4\._variance"):
        convert_state_dict(model, w, rules)
    w = dict(weights, **{"stage_bns.4.0.weight": np.ones(32, np.float32)})
    with pytest.raises(ConversionError, match=r"unexpected 1: stage_bns\.4\.0\.weight"):
        convert_state_dict(model, w, rules)
    w = dict(weights, **{"conv_outs.1.weight": np.zeros((16, 512, 1, 1), np.float32)})
    with pytest.raises(ConversionError, match=r"mis-shaped 1: conv_outs\.1\.weight \[16, 512, 1, 1\]"):
        convert_state_dict(model, w, rules)


def test_training_checkpoint_pth(tmp_path):
    torch = pytest.importorskip("torch")
    meta, weights, x, expected = load_fixture("rla_resnet50_eca")
    sd = {"module." + k: torch.from_numpy(v) for k, v in weights.items()}
    for k in list(sd):  # train.py's files keep the BN counters
        if k.endswith("running_var"):
            sd[k[:-len("running_var")] + "num_batches_tracked"] = torch.tensor(5005, dtype=torch.int64)
    torch.save({"epoch": 100, "arch": "rla_resnet50_eca", "state_dict": sd, "best_acc1": torch.tensor(77.85),
                "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "ecanet50_rla_2215.pth.tar")
    dst, n, dropped = convert_checkpoint("RLA_ECANet50", str(tmp_path / "ecanet50_rla_2215.pth.tar"),
                                         str(tmp_path / "e50"))
    assert dropped == [] and _relerr("RLA_ECANet50", dst, x, expected) < 1e-3
