"""ReXUNet and DLA-Up as PaddleSeg models (ppcls/seg/models.py): the input checks, the outputs in training and
evaluation, and where each kind of pretrained weights goes. Written against the survivors of
`bash tests/mutation.sh seg/models.py`."""
import numpy as np
import pytest

pytest.importorskip("paddleseg")

import paddle  # noqa: E402
from paddleseg.cvlibs import manager  # noqa: E402

import ppcls.seg  # noqa: E402,F401
from ppcls.seg import models  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402


@pytest.mark.parametrize("num_classes", [1, 0, True, "3", 2.0, None])
def test_mutation_kills_num_classes_must_be_an_int_of_at_least_two(num_classes):
    for name in ("ReXUNet", "DLAUp"):
        with pytest.raises(ConfigError) as e:
            models._check_inputs(name, num_classes, 3)
        assert str(e.value) == f"{name}.num_classes: at least 2 classes (background included), got {num_classes!r}"
    models._check_inputs("ReXUNet", 2, 3)


@pytest.mark.parametrize("name", ["ReXUNet", "DLAUp"])
def test_mutation_kills_three_channel_input_only(name):
    with pytest.raises(ConfigError) as e:
        manager.MODELS[name](num_classes=3, in_channels=4)
    assert str(e.value) == f"{name}.in_channels: the zoo's networks take 3-channel images, got 4"


def test_mutation_kills_rexunet_heads_outputs_and_resizing():
    paddle.seed(0)
    model = manager.MODELS["ReXUNet"](num_classes=3, align_corners=True)
    assert model.num_classes == 3 and model.align_corners is True and model.pretrained is None
    for i in range(1, len(models.HEAD_CHANNELS) + 1):
        assert getattr(model.net, f"output_conv{i}")._out_channels == 3
    x = paddle.rand([1, 3, 32, 64])
    model.train()
    maps = model.net.decode(x)
    outs = model(x)
    assert len(outs) == 6 and all(list(o.shape) == [1, 3, 32, 64] for o in outs)
    np.testing.assert_allclose(outs[0].numpy(), maps[0].numpy(), rtol=1e-5, atol=1e-6)
    # the coarser maps are resized to the input, bilinearly, with the model's align_corners
    want = paddle.nn.functional.interpolate(maps[3], [32, 64], mode="bilinear", align_corners=True)
    np.testing.assert_allclose(outs[3].numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    model.eval()
    assert len(model(x)) == 1


def test_mutation_kills_rexunet_weights_go_where_they_belong(monkeypatch, tmp_path):
    import ppcls.arch.weights as weights
    calls = []
    monkeypatch.setattr(weights, "resolve_weights",
                        lambda name, value, where: calls.append(("resolve", name, value, where)) or ("p", True))
    monkeypatch.setattr(weights, "read_weights_file",
                        lambda name, path, cache_conversion: calls.append(("read", name, path, cache_conversion))
                        or {})
    monkeypatch.setattr(models._MultiClassReXUNet, "load_encoder", lambda self, state: calls.append(("encoder", state)))
    monkeypatch.setattr(models.utils, "load_entire_model", lambda model, path: calls.append(("model", type(model).__name__, path)))
    model = manager.MODELS["ReXUNet"](num_classes=2, encoder_pretrained="imagenet", pretrained="seg/model.pdparams")
    assert calls == [("resolve", "ReXNet_1_0", "imagenet", "ReXUNet.encoder_pretrained"),
                     ("read", "ReXNet_1_0", "p", True), ("encoder", {}), ("model", "ReXUNet", "seg/model.pdparams")]
    assert model.pretrained == "seg/model.pdparams"
    calls.clear()
    manager.MODELS["ReXUNet"](num_classes=2, encoder_pretrained=False, pretrained="")
    assert calls == []


def test_mutation_kills_dlaup_base_ratio_and_weights(monkeypatch):
    import ppcls.arch.weights as weights
    calls = []
    monkeypatch.setattr(weights, "load_weights", lambda net, name, value, where: calls.append((net, name, value, where)))
    monkeypatch.setattr(models.utils, "load_entire_model", lambda model, path: calls.append(("model", type(model).__name__, path)))
    model = manager.MODELS["DLAUp"](num_classes=4, base="DLA46_c", down_ratio=4, backbone_pretrained=True,
                                    pretrained="m.pdparams")
    assert calls == [(model.net.base, "DLA46_c", True, "DLAUp.backbone_pretrained"), ("model", "DLAUp", "m.pdparams")]
    assert model.num_classes == 4 and model.pretrained == "m.pdparams"
    assert model.net.base.feature_info[-1]["channels"] == 256  # DLA46_c's (DLA34's is 512)
    model.eval()
    out = model(paddle.rand([1, 3, 32, 32]))
    assert list(model.net(paddle.rand([1, 3, 32, 32]))[1].shape) == [1, 4, 8, 8]  # scores at stride 4
    assert len(out) == 1 and list(out[0].shape) == [1, 4, 32, 32]
    # log-probabilities: their exponentials sum to one over the classes
    np.testing.assert_allclose(paddle.exp(out[0]).sum(axis=1).numpy(), 1.0, rtol=1e-5)
    calls.clear()
    default = manager.MODELS["DLAUp"](num_classes=2)
    assert calls == [] and default.net.base.feature_info[-1]["channels"] == 512 and default.pretrained is None
    default.eval()
    assert list(default.net(paddle.rand([1, 3, 32, 32]))[1].shape) == [1, 2, 16, 16]  # down_ratio 2


def test_mutation_kills_multi_class_rexunet_is_the_zoo_network_with_wider_heads():
    zoo = models.ReXUNetNet(class_num=1)
    mine = models._MultiClassReXUNet(num_classes=5)
    zoo_shapes = {k: list(v.shape) for k, v in zoo.state_dict().items()}
    my_shapes = {k: list(v.shape) for k, v in mine.state_dict().items()}
    assert set(my_shapes) == set(zoo_shapes)  # the same layers (squeeze-excitation in decode_conv6 too)
    for key, shape in zoo_shapes.items():
        if key.startswith("output_conv") or key.startswith("decode_conv6"):
            continue
        assert my_shapes[key] == shape, key
    for i in range(1, len(models.HEAD_CHANNELS) + 1):  # 3x3 heads with num_classes filters
        assert my_shapes[f"output_conv{i}.weight"] == [5, models.HEAD_CHANNELS[i - 1], 3, 3]
    assert manager.MODELS["ReXUNet"](num_classes=2).align_corners is False
