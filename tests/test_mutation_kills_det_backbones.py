"""The zoo's models as PaddleDetection backbones (ppcls/det/backbones.py): which models are registered and
why the others are not, the registration itself, the options and the train/eval modes inside a detector.
Written against the survivors of `bash tests/mutation.sh det/backbones.py`."""
import pytest

pytest.importorskip("ppdet")

import paddle  # noqa: E402

import ppcls  # noqa: E402
import ppcls.det  # noqa: E402,F401
from ppcls.det import backbones  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402

BN = paddle.nn.layer.norm._BatchNormBase


def test_mutation_kills_registered_and_skipped_with_their_reasons():
    names, skipped = backbones.detection_backbone_names()
    assert names == backbones.REGISTERED and skipped == backbones.SKIPPED_MODELS
    assert names == [n for n in ppcls.list_models() if n not in skipped]
    assert skipped["ReXUNet"] == backbones.SKIPPED["ReXUNet"]
    assert skipped["ResNet50"] == "paddle.vision model without return_stages (use ppdet's own ResNet instead)"
    assert skipped["MobileNetV2"] == ("paddle.vision model without return_stages (use ppdet's own MobileNet "
                                      "instead)")
    assert skipped["DLAUp_DLA34"].startswith("the DLA-Up segmentation network")
    assert {"DLA34", "DLA46_c", "ReXNet_1_0", "RLA_ResNet50"} <= set(names)


def test_mutation_kills_registration_makes_a_ppdet_module_of_each_name(monkeypatch):
    from ppdet.core.config.schema import SchemaDict
    from ppdet.core.workspace import create, global_config
    # as on a first import: neither the module attribute nor ppdet's entry exists yet
    registered_at_import = global_config["DLA46_c"]
    monkeypatch.delattr(backbones, "DLA46_c")
    monkeypatch.delitem(global_config, "DLA46_c")
    names, skipped = backbones._register_all()
    assert names == backbones.REGISTERED and skipped == backbones.SKIPPED_MODELS
    cls = backbones.DLA46_c
    assert issubclass(cls, backbones.ZooBackbone) and cls.__name__ == "DLA46_c" and cls.model_name == "DLA46_c"
    assert cls.__module__ == "ppcls.det.backbones"
    assert cls.__doc__ == "The zoo's DLA46_c as a ppdet backbone (see ppcls.det.backbones)."
    entry = global_config["DLA46_c"]
    assert isinstance(entry, SchemaDict) and entry.pymodule is backbones and entry.name == "DLA46_c"
    # the options a config can set are the constructor's (compared with the entry made at import: under a
    # mutation run ppdet reads the signature of mutmut's wrapper)
    assert set(entry.schema) == set(registered_at_import.schema)
    built = create("DLA46_c")
    assert type(built) is cls and [s.stride for s in built.out_shape] == [4, 8, 16, 32]
    # registering again changes nothing
    before = dict(global_config)
    assert backbones._register_all()[0] == names
    assert global_config["DLA46_c"] is before["DLA46_c"] and backbones.DLA46_c is cls


def test_mutation_kills_a_name_ppdet_already_has_is_refused(monkeypatch):
    monkeypatch.delattr(backbones, "DLA34")  # ppdet's workspace still has a DLA34 entry
    with pytest.raises(ConfigError) as e:
        backbones._register_all()
    assert str(e.value) == ("backbone DLA34: ppdet already registers a module of that name; the zoo's model cannot "
                            "be registered under it")


def test_mutation_kills_default_stages_are_the_last_at_each_fpn_stride():
    info = [dict(stage=i, name=f"s{i}", reduction=r) for i, r in enumerate([2, 4, 4, 8, 16, 16, 32])]
    assert backbones.default_return_stages("Net", info) == [2, 3, 5, 6]
    with pytest.raises(ConfigError) as e:
        backbones.default_return_stages("Net", info[:5])
    assert str(e.value) == ("Net (backbone).return_stages: Net has no stage at stride 32; set return_stages from "
                            "its stages (index:name/stride) 0:s0/2, 1:s1/4, 2:s2/4, 3:s3/8, 4:s4/16")


def test_mutation_kills_options_and_what_is_built(monkeypatch):
    with pytest.raises(ConfigError) as e:
        backbones.DLA46_c(options={"return_stages": [1], "class_num": 3, "drop_rate": 0.1})
    assert str(e.value) == ("DLA46_c (backbone).options: class_num, return_stages are options of the backbone "
                            "itself, not of options")
    det = backbones.DLA46_c(return_stages=(4, 5), options={"drop_rate": 0.25})
    assert det.net.return_stages == [4, 5] and det.net.frozen_stages == -1 and det.net.norm_eval is False
    assert [(s.channels, s.stride) for s in det.out_shape] == [(128, 16), (256, 32)]
    assert [type(o) for o in det({"image": paddle.rand([1, 3, 32, 32])})] == [paddle.Tensor, paddle.Tensor]
    assert getattr(det.net, "fc", None) is None or det.net.class_num == 0  # no classifier


@pytest.mark.parametrize("pretrained, loaded", [(None, False), (False, False), ("", False), ("None", False),
                                                (True, True), ("some/path", True)])
def test_mutation_kills_pretrained_goes_through_the_weights_loader(monkeypatch, pretrained, loaded):
    import ppcls.arch.weights as weights
    calls = []
    monkeypatch.setattr(weights, "load_weights", lambda net, name, value, where: calls.append((name, value, where)))
    backbones.DLA46_c(return_stages=[5], pretrained=pretrained)
    assert calls == ([("DLA46_c", pretrained, "DLA46_c (backbone).pretrained")] if loaded else [])


def _modes(det):
    return [layer.training for layer in det.net.sublayers() if isinstance(layer, BN)]


def _inside_a_detector(det, training):
    holder = paddle.nn.LayerList([det])
    holder.train() if training else holder.eval()
    det({"image": paddle.rand([1, 3, 32, 32])})
    return holder


def test_mutation_kills_norm_eval_alone_keeps_batchnorm_in_eval_mode():
    det = backbones.DLA46_c(return_stages=[5], norm_eval=True)
    _inside_a_detector(det, training=True)
    assert det.net.training and not any(_modes(det))


def test_mutation_kills_frozen_stem_alone_is_in_eval_mode():
    det = backbones.DLA46_c(return_stages=[5], frozen_stages=0)
    _inside_a_detector(det, training=True)
    stem = det.net.stage_layers()[0]
    assert not any(layer.training for part in stem for layer in [part] + part.sublayers())
    assert all(_modes(det)[-3:])  # the last stage's BatchNorms train


def test_mutation_kills_evaluation_stays_in_eval_mode():
    det = backbones.DLA46_c(return_stages=[5], norm_eval=True, frozen_stages=1)
    _inside_a_detector(det, training=False)
    assert not det.net.training and not any(_modes(det))
    plain = backbones.DLA46_c(return_stages=[5])
    _inside_a_detector(plain, training=True)
    assert all(_modes(plain))
