"""The zoo's backbones in PaddleSeg's manager (ppcls/seg/backbones.py): which names, the stages chosen for the
strides asked for, the options, and the registration. Written against the survivors of
`bash tests/mutation.sh seg/backbones.py`."""
import pytest

pytest.importorskip("paddleseg")

import paddle  # noqa: E402
from paddleseg.cvlibs import manager  # noqa: E402

import ppcls.seg  # noqa: E402,F401
from ppcls.arch import CARDS, list_models  # noqa: E402
from ppcls.seg import backbones  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402

FAKE_INFO = [dict(stage=i, name=f"s{i}", channels=8 * (i + 1), reduction=r)
             for i, r in enumerate([2, 4, 4, 8, 16, 16, 32])]


def test_mutation_kills_the_stage_at_each_stride_is_the_last_one(monkeypatch):
    monkeypatch.setitem(backbones._STAGES, "FakeNet", FAKE_INFO)  # the cache answers: nothing is built
    assert backbones.stages_for_strides("FakeNet", [4, 16, 32]) == [2, 5, 6]
    assert backbones.stages_for_strides("FakeNet", (32, 2)) == [6, 0]
    with pytest.raises(ConfigError) as e:
        backbones.stages_for_strides("FakeNet", [4, 64, 1])
    assert str(e.value) == ("FakeNet.out_strides: [64, 1] not available; FakeNet has feature maps at strides "
                            "[2, 4, 8, 16, 32]")


def test_mutation_kills_feature_info_is_built_once_per_model(monkeypatch):
    import ppcls.seg.backbones as module
    built = []
    real = module.build_model
    monkeypatch.setattr(module, "build_model", lambda cfg: built.append(dict(cfg)) or real(cfg))
    monkeypatch.delitem(backbones._STAGES, "DLA46_c", raising=False)
    info = backbones._feature_info("DLA46_c")
    assert backbones._feature_info("DLA46_c") is info and built == [{"name": "DLA46_c", "class_num": 0}]
    assert [d["reduction"] for d in info] == [1, 2, 4, 8, 16, 32]


def test_mutation_kills_backbone_options():
    cls = manager.BACKBONES["DLA46_c"]
    with pytest.raises(ConfigError) as e:
        cls(in_channels=1)
    assert str(e.value) == "DLA46_c.in_channels: the zoo's networks take 3-channel images, got 1"
    net = cls(out_strides=["8", 32.0], drop_rate=0.5)  # YAML may give strings; other options reach the model
    assert net.out_strides == [8, 32] and net.feat_channels == [64, 256] and net.net.return_stages == [3, 5]
    assert net.net.class_num == 0
    feats = net(paddle.rand([1, 3, 32, 32]))
    assert isinstance(feats, list) and [f.shape[2] for f in feats] == [4, 1]


@pytest.mark.parametrize("pretrained, loaded", [(None, False), ("", False), (False, False), (True, True),
                                                ("a/path", True)])
def test_mutation_kills_pretrained_goes_to_load_weights(monkeypatch, pretrained, loaded):
    import ppcls.arch.weights as weights
    calls = []
    monkeypatch.setattr(weights, "load_weights", lambda net, name, value, where: calls.append((name, value, where)))
    net = manager.BACKBONES["DLA46_c"](pretrained=pretrained)
    assert calls == ([("DLA46_c", pretrained, "DLA46_c.pretrained")] if loaded else [])
    assert net.feat_channels == [64, 64, 128, 256]


def test_mutation_kills_the_registered_names_are_the_four_families():
    names = backbones._names()
    expected = [n for n in list_models() if n in CARDS and CARDS[n].family in backbones.FAMILIES
                and n != "ReXUNet" and not n.endswith("_CIFAR") and not n.startswith("DLAUp_")]
    assert names == expected
    families = {CARDS[n].family for n in names}
    assert families == {"DLA", "RLA-Net", "ReXNet", "ResidualAttention"}
    assert "ReXUNet" not in names and "AttentionNet56_CIFAR" not in names and "DLAUp_DLA34" not in names
    assert "ResNet50" not in names and "MobileNetV2" not in names  # other families: PaddleSeg has its own
    assert backbones.REGISTERED == names  # PaddleSeg 2.8 has none of these names itself


def test_mutation_kills_registration_adds_what_paddleseg_lacks(monkeypatch):
    assert backbones.register_backbones() == []  # every name is known already
    monkeypatch.delitem(manager.BACKBONES.components_dict, "ReXNet_1_3")
    assert backbones.register_backbones() == ["ReXNet_1_3"]
    cls = manager.BACKBONES["ReXNet_1_3"]
    assert issubclass(cls, backbones.ZooBackbone) and cls.__name__ == "ReXNet_1_3"
    assert cls.model_name == "ReXNet_1_3" and cls.__doc__ == "ReXNet_1_3 of the zoo as a PaddleSeg backbone."
