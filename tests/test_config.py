import os
import subprocess
import sys

import pytest
import yaml

from engine_utils import ROOT, run_tool, tiny_config
from ppcls.schema import get_config
from ppcls.utils.config import apply_override, load_yaml_with_bases, parse_value, translate_legacy
from ppcls.utils.errors import ConfigError


def write(path, data):
    with open(path, "w") as f:
        if isinstance(data, str):
            f.write(data)
        else:
            yaml.safe_dump(data, f)
    return str(path)


def test_base_inheritance_later_files_and_overrides_win(tmp_path):
    a = write(tmp_path / "a.yaml", {"Global": {"epochs": 1, "print_batch_step": 3}, "Arch": {"name": "ResNet18"}})
    b = write(tmp_path / "b.yaml", {"Global": {"epochs": 2}})
    c = write(tmp_path / "c.yaml", {"_BASE_": ["a.yaml", "b.yaml"], "Global": {"seed": 5}})
    cfg = load_yaml_with_bases(c)
    assert cfg["Global"] == {"epochs": 2, "print_batch_step": 3, "seed": 5}
    cfg = get_config(c, ["Global.epochs=9"])
    assert cfg["Global"]["epochs"] == 9


def test_changing_component_name_replaces_section(tmp_path):
    path, _ = tiny_config(tmp_path)
    cfg = get_config(path)
    assert cfg["Optimizer"]["lr"] == {"name": "Cosine", "learning_rate": 0.02, "warmup_epoch": 1}


@pytest.mark.parametrize("text,value", [("null", None), ("true", True), ("False", False), ("10", 10),
                                        ("0.5", 0.5), ("[30, 60]", [30, 60]), ("gpu", "gpu"),
                                        ("2*3", "2*3"), ("__import__('os').system('x')", "__import__('os').system('x')"),
                                        ("1.0/255.0", "1.0/255.0")])
def test_override_values_are_yaml_never_code(text, value):
    assert parse_value(text) == value


def test_override_code_is_not_run_and_type_is_checked(tmp_path):
    path, _ = tiny_config(tmp_path)
    marker = tmp_path / "pwned"
    with pytest.raises(ConfigError, match="Global.epochs: expected int"):
        get_config(path, [f"Global.epochs=__import__('os').mkdir('{marker}')"])
    assert not marker.exists()


def test_override_list_index_and_op_kwargs(tmp_path):
    path, _ = tiny_config(tmp_path)
    cfg = get_config(path, ["DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=24",
                            "DataLoader.Train.dataset.transform_ops.2.flip_code=0"])
    ops = cfg["DataLoader"]["Train"]["dataset"]["transform_ops"]
    assert ops[1]["RandCropImage"]["size"] == 24 and ops[2]["RandFlipImage"]["flip_code"] == 0
    with pytest.raises(ConfigError, match="index 9 out of range"):
        get_config(path, ["DataLoader.Train.dataset.transform_ops.9.size=1"])


def test_pretrained_model_flat_override_with_modern_config(tmp_path):
    path, _ = tiny_config(tmp_path)
    cfg = get_config(path, ["pretrained_model=some/prefix", "load_static_weights=False"])
    assert cfg["Global"]["pretrained_model"] == "some/prefix"
    with pytest.raises(ConfigError, match="static-graph"):
        get_config(path, ["load_static_weights=True"])


LEGACY = """
mode: 'train'
ARCHITECTURE:
    name: 'ResNet18'
pretrained_model: ""
model_save_dir: "./output/"
classes_num: 3
total_images: 1281167
save_interval: 1
validate: True
valid_interval: 1
epochs: 120
topk: 5
image_shape: [3, 224, 224]
use_mix: True
ls_epsilon: 0.1
LEARNING_RATE:
    function: 'CosineWarmup'
    params:
        lr: 0.04
OPTIMIZER:
    function: 'Momentum'
    params:
        momentum: 0.9
    regularizer:
        function: 'L2'
        factor: 0.000100
TRAIN:
    batch_size: 512
    num_workers: 4
    file_list: "{data}/train_list.txt"
    data_dir: "{data}"
    shuffle_seed: 0
    transforms:
        - DecodeImage:
            to_rgb: True
            to_np: False
            channel_first: False
        - RandCropImage:
            size: 224
            interpolation: 2
        - RandFlipImage:
            flip_code: 1
        - NormalizeImage:
            scale: 1./255.
            mean: [0.485, 0.456, 0.406]
            std: [0.229, 0.224, 0.225]
            order: ''
        - ToCHWImage:
    mix:
        - MixupOperator:
            alpha: 0.2
VALID:
    batch_size: 128
    num_workers: 0
    file_list: "{data}/val_list.txt"
    data_dir: "{data}"
    shuffle_seed: 0
    transforms:
        - DecodeImage:
            to_rgb: True
            to_np: False
            channel_first: False
        - ResizeImage:
            resize_short: 256
            interpolation: 2
        - CropImage:
            size: 224
        - NormalizeImage:
            scale: 1.0/255.0
            mean: [0.485, 0.456, 0.406]
            std: [0.229, 0.224, 0.225]
            order: ''
        - ToCHWImage:
"""


def test_legacy_schema_translates(tmp_path):
    _, data = tiny_config(tmp_path)
    path = write(tmp_path / "legacy.yaml", LEGACY.format(data=data))
    cfg = get_config(path, world_size=4)
    assert cfg["Arch"] == {"name": "ResNet18", "class_num": 3}
    assert cfg["Loss"]["Train"] == [{"CELoss": {"weight": 1.0, "epsilon": 0.1}}]
    lr = cfg["Optimizer"]["lr"]
    assert lr == {"name": "Cosine", "learning_rate": 0.04, "warmup_epoch": 5}
    assert cfg["Optimizer"]["regularizer"] == {"name": "L2", "coeff": 0.0001}
    train = cfg["DataLoader"]["Train"]
    assert train["sampler"]["batch_size"] == 128  # 512 global over 4 workers
    ops = train["dataset"]["transform_ops"]
    assert [next(iter(o)) for o in ops] == ["DecodeImage", "RandCropImage", "RandFlipImage", "NormalizeImage"]
    assert "to_np" not in ops[0]["DecodeImage"] and ops[1]["RandCropImage"]["interpolation"] == 2
    assert train["dataset"]["batch_transform_ops"] == [{"MixupOperator": {"alpha": 0.2}}]
    assert cfg["DataLoader"]["Eval"]["sampler"]["batch_size"] == 32
    assert cfg["Metric"]["Eval"] == [{"TopkAcc": {"topk": [1, 5]}}]


def test_legacy_piecewise_values():
    cfg = translate_legacy({"ARCHITECTURE": {"name": "ResNet18"},
                            "LEARNING_RATE": {"function": "Piecewise",
                                              "params": {"lr": 0.1, "decay_epochs": [30, 60, 90], "gamma": 0.1}}})
    lr = cfg["Optimizer"]["lr"]
    assert lr["decay_epochs"] == [30, 60, 90]
    assert lr["values"] == pytest.approx([0.1, 0.01, 0.001, 0.0001])


@pytest.mark.parametrize("override,pattern", [
    ("Global.epoch=3", r"Global.epoch: unknown key \(did you mean 'epochs'\?\)"),
    ("Global.epochs=ten", r"Global.epochs: expected int, got str"),
    ("Arch.name=ResNet81", r"Arch.name: unknown model 'ResNet81' \(did you mean 'ResNet18'\?\)"),
    ("DataLoader.Train.dataset.transform_ops.1={RandCropImag: {size: 3}}",
     r"transform_ops\[1\]: unknown data op 'RandCropImag' \(did you mean 'RandCropImage'\?\)"),
    ("Optimizer.lr.learning_rat=0.1", r"Optimizer.lr.learning_rat: unknown option for Cosine \(did you mean 'learning_rate'\?\)"),
    ("Optimizer.name=Momentun", r"Optimizer.name: unknown optimizer 'Momentun' \(did you mean 'Momentum'\?\)"),
    ("Loss.Train=[{CELos: {weight: 1.0}}]", r"Loss.Train\[0\]: unknown loss 'CELos' \(did you mean 'CELoss'\?\)"),
    ("Metric.Eval=[{TopkAcc: {topK: [1]}}]", r"TopkAcc.topK: unknown option \(did you mean 'topk'\?\)"),
    ("Globl.epochs=1", r"Globl: unknown section \(did you mean 'Global'\?\)"),
])
def test_validation_errors_name_the_key(tmp_path, override, pattern):
    path, _ = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match=pattern):
        get_config(path, [override])


def test_missing_files_are_named(tmp_path):
    path, _ = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match="config file not found"):
        get_config(str(tmp_path / "nope.yaml"))
    from ppcls.engine import Engine
    cfg = get_config(path, [f"DataLoader.Train.dataset.cls_label_path={tmp_path}/missing.txt"])
    with pytest.raises(ConfigError, match="cls_label_path: file not found"):
        Engine(cfg, "train")


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = write(tmp_path / "bad.yaml", "Global:\n  epochs: 3\n   seed: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: malformed YAML"):
        get_config(bad)


@pytest.mark.parametrize("args", [["-o", "Global.epoch=1"], ["-o", "Arch.name=DLA999"], ["-o", "Global.epochs=1;rm"]])
def test_cli_errors_are_one_line_exit_2(tmp_path, args):
    path, _ = tiny_config(tmp_path)
    r = run_tool("train.py", "-c", path, *args)
    assert r.returncode == 2, r.stderr
    err = [l for l in r.stderr.strip().splitlines() if not l.startswith(("/", " ", "warnings.warn"))]
    assert len(err) == 1 and err[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
