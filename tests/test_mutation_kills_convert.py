"""Checkpoint conversion (ppcls.arch.convert) behaviour that tests/test_weight_formats.py and test_weights.py
left open, found by mutation testing (bash tests/mutation.sh 'arch/convert/*'): the generic renames of PyTorch
and Gluon files, Linear transposition, dtype handling, the refusal's lists, shared keys, layouts registered
and recognised by name or by keys, and each family's dropped and renamed keys. Small layers stand in for the
zoo's models (no fixture files, no downloads); the registries are restored after each test."""
import os

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from ppcls.arch.convert import (CONVERTERS, ConversionError, Rules, convert_checkpoint, convert_state_dict,
                                detect_layout, get_rules, layouts_of, load_source_state, register_rules)
from ppcls.arch.convert.dla import _dead_projection
from ppcls.arch.convert.dla_up import _unused_in_dlaseg
from ppcls.arch.convert.rla import _shared_recurrent
from ppcls.arch.convert.timm_layouts import (_nonleaf_projections, detect_timm_dla, detect_timm_rexnet,
                                             project_model_for, timm_rexnet_transform)
from ppcls.arch.registry import MODELS
from ppcls.utils.errors import ConfigError


class Tiny(nn.Layer):
    """conv -> bn -> linear head: the parameter kinds the generic part handles."""

    def __init__(self, class_num=3):
        super().__init__()
        self.conv = nn.Conv2D(2, 4, 1)
        self.bn = nn.BatchNorm2D(4)
        self.fc = nn.Linear(4, class_num)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean(axis=[2, 3]))


def torch_state(seed=0, class_num=3):
    """What a PyTorch file of Tiny holds: running_* statistics, num_batches_tracked, fc.weight [out, in]."""
    rng = np.random.RandomState(seed)
    return {"conv.weight": rng.randn(4, 2, 1, 1).astype(np.float32), "conv.bias": rng.randn(4).astype(np.float32),
            "bn.weight": rng.randn(4).astype(np.float32), "bn.bias": rng.randn(4).astype(np.float32),
            "bn.running_mean": rng.randn(4).astype(np.float32), "bn.running_var": rng.rand(4).astype(np.float32),
            "bn.num_batches_tracked": np.array(7, np.int64),
            "fc.weight": rng.randn(class_num, 4).astype(np.float32), "fc.bias": rng.randn(class_num).astype(np.float32)}


def expected_state(src):
    return {"conv.weight": src["conv.weight"], "conv.bias": src["conv.bias"], "bn.weight": src["bn.weight"],
            "bn.bias": src["bn.bias"], "bn._mean": src["bn.running_mean"], "bn._variance": src["bn.running_var"],
            "fc.weight": src["fc.weight"].T, "fc.bias": src["fc.bias"]}


def assert_state(state, expected):
    assert list(state) == list(expected)
    for k, v in expected.items():
        assert state[k].dtype == np.float32 and np.array_equal(state[k], v), k


@pytest.fixture
def registries(monkeypatch):
    """Tiny as a model and its layouts, both removed again after the test."""
    monkeypatch.setitem(MODELS._entries, "TinyConvertNet", Tiny)
    monkeypatch.setitem(CONVERTERS._entries, "TinyConvertNet", {})
    return "TinyConvertNet"


# -- the generic part -----------------------------------------------------------------------------------------
def test_torch_file_maps_statistics_transposes_the_linear_and_skips_the_counter():
    src = torch_state()
    state, dropped = convert_state_dict(Tiny(), src, Rules("torch"))
    assert_state(state, expected_state(src))  # in the model's own order
    assert dropped == []
    model = Tiny()
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    model.eval()
    x = np.random.RandomState(1).randn(2, 2, 3, 3).astype(np.float32)
    # the reference forward of the torch weights, in numpy
    y = np.einsum("oi,nihw->nohw", src["conv.weight"][:, :, 0, 0], x) + src["conv.bias"][None, :, None, None]
    y = (y - src["bn.running_mean"][None, :, None, None]) / np.sqrt(src["bn.running_var"][None, :, None, None] + 1e-5)
    y = y * src["bn.weight"][None, :, None, None] + src["bn.bias"][None, :, None, None]
    ref = y.mean(axis=(2, 3)) @ src["fc.weight"].T + src["fc.bias"]
    np.testing.assert_allclose(model(paddle.to_tensor(x)).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_gluon_names_gamma_beta_and_statistics():
    src = torch_state()
    gluon = {"conv.weight": src["conv.weight"], "conv.bias": src["conv.bias"], "bn.gamma": src["bn.weight"],
             "bn.beta": src["bn.bias"], "bn.running_mean": src["bn.running_mean"],
             "bn.running_var": src["bn.running_var"], "fc.weight": src["fc.weight"], "fc.bias": src["fc.bias"]}
    state, _ = convert_state_dict(Tiny(), gluon, Rules("gluon"))
    assert_state(state, expected_state(src))
    # a top-level BatchNorm: the name is the suffix alone
    state, _ = convert_state_dict(nn.BatchNorm1D(3), {"gamma": np.ones(3, np.float32), "beta": np.zeros(3, np.float32),
                                                      "running_mean": np.zeros(3, np.float32),
                                                      "running_var": np.ones(3, np.float32)}, Rules("gluon"))
    assert list(state) == ["weight", "bias", "_mean", "_variance"]
    # torch names are not gluon's: gamma in a torch file is a key of its own (unexpected)
    with pytest.raises(ConversionError, match=r"unexpected 2: bn\.gamma, bn\.beta"):
        convert_state_dict(Tiny(), gluon, Rules("torch"))


def test_a_top_level_linear_is_transposed_and_other_2d_weights_are_not():
    w = np.arange(6, dtype=np.float32).reshape(3, 2)  # torch: [out 3, in 2]
    state, _ = convert_state_dict(nn.Linear(2, 3), {"weight": w, "bias": np.zeros(3, np.float32)}, Rules("torch"))
    assert np.array_equal(state["weight"], w.T)
    emb = np.arange(12, dtype=np.float32).reshape(4, 3)  # an Embedding's 2-D weight keeps its layout
    state, _ = convert_state_dict(nn.Embedding(4, 3), {"weight": emb}, Rules("torch"))
    assert np.array_equal(state["weight"], emb)


def test_float64_becomes_float32_and_integer_arrays_keep_their_type():
    src = {k: v.astype(np.float64) for k, v in torch_state().items() if k != "bn.num_batches_tracked"}
    state, _ = convert_state_dict(Tiny(), src, Rules("torch"))
    assert_state(state, {k: v.astype(np.float32) for k, v in expected_state(src).items()})

    class Counter(nn.Layer):
        def __init__(self):
            super().__init__()
            self.register_buffer("steps", paddle.zeros([2], dtype="int64"))
    state, _ = convert_state_dict(Counter(), {"steps": np.array([3, 4], np.int64)}, Rules("torch"))
    assert state["steps"].dtype == np.int64 and state["steps"].tolist() == [3, 4]


def test_refusal_lists_missing_unexpected_and_mis_shaped_keys():
    src = torch_state()
    del src["conv.bias"]
    src["extra.weight"] = np.zeros(2, np.float32)
    src["fc.bias"] = np.zeros(7, np.float32)
    with pytest.raises(ConversionError) as e:
        convert_state_dict(Tiny(), src, Rules("torch"))
    assert str(e.value) == ("checkpoint does not fit Tiny: missing 1: conv.bias | unexpected 1: extra.weight | "
                            "mis-shaped 1: fc.bias [7] -> fc.bias [3]")
    assert isinstance(e.value, ConfigError)
    # a mis-shaped key is reported as mis-shaped, not also as missing
    assert e.value.problems == dict(missing=["conv.bias"], unexpected=["extra.weight"],
                                    mismatched=[("fc.bias", [7], "fc.bias", [3])], conflicting=[])
    # the transposed Linear weight is reported in the file's shape
    src = torch_state()
    src["fc.weight"] = np.zeros((4, 5), np.float32)
    with pytest.raises(ConversionError, match=r"^checkpoint does not fit Tiny: mis-shaped 1: "
                                              r"fc\.weight \[4, 5\] -> fc\.weight \[4, 3\]$"):
        convert_state_dict(Tiny(), src, Rules("torch"))


def test_long_lists_are_cut_at_twenty_with_the_count_in_front():
    class Wide(nn.Layer):
        def __init__(self, n):
            super().__init__()
            self.items = nn.LayerList([nn.Linear(1, 1, bias_attr=False) for _ in range(n)])

    keys = [f"items.{i}.weight" for i in range(21)]
    with pytest.raises(ConversionError) as e:
        convert_state_dict(Wide(21), {}, Rules("torch"))
    assert str(e.value) == f"checkpoint does not fit Wide: missing 21: {', '.join(keys[:20])} ..."


def test_twenty_keys_are_listed_without_an_ellipsis():
    class Wide(nn.Layer):
        def __init__(self, n):
            super().__init__()
            self.items = nn.LayerList([nn.Linear(1, 1, bias_attr=False) for _ in range(n)])

    keys = [f"items.{i}.weight" for i in range(20)]
    with pytest.raises(ConversionError) as e:
        convert_state_dict(Wide(20), {}, Rules("torch"))
    assert str(e.value) == f"checkpoint does not fit Wide: missing 20: {', '.join(keys)}"
    twenty = {f"x{i}.weight": np.zeros(1, np.float32) for i in range(20)}
    with pytest.raises(ConversionError) as e:
        convert_state_dict(Wide(0), twenty, Rules("torch"))
    assert str(e.value) == f"checkpoint does not fit Wide: unexpected 20: {', '.join(twenty)}"
    extra = {f"x{i}.weight": np.zeros(1, np.float32) for i in range(21)}
    with pytest.raises(ConversionError) as e:
        convert_state_dict(Wide(0), extra, Rules("torch"))
    assert str(e.value) == f"checkpoint does not fit Wide: unexpected 21: {', '.join(list(extra)[:20])} ..."
    bad = {k: np.zeros((1, 2), np.float32) for k in [f"items.{i}.weight" for i in range(21)]}
    with pytest.raises(ConversionError) as e:
        convert_state_dict(Wide(21), bad, Rules("torch"))
    shown = "; ".join(f"items.{i}.weight [1, 2] -> items.{i}.weight [1, 1]" for i in range(20))
    assert str(e.value) == f"checkpoint does not fit Wide: mis-shaped 21: {shown} ..."


def test_keys_shared_by_several_sources_must_agree():
    src = torch_state()
    rename = (lambda k: "conv.weight" if k == "copy.weight" else None)
    same = dict(src, **{"copy.weight": src["conv.weight"].copy()})
    state, _ = convert_state_dict(Tiny(), same, Rules("torch", rename=rename))
    assert np.array_equal(state["conv.weight"], src["conv.weight"])
    differ = dict(src, **{"copy.weight": src["conv.weight"] + 1})
    with pytest.raises(ConversionError) as e:
        convert_state_dict(Tiny(), differ, Rules("torch", rename=rename))
    assert str(e.value) == ("checkpoint does not fit Tiny: conflicting 1: conv.weight and copy.weight "
                            "(both -> conv.weight) differ")
    assert e.value.problems["conflicting"] == ["conv.weight and copy.weight (both -> conv.weight) differ"]


def test_rename_drop_and_transform_of_a_layout():
    src = {("old." + k if k.startswith("fc.") else k): v for k, v in torch_state().items()}
    src["aux.weight"] = np.zeros(3, np.float32)
    seen = []

    def transform(key, arr, shape):
        seen.append((key, list(shape)))
        return arr * 2 if key == "conv.bias" else arr
    rules = Rules("torch", rename=lambda k: k[4:] if k.startswith("old.") else None,
                  drop=lambda k: k.startswith("aux."), transform=transform)
    state, dropped = convert_state_dict(Tiny(), src, rules)
    expected = expected_state(torch_state())
    expected["conv.bias"] = expected["conv.bias"] * 2
    assert_state(state, expected)
    assert dropped == ["aux.weight"]
    # the transform sees the renamed key and the target's shape, after the Linear transposition
    assert ("fc.weight", [4, 3]) in seen and ("bn._mean", [4]) in seen
    # the two-argument drop sees the model's parameter names
    calls = []
    two = Rules("torch", drop=lambda k, targets: calls.append(set(targets)) or k == "aux.weight")
    src = dict(torch_state(), **{"aux.weight": np.zeros(3, np.float32)})
    _, dropped = convert_state_dict(Tiny(), src, two)
    assert dropped == ["aux.weight"] and calls[0] == set(Tiny().state_dict())


def test_rules_refuse_an_unknown_framework():
    with pytest.raises(ValueError, match="caffe"):
        Rules("caffe")
    assert Rules().framework == "torch"


# -- layouts ----------------------------------------------------------------------------------------------------
def test_layouts_by_name_by_keys_and_the_fallback(registries):
    first, second = Rules("torch"), Rules("gluon", detect=lambda keys: "bn.gamma" in keys)
    register_rules([registries], first)
    register_rules([registries], second, layout="mxnet")
    assert layouts_of(registries) == {"original": first, "mxnet": second}
    assert get_rules(registries) is first
    assert get_rules(registries, layout="mxnet") is second
    assert get_rules(registries, keys=iter(["bn.gamma"])) is second  # any iterable of keys, read once
    assert get_rules(registries, keys=["bn.weight"]) is first  # no detector claims them: the first layout
    assert detect_layout(registries, ["bn.gamma"]) == "mxnet"
    assert detect_layout(registries, ["bn.weight"]) == "original"
    with pytest.raises(ConfigError, match=r"^--layout: unknown checkpoint layout for TinyConvertNet 'mxnet2' "
                                          r".*mxnet"):
        get_rules(registries, layout="mxnet2")
    with pytest.raises(ConfigError, match=r"^-a: unknown architecture for conversion 'NoSuchNet'"):
        layouts_of("NoSuchNet")


def test_every_zoo_family_registers_its_layouts():
    assert list(layouts_of("DLA34")) == ["original", "timm"]
    assert list(layouts_of("ReXNet_1_0")) == ["original", "timm"]
    assert list(layouts_of("ReXUNet")) == ["original"]
    assert layouts_of("AttentionNet56_CIFAR")["original"].framework == "gluon"
    assert layouts_of("DLA34")["timm"].detect is detect_timm_dla
    assert layouts_of("ReXNet_1_0")["timm"].detect is detect_timm_rexnet


# -- reading and writing ------------------------------------------------------------------------------------------
def test_a_missing_source_file_is_named(tmp_path):
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(ConversionError, match=rf"^--src: file not found: {missing}$"):
        load_source_state(missing)


def test_convert_checkpoint_writes_pdparams_and_reports(tmp_path, registries):
    register_rules([registries], Rules("torch", drop=lambda k: k == "aux.weight"))
    src = dict(torch_state(), **{"aux.weight": np.zeros(3, np.float32)})
    np.savez(tmp_path / "src.npz", **src)
    dst, count, dropped = convert_checkpoint(registries, str(tmp_path / "src.npz"), str(tmp_path / "out"))
    assert (dst, count, dropped) == (str(tmp_path / "out.pdparams"), 8, ["aux.weight"])
    saved = paddle.load(dst)
    assert_state({k: v.numpy() for k, v in saved.items()}, expected_state(torch_state()))
    # a name ending in .pdparams is kept; arch_kwargs reach the model (a 5-class head)
    np.savez(tmp_path / "src5.npz", **torch_state(class_num=5))
    dst, _, _ = convert_checkpoint(registries, str(tmp_path / "src5.npz"), str(tmp_path / "five.pdparams"),
                                   arch_kwargs={"class_num": 5})
    assert dst == str(tmp_path / "five.pdparams") and list(paddle.load(dst)["fc.bias"].shape) == [5]
    assert not os.path.exists(str(tmp_path / "five.pdparams.pdparams"))


def test_an_unknown_model_is_refused_before_the_file_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"^-a: unknown architecture for conversion 'NoSuchNet'"):
        convert_checkpoint("NoSuchNet", str(tmp_path / "missing.pth"), str(tmp_path / "o"))


# -- the families' rules ------------------------------------------------------------------------------------------
def test_dla_drops_only_projections_the_port_does_not_build():
    targets = {"level3.project.0.weight", "level3.tree1.conv1.weight"}
    assert _dead_projection("level4.project.0.weight", targets)
    assert not _dead_projection("level3.project.0.weight", targets)  # built: kept
    assert not _dead_projection("level4.tree1.conv1.weight", targets)  # not a projection
    # the module is the key without its last part: level3.project.0 exists
    assert not _dead_projection("level3.project.0.bias", {"level3.project.0.weight"})
    assert _dead_projection("level3.project.1.bias", {"level3.project.0.weight"})


def test_dla_up_drops_the_base_classifier_and_dead_projections():
    targets = {"base.level3.project.0.weight", "dla_up.ida_0.proj_1.conv.weight"}
    assert _unused_in_dlaseg("base.fc.weight", targets) and _unused_in_dlaseg("base.fc.bias", targets)
    assert not _unused_in_dlaseg("fc.0.weight", targets)  # the segmentation head
    assert _unused_in_dlaseg("base.level4.project.0.weight", targets)
    assert not _unused_in_dlaseg("base.level3.project.0.weight", targets)
    assert not _unused_in_dlaseg("dla_up.ida_0.proj_1.conv.weight", targets)
    assert not _unused_in_dlaseg("base.level3.project.0.bias", {"base.level3.project.0.weight"})
    assert _unused_in_dlaseg("base.level3.project.1.bias", {"base.level3.project.0.weight"})


def test_rla_shared_recurrent_conv_entries_map_onto_one_parameter():
    rename = _shared_recurrent("recurrent_dsconvs")
    assert rename("recurrent_dsconvs.0.weight") == "recurrent_conv.weight"
    assert rename("recurrent_dsconvs.4.bn.weight") == "recurrent_conv.bn.weight"
    assert rename("recurrent_convs.0.weight") is None  # the other kind of list: refused later, by name
    assert rename("layer.recurrent_dsconvs.0.weight") is None  # anchored at the start
    assert rename("recurrent_dsconvsX.0.weight") is None


def test_timm_classifier_becomes_a_1x1_conv_and_nothing_else_changes():
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = timm_rexnet_transform("output.1.weight", w, [3, 2, 1, 1])
    assert out.shape == (3, 2, 1, 1) and np.array_equal(out[:, :, 0, 0], w)
    assert timm_rexnet_transform("output.1.weight", w, [3, 2]) is w  # a Linear target keeps it
    assert timm_rexnet_transform("features.0.weight", w, [3, 2, 1, 1]) is w
    conv = np.zeros((3, 2, 1, 1), np.float32)
    assert timm_rexnet_transform("output.1.weight", conv, [3, 2, 1, 1]) is conv


def test_timm_architecture_names():
    assert project_model_for("dla102x2") == "DLA102x2"
    assert project_model_for("rexnet_200.nav_in1k") == "ReXNet_2_0"
    assert project_model_for("rexnet_200.a.b") == "ReXNet_2_0"
    assert project_model_for(None) is None and project_model_for(["dla34"]) is None


def test_ucbdrive_projections_of_non_leaf_trees_are_what_tells_dla_layouts_apart():
    base = ["base_layer.0.weight", "level0.0.weight", "level1.0.weight", "level5.root.conv.weight"]
    leaf = ["level2.project.0.weight", "level2.tree1.conv1.weight"]  # a leaf tree: timm has it too
    nonleaf_root = ["level3.project.0.weight", "level3.tree1.root.conv.weight"]
    nonleaf_tree = ["level4.project.0.weight", "level4.tree1.tree1.conv1.weight"]
    assert _nonleaf_projections(base + leaf) == []
    assert _nonleaf_projections(base + leaf + nonleaf_root) == ["level3.project.0.weight"]
    assert _nonleaf_projections(iter(base + nonleaf_tree)) == ["level4.project.0.weight"]
    assert detect_timm_dla(base + leaf) and not detect_timm_dla(base + leaf + nonleaf_root)
    assert not detect_timm_dla(base[1:] + leaf)  # every required key must be there
    assert detect_timm_rexnet(["stem.conv.weight", "features.0.conv_dw.conv.weight"])
    assert not detect_timm_rexnet(["stem.conv.weight", "features.0.conv.weight"])
    assert not detect_timm_rexnet(["features.0.conv_dw.conv.weight"])


@pytest.mark.parametrize("timm_tag,clovaai_tag", [("timm_rexnet_100", "rexnet_1_0"), ("timm_rexnet_130", "rexnet_1_3")])
def test_the_timm_rexnet_module_table_pairs_the_two_manifests(timm_tag, clovaai_tag):
    """The table is built when the module is imported; built again here, block by block, it must pair timm's
    modules with clovaai's exactly as the reference manifests list them (same layers, same order)."""
    import json
    from ppcls.arch.convert.timm_layouts import _REXNET_BLOCKS, _rexnet_block_map, _timm_rexnet_modules

    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    keys = []
    for folder, tag in (("interop", timm_tag), ("alignment", clovaai_tag)):
        with open(os.path.join(fixtures, folder, f"{tag}.json")) as f:
            keys.append([e["key"].rpartition(".")[0] for e in json.load(f)["manifest"]])
    pairs = dict(zip(*keys))
    table = _timm_rexnet_modules()
    assert {m: table[m] for m in pairs} == pairs and set(table) == set(pairs)
    blocks = {}
    for index in range(len(_REXNET_BLOCKS)):
        blocks.update(_rexnet_block_map(index))
    assert blocks == {m: t for m, t in pairs.items() if not m.startswith(("stem.", "head."))
                      and not m.startswith(f"features.{len(_REXNET_BLOCKS)}.")}


def test_registering_a_new_name_creates_its_layout_table():
    name = "TinyConvertFresh"
    assert name not in CONVERTERS
    rules = Rules("torch")
    try:
        register_rules([name], rules, layout="timm")
        assert layouts_of(name) == {"timm": rules}
    finally:
        CONVERTERS._entries.pop(name, None)


def test_convert_checkpoint_takes_the_layout_asked_for_and_names_a_bad_model_option(tmp_path, registries, monkeypatch):
    register_rules([registries], Rules("torch"))
    register_rules([registries], Rules("torch", rename=lambda k: k[4:] if k.startswith("old.") else None),
                   layout="prefixed")
    register_rules([registries], Rules("torch", rename=lambda k: k[4:] if k.startswith("new.") else None,
                                       detect=lambda keys: all(k.startswith("new.") for k in keys)), layout="marked")
    src = {"old." + k: v for k, v in torch_state().items()}
    np.savez(tmp_path / "p.npz", **src)
    with pytest.raises(ConversionError, match="unexpected"):  # the first layout: no detector claims these keys
        convert_checkpoint(registries, str(tmp_path / "p.npz"), str(tmp_path / "a"))
    dst, count, _ = convert_checkpoint(registries, str(tmp_path / "p.npz"), str(tmp_path / "b"), layout="prefixed")
    assert count == 8 and os.path.isfile(dst)
    np.savez(tmp_path / "m.npz", **{"new." + k: v for k, v in torch_state().items()})
    dst, count, _ = convert_checkpoint(registries, str(tmp_path / "m.npz"), str(tmp_path / "m"))  # recognised
    assert count == 8 and os.path.isfile(dst)
    # the CLI's --class_num for a model without that option: the culprit is named as an Arch option
    monkeypatch.setitem(MODELS._entries, registries, lambda width=4: Tiny())
    with pytest.raises(ConfigError, match=r"^Arch\.class_num: unknown option for TinyConvertNet"):
        convert_checkpoint(registries, str(tmp_path / "p.npz"), str(tmp_path / "c"), {"class_num": 5})


def test_shared_keys_anywhere_in_the_file_and_many_conflicts():
    src = torch_state()
    # the second source of conv.weight comes first in the file, before the rest of the keys
    shared = {"conv.weight": src["conv.weight"], "copy.weight": src["conv.weight"].copy(),
              **{k: v for k, v in src.items() if k != "conv.weight"}}
    rename = (lambda k: "conv.weight" if k == "copy.weight" else None)
    state, _ = convert_state_dict(Tiny(), shared, Rules("torch", rename=rename))
    assert_state(state, expected_state(src))

    class Wide(nn.Layer):
        def __init__(self, n):
            super().__init__()
            self.items = nn.LayerList([nn.Linear(1, 1, bias_attr=False) for _ in range(n)])

    def conflicts(n):
        """n parameters, each given twice with different values (a.<i> and b.<i>)."""
        keys = {f"a.{i}": np.zeros((1, 1), np.float32) for i in range(n)}
        keys.update({f"b.{i}": np.ones((1, 1), np.float32) for i in range(n)})
        rules = Rules("torch", rename=lambda k: f"items.{k[2:]}.weight")
        with pytest.raises(ConversionError) as e:
            convert_state_dict(Wide(n), keys, rules)
        return str(e.value)
    shown = "; ".join(f"a.{i} and b.{i} (both -> items.{i}.weight) differ" for i in range(10))
    assert conflicts(11) == f"checkpoint does not fit Wide: conflicting 11: {shown}"
    assert conflicts(2) == ("checkpoint does not fit Wide: conflicting 2: a.0 and b.0 (both -> items.0.weight) "
                            "differ; a.1 and b.1 (both -> items.1.weight) differ")


def test_twenty_mis_shaped_keys_are_listed_without_an_ellipsis():
    class Wide(nn.Layer):
        def __init__(self, n):
            super().__init__()
            self.items = nn.LayerList([nn.Linear(1, 1, bias_attr=False) for _ in range(n)])

    bad = {f"items.{i}.weight": np.zeros((1, 2), np.float32) for i in range(20)}
    with pytest.raises(ConversionError) as e:
        convert_state_dict(Wide(20), bad, Rules("torch"))
    shown = "; ".join(f"items.{i}.weight [1, 2] -> items.{i}.weight [1, 1]" for i in range(20))
    assert str(e.value) == f"checkpoint does not fit Wide: mis-shaped 20: {shown}"
