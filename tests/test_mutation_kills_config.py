"""release/2.0 (legacy) config translation, checked whole, which tests/test_config.py checks only in parts;
found by mutation testing (bash tests/mutation.sh utils/config.py)."""
import os

import pytest

from ppcls.utils import config
from ppcls.utils.config import translate_legacy
from ppcls.utils.errors import ConfigError

FULL = {
    "mode": "train", "ARCHITECTURE": {"name": "ResNet50", "params": {"dropout": 0.1}},
    "pretrained_model": "pre.pdparams", "checkpoints": "ck/ep3", "model_save_dir": "out/", "classes_num": 10,
    "total_images": 1000, "save_interval": 2, "validate": False, "valid_interval": 3, "epochs": 7, "topk": 3,
    "image_shape": [3, 32, 32], "use_mix": True, "ls_epsilon": 0.2, "use_gpu": False, "print_interval": 4,
    "use_ema": True, "ema_decay": 0.99, "use_aa": True, "use_fp16": True, "last_epoch": 3, "fuse_bn": True,
    "use_dali": False,
    "LEARNING_RATE": {"function": "Linear",
                      "params": {"lr": 0.2, "end_lr": 0.01, "epochs": 7, "step_each_epoch": 5, "power": 2.0}},
    "OPTIMIZER": {"function": "AdamW", "params": {"beta1": 0.8},
                  "regularizer": {"function": "L1Decay", "factor": 0.001}},
    "TRAIN": {"batch_size": 8, "num_workers": 2, "file_list": "train.txt", "data_dir": "data/", "shuffle_seed": 1,
              "transforms": [{"DecodeImage": {"to_rgb": True, "to_np": False}}, {"RandFlipImage": {"flip_code": 1}},
                             {"ToCHWImage": None}, {"NormalizeImage": None}],
              "mix": [{"MixupOperator": {"alpha": 0.2}}]},
    "VALID": {"batch_size": 4, "transforms": [{"ResizeImage": {"resize_short": 36}}],
              "mix": [{"CutmixOperator": {}}]},
}


def loader(root, labels, ops, batch, train, workers):
    return {"dataset": {"name": "ImageNetDataset", "image_root": root, "cls_label_path": labels, "transform_ops": ops},
            "sampler": {"name": "DistributedBatchSampler", "batch_size": batch, "drop_last": train, "shuffle": train},
            "loader": {"num_workers": workers, "use_shared_memory": True}}


def test_every_key_of_a_full_legacy_config(ppcls_warnings):
    train = loader("data/", "train.txt", [{"DecodeImage": {"to_rgb": True}}, {"RandFlipImage": {"flip_code": 1}},
                                                   {"AutoAugment": {}}, {"NormalizeImage": {}}], 4, True, 2)
    train["dataset"]["batch_transform_ops"] = [{"MixupOperator": {"alpha": 0.2}}]
    assert translate_legacy(FULL, world_size=2) == {
        "Global": {"pretrained_model": "pre.pdparams", "checkpoints": "ck/ep3", "output_dir": "out/", "epochs": 7,
                   "save_interval": 2, "eval_during_train": False, "eval_interval": 3, "image_shape": [3, 32, 32],
                   "print_batch_step": 4, "device": "cpu"},
        "Arch": {"name": "ResNet50", "class_num": 10, "dropout": 0.1},
        "AMP": {"use_amp": True, "level": "O1"},
        "Loss": {"Train": [{"CELoss": {"weight": 1.0, "epsilon": 0.2}}], "Eval": [{"CELoss": {"weight": 1.0}}]},
        "Optimizer": {"name": "AdamW", "lr": {"name": "Linear", "learning_rate": 0.2, "end_lr": 0.01, "power": 2.0},
                      "beta1": 0.8, "regularizer": {"name": "L1", "coeff": 0.001}},
        "Metric": {"Train": [{"TopkAcc": {"topk": [1, 3]}}], "Eval": [{"TopkAcc": {"topk": [1, 3]}}]},
        "DataLoader": {"Train": train,
                       "Eval": loader("./dataset/ILSVRC2012/", None, [{"ResizeImage": {"resize_short": 36}}],
                                      2, False, 4)},
        "EMA": {"decay": 0.99},
    }
    suffix = ": accepted for compatibility; it has no effect ("
    assert ppcls_warnings == [
        "total_images" + suffix + "the iterations per epoch come from the file list)",
        "last_epoch" + suffix + "a resumed run restores its epoch from the checkpoint)",
        "fuse_bn" + suffix + "Paddle Inference fuses BatchNorm at export)",
        "TRAIN.shuffle_seed" + suffix + "shuffling follows Global.seed)",
    ]


def test_the_defaults_of_a_minimal_legacy_config(ppcls_warnings):
    assert translate_legacy({"ARCHITECTURE": {"name": "ResNet18"}}) == {
        "Global": {"pretrained_model": None, "checkpoints": None, "output_dir": "./output/", "epochs": 120,
                   "save_interval": 1, "eval_during_train": True, "eval_interval": 1, "image_shape": [3, 224, 224],
                   "print_batch_step": 10},
        "Arch": {"name": "ResNet18", "class_num": 1000},
        "Loss": {"Train": [{"CELoss": {"weight": 1.0}}], "Eval": [{"CELoss": {"weight": 1.0}}]},
        "Optimizer": {"name": "Momentum", "lr": {"name": "Piecewise", "decay_epochs": [30, 60, 90],
                                                 "values": pytest.approx([0.1, 0.01, 0.001, 0.0001])}},
        "Metric": {"Train": [{"TopkAcc": {"topk": [1, 5]}}], "Eval": [{"TopkAcc": {"topk": [1, 5]}}]},
    }
    assert ppcls_warnings == []
    out = translate_legacy({"ARCHITECTURE": {"name": "ResNet18"}, "use_ema": True, "use_gpu": True,
                            "TRAIN": {"mix": [{"MixupOperator": {}}]}})
    assert out["EMA"] == {"decay": 0.9999} and out["Global"]["device"] == "gpu"
    assert out["DataLoader"]["Train"] == loader("./dataset/ILSVRC2012/", None, [], 256, True, 4)  # no use_mix


@pytest.mark.parametrize("lr,expected", [
    ({"function": "Cosine", "params": {"lr": 0.4}}, {"name": "Cosine", "learning_rate": 0.4}),
    ({"function": "CosineWarmup", "params": {"lr": 0.4}}, {"name": "Cosine", "learning_rate": 0.4, "warmup_epoch": 5}),
    ({"function": "CosineWarmup", "params": {"warmup_epoch": 2}}, {"name": "Cosine", "learning_rate": 0.1, "warmup_epoch": 2}),
    ({"function": "Linear"}, {"name": "Linear", "learning_rate": 0.1, "end_lr": 0.0}),
    ({"params": {"lr": 1.0, "gamma": 0.5, "decay_epochs": [2]}}, {"name": "Piecewise", "decay_epochs": [2], "values": [1.0, 0.5]}),
])
def test_legacy_learning_rates(lr, expected):
    assert translate_legacy({"ARCHITECTURE": {"name": "R"}, "LEARNING_RATE": lr})["Optimizer"]["lr"] == expected


def test_autoaugment_goes_after_the_flip_or_last_and_never_twice():
    def ops(transforms):
        cfg = {"ARCHITECTURE": {"name": "R"}, "use_aa": True, "TRAIN": {"transforms": transforms}}
        return [next(iter(op)) for op in translate_legacy(cfg)["DataLoader"]["Train"]["dataset"]["transform_ops"]]
    assert ops([{"DecodeImage": {}}, {"RandCropImage": {}}]) == ["DecodeImage", "RandCropImage", "AutoAugment"]
    assert ops([{"AutoAugment": {}}, {"RandFlipImage": {}}]) == ["AutoAugment", "RandFlipImage"]
    assert "DataLoader" not in translate_legacy({"ARCHITECTURE": {"name": "R"}, "use_aa": True})


@pytest.mark.parametrize("cfg,message", [
    ({"ARCHITECTURE": {"name": "R"}, "epoch": 3}, "epoch: unknown key in a release/2.0 config (did you mean 'epochs'?)"),
    ({"ARCHITECTURE": {}}, "ARCHITECTURE.name is required"),
    ({"ARCHITECTURE": {"name": "R"}, "load_static_weights": True},
     "load_static_weights=True: static-graph weights are not supported; convert them to dygraph .pdparams first"),
    ({"ARCHITECTURE": {"name": "R"}, "use_distillation": True},
     "use_distillation=True: distillation training is not part of this toolkit"),
    ({"ARCHITECTURE": {"name": "R"}, "mode": "infer"}, "mode: 'train' or 'valid', got 'infer'"),
    ({"ARCHITECTURE": {"name": "R"}, "TRAIN": {"batch_size": 6}}, "TRAIN.batch_size=6 (global) does not divide over 4 workers"),
    ({"ARCHITECTURE": {"name": "R"}, "VALID": {"transforms": [{"A": {}, "B": {}}]}},
     "VALID.transforms: each transform must be a one-key mapping, got {'A': {}, 'B': {}}"),
    ({"ARCHITECTURE": {"name": "R"}, "LEARNING_RATE": {"function": "Exp"}},
     "LEARNING_RATE.function: 'Exp' has no modern equivalent here (supported: Piecewise, Cosine, CosineWarmup, Linear)"),
])
def test_legacy_errors(cfg, message):
    with pytest.raises(ConfigError) as e:
        translate_legacy(cfg, world_size=4)
    assert str(e.value) == message


def test_valid_and_eval_modes_are_accepted_and_an_unknown_loader_key_is_named():
    for mode in ("valid", "eval"):
        assert translate_legacy({"ARCHITECTURE": {"name": "R"}, "mode": mode})["Arch"]["name"] == "R"
    with pytest.raises(ConfigError, match=r"^TRAIN\.batchsize: unknown key in a release/2\.0 config .*batch_size"):
        translate_legacy({"ARCHITECTURE": {"name": "R"}, "TRAIN": {"batchsize": 8}})


# -- files, merging, overrides -------------------------------------------------------------------------------
def test_malformed_yaml_is_named_by_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("Global:\n  epochs: 2\n  x: [1, 2\n")
    with pytest.raises(ConfigError) as e:
        config.load_yaml_with_bases(str(path))
    assert str(e.value).startswith(f"{path}:4:1: malformed YAML (")


def test_a_changed_name_replaces_a_section_and_the_same_name_merges_it():
    base = {"Optimizer": {"name": "Momentum", "momentum": 0.9, "lr": {"name": "Cosine", "learning_rate": 0.1}}}
    assert config.merge(base, {"Optimizer": {"name": "Adam", "beta1": 0.8}}) == {"Optimizer": {"name": "Adam", "beta1": 0.8}}
    assert config.merge(base, {"Optimizer": {"name": "Momentum", "lr": {"learning_rate": 0.2}}}) == {
        "Optimizer": {"name": "Momentum", "momentum": 0.9, "lr": {"name": "Cosine", "learning_rate": 0.2}}}


def test_bases_missing_and_looping_are_named(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("_BASE_: missing.yaml\n")
    with pytest.raises(ConfigError, match=f"^{a}: _BASE_ file not found: missing.yaml$"):
        config.load_yaml_with_bases(str(a))
    a.write_text("_BASE_: b.yaml\nx: 1\n")
    b.write_text("_BASE_: a.yaml\ny: 2\n")
    with pytest.raises(ConfigError, match=r"_BASE_ inheritance loop$"):
        config.load_yaml_with_bases(str(a))


@pytest.mark.parametrize("value", ["True", "true"])
def test_load_static_weights_true_is_refused_in_any_spelling(value):
    with pytest.raises(ConfigError, match=r"^-o load_static_weights=True: static-graph weights are not supported; "
                                          r"convert them to dygraph \.pdparams first$"):
        config.apply_override({}, f"load_static_weights={value}")
    assert config.apply_override({"a": 1}, "load_static_weights=False") == {"a": 1}


def test_an_override_through_a_non_section_names_the_path():
    with pytest.raises(ConfigError, match=r"^-o Global\.epochs\.x\.y: 'Global\.epochs' is not a section$"):
        config.apply_override({"Global": {"epochs": 3}}, "Global.epochs.x.y=1")


def test_installed_configs_are_found_from_any_directory_in_every_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # none of these paths exists here
    installed = config.INSTALLED_CONFIGS
    dla = os.path.join(installed, "ImageNet", "DLA", "DLA34.yaml")
    for path in ("ppcls/configs/ImageNet/DLA/DLA34.yaml", "configs/ImageNet/DLA/DLA34.yaml", "ImageNet/DLA/DLA34.yaml",
                 "configs/DLA/DLA34.yaml", "DLA/DLA34.yaml", "ppcls/configs/DLA/DLA34.yaml"):
        assert config.resolve_config_path(path) == dla, path
    cifar = os.path.join(installed, "quick_start", "professional", "AttentionNet56_CIFAR10.yaml")
    assert config.resolve_config_path("ppcls/configs/ResidualAttention/AttentionNet56_CIFAR10.yaml") == cifar
    with pytest.raises(ConfigError, match=r"^config file not found: DLA/DLA0\.yaml \(nor among the installed configs in "):
        config.resolve_config_path("DLA/DLA0.yaml")


def test_a_quoted_true_string_still_refuses_static_weights_and_values_keep_their_equals():
    for value in ("'True'", "'true'"):
        with pytest.raises(ConfigError, match=r"^-o load_static_weights=True: "):
            config.apply_override({}, f"load_static_weights={value}")
    assert config.apply_override({}, "Global.name=a=b") == {"Global": {"name": "a=b"}}


def test_a_bad_index_deep_in_a_list_names_the_path_to_it():
    cfg = {"D": {"ops": [{"A": {"x": 1}}]}}
    with pytest.raises(ConfigError, match=r"^-o D\.ops\.k: 'k' must be a list index \(0\.\.0\)$"):
        config.apply_override(cfg, "D.ops.k.x=2")


def test_int_passes_for_float_and_errors_name_the_type():
    config.check_type("a", 3, float)
    config.check_type("a", 3, (float, str))
    with pytest.raises(ConfigError, match=r"^a: expected float or null, got str 'x'$"):
        config.check_type("a", "x", (float, type(None)))
    with pytest.raises(ConfigError, match=r"^a: expected int, got bool True$"):
        config.check_type("a", True, int)


def test_a_legacy_override_of_a_value_with_equals(tmp_path):
    path = tmp_path / "legacy.yaml"
    path.write_text("ARCHITECTURE: {name: ResNet18}\nTRAIN: {batch_size: 8}\n")
    cfg = config.load_config(str(path), ["TRAIN.file_list=a=b.txt", "Global.epochs=3"], world_size=1)
    assert cfg["DataLoader"]["Train"]["dataset"]["cls_label_path"] == "a=b.txt"
    assert cfg["Global"]["epochs"] == 3


def test_dump_config_ends_each_section_with_60_dashes():
    assert config.dump_config({"A": {"b": 1}, "c": [{"d": 2}], "e": 3}) == [
        "A : ", "    b : 1", "-" * 60, "c : ", "    d : 2", "-" * 60, "e : 3", "-" * 60]
