"""The front door: the package's layers, the ppcls command and the Python API, the schema's keys,
exit codes, installed configs and the release/2.0 overrides."""
import ast
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from engine_utils import ROOT, run_ppcls, run_tool, tiny_config

PKG = os.path.join(ROOT, "ppcls")

# what each part of the package may import: itself and the layers below it
LAYERS = {"utils": 0, "arch": 1, "data": 1, "loss": 1, "metric": 1, "optimizer": 1,
          "inference": 2, "schema": 2, "visual": 2, "engine": 3, "benchmark": 3, "serving": 3, "cli": 4,
          "__main__": 4, "__init__": 5, "version": 0,
          # the adapters to PaddleDetection and PaddleSeg: above the models, data and engine they plug in;
          # to PaddleX: above the exports it registers
          "det": 3, "seg": 3, "paddlex": 3}
SIDEWAYS_FORBIDDEN = {"arch", "data", "loss", "metric", "optimizer"}  # level 1: independent of each other


def _part(module):
    """'ppcls.arch.backbone.dla' -> 'arch'"""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path, module):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("ppcls"):
                    yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("ppcls"):
                if target == "ppcls":  # from . import x at the top: x is the part
                    for a in node.names:
                        yield node.lineno, f"ppcls.{a.name}"
                else:
                    yield node.lineno, target


def _package_modules():
    for root, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield path, rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def test_imports_point_down():
    upward = []
    for path, module in _package_modules():
        own = _part(module) if module != "ppcls" else "__init__"
        for lineno, target in _imports(path, module):
            other = _part(target)
            if other not in LAYERS:
                upward.append(f"{path}:{lineno}: {target}: part '{other}' has no layer")
            elif LAYERS[other] > LAYERS[own] or (own in SIDEWAYS_FORBIDDEN and other in SIDEWAYS_FORBIDDEN
                                                   and other != own):
                upward.append(f"{path}:{lineno}: {module} ({own}) imports {target} ({other})")
    assert not upward, "\n".join(upward)


def test_the_deploy_predictor_loads_no_training_code(tmp_path):
    from ppcls.arch import build_model
    from ppcls.inference.export import export_model
    model_dir = export_model(build_model({"name": "DLA46_c", "class_num": 3}), str(tmp_path / "m"), [3, 32, 32],
                             meta={"model": "DLA46_c", "PreProcess": {"transform_ops": [
                                 {"NormalizeImage": {"scale": 0.00392, "mean": [0.5] * 3, "std": [0.5] * 3, "order": ""}}]}})
    import cv2
    cv2.imwrite(str(tmp_path / "a.jpg"), np.random.RandomState(0).randint(0, 255, (32, 32, 3)).astype(np.uint8))
    probe = f"""
import runpy, sys
sys.argv = ["predict_cls.py", "-c", {os.path.join(ROOT, 'deploy', 'configs', 'inference_cls.yaml')!r},
            "-o", "Global.inference_model_dir={model_dir}", "-o", "Global.infer_imgs={tmp_path / 'a.jpg'}"]
try:
    runpy.run_path({os.path.join(ROOT, 'deploy', 'python', 'predict_cls.py')!r}, run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
training = sorted(m for m in sys.modules if m.startswith(("ppcls.engine", "ppcls.loss", "ppcls.optimizer")))
print("TRAINING_MODULES", training)
"""
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "class id(s):" in r.stdout
    assert "TRAINING_MODULES []" in r.stdout, r.stdout[-500:]


def test_one_registry_class_for_everything_looked_up_by_name():
    from ppcls.arch import MODELS
    from ppcls.arch.convert import CONVERTERS
    from ppcls.data.dataset import DATASETS
    from ppcls.data.preprocess import BATCH_OPS, OPS
    from ppcls.loss import LOSSES
    from ppcls.metric import METRICS
    from ppcls.optimizer import LR_SCHEDULES, OPTIMIZERS
    from ppcls.utils.registry import Registry
    regs = [MODELS, CONVERTERS, DATASETS, OPS, BATCH_OPS, LOSSES, METRICS, LR_SCHEDULES, OPTIMIZERS]
    assert all(type(r) is Registry for r in regs)
    assert "Cosine" in LR_SCHEDULES and "AdamW" in OPTIMIZERS and "DLA34" in CONVERTERS
    from ppcls.utils.errors import ConfigError
    with pytest.raises(ConfigError, match=r"Optimizer.lr.name: unknown schedule 'Cosin' \(did you mean 'Cosine'\?\)"):
        from ppcls.optimizer import validate_lr
        validate_lr({"name": "Cosin", "learning_rate": 0.1})


def test_models_are_real_definitions_with_cards():
    from ppcls.arch import CARDS, MODELS
    from ppcls.arch import backbone
    for name in MODELS.names():
        assert getattr(backbone, name) is MODELS.get(name), name  # a resolvable, named definition
        assert name in backbone.__all__ and name in CARDS, name
        factory = MODELS.get(name)
        assert factory.__name__ == name and (factory.__doc__ or "").strip(), name
    for path, _ in _package_modules():
        assert "globals()" not in open(path, encoding="utf-8").read(), path


@pytest.mark.parametrize("name", ["DLA46_c", "ReXNet_1_0", "RLA_MobileNetV2", "AttentionNet56_CIFAR", "ResNet18",
                                  pytest.param("*", marks=pytest.mark.slow)])
def test_model_cards_equal_the_built_models(name):
    from ppcls.arch import CARDS, build_model, list_models
    from ppcls.utils.model_stats import count_macs, count_params
    for n in (list_models() if name == "*" else [name]):
        card = CARDS[n]
        m = build_model({"name": n})
        assert (count_params(m), count_macs(m, (1, 3, card.input_size, card.input_size))) == (card.params, card.macs), n


def test_python_api():
    import ppcls
    assert ppcls.list_models("dla4*") == ["DLA46_c", "DLA46x_c"]
    assert "RLA_ECANet50" in ppcls.list_models("*ECA*") and len(ppcls.list_models()) >= 50
    m = ppcls.create_model("ReXNet_1_0", class_num=7, return_stages=None)
    assert m(paddle.randn([1, 3, 64, 64])).shape == [1, 7]
    info = ppcls.model_info("DLA34")
    assert (info["params"], info["macs"], info["family"]) == (15742104, 3060043776, "DLA")
    assert [s["stride"] for s in info["stages"]] == [1, 2, 4, 8, 16, 32]
    assert [w["name"] for w in info["weights"]] == ["DLA34.paddleclas_in1k", "DLA34.timm_in1k", "DLA34.original"]
    assert info["weights"][2]["verified"] == "sha256 prefix" and info["weights"][0]["default"]
    small = ppcls.model_info("DLA34", input_size=64)
    assert small["params"] == 15742104 and small["macs"] < info["macs"]
    from ppcls.utils.errors import ConfigError
    with pytest.raises(ConfigError, match="did you mean 'DLA34'"):
        ppcls.create_model("DLA43")


def test_ppcls_command_models_and_errors():
    r = run_ppcls("models", "RLA_*MobileNet*")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [l for l in r.stdout.splitlines()[1:] if l.strip()]
    assert len(rows) == 4 and rows[0].split()[0] == "RLA_ECA_MobileNetV2"
    assert "original* (manual)" in r.stdout  # the authors' weights: a manual download
    r = run_ppcls("models", "--json")
    data = {row["name"]: row for row in json.loads(r.stdout)}
    assert data["DLA34"]["params"] == 15742104 and data["AttentionNet56_CIFAR"]["input_size"] == 32
    r = run_ppcls("models", "NoSuch*")
    assert r.returncode == 2 and r.stderr.startswith("error: no registered model matches")
    r = run_ppcls("flops", "-a", "DLA34", "--json")
    assert json.loads(r.stdout.strip().splitlines()[-1])["params"] == 15742104


def test_ppcls_train_equals_tools_train(tmp_path):
    path, _ = tiny_config(tmp_path, epochs=1, per_class=8, extra={"Global": {"eval_during_train": False}})
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    r = run_tool("train.py", "-c", path, "-o", f"Global.output_dir={a}")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_ppcls("train", "-c", path, "-o", f"Global.output_dir={b}", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    from ppcls.utils.save_load import load_state_file
    wa = load_state_file(os.path.join(a, "ResNet18", "latest.pdparams"))
    wb = load_state_file(os.path.join(b, "ResNet18", "latest.pdparams"))
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_ppcls_predict_needs_no_config(tmp_path):
    path, data = tiny_config(tmp_path)
    from ppcls.arch import build_model
    paddle.seed(3)
    model = build_model({"name": "DLA46_c", "class_num": 3})
    paddle.save(model.state_dict(), str(tmp_path / "w.pdparams"))
    img = sorted(os.listdir(os.path.join(data, "val")))[0]
    r = run_ppcls("predict", "--model", "DLA46_c", "--class-num", "3", "--pretrained", str(tmp_path / "w.pdparams"),
                  "--topk", "2", os.path.join(data, "val", img), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    line = [l for l in r.stdout.splitlines() if "class id(s):" in l]
    assert len(line) == 1 and img in line[0] and len(eval(line[0].split("class id(s): ")[1].split("]")[0] + "]")) == 2
    r = run_ppcls("predict", "--model", "DLA46_c", "--pretrained", "nope_tag", os.path.join(data, "val", img),
                  cwd=str(tmp_path))
    assert r.returncode == 2 and "is not a file, a folder, a URL or a known tag" in r.stderr
    assert "DLA46_c.paddleclas_in1k" in r.stderr


def test_installed_configs_are_found_from_anywhere(tmp_path, monkeypatch):
    from ppcls.schema import get_config
    from ppcls.utils.errors import ConfigError
    monkeypatch.chdir(tmp_path)
    assert get_config("DLA/DLA60.yaml")["Arch"]["name"] == "DLA60"
    assert get_config("configs/RLANet/RLA_ResNet50.yaml")["Arch"]["name"] == "RLA_ResNet50"
    with pytest.raises(ConfigError, match="config file not found: DLA/DLA61.yaml"):
        get_config("DLA/DLA61.yaml")


def test_every_schema_key_is_read_or_warned(tmp_path, caplog):
    from ppcls.schema import get_config
    from ppcls.utils.errors import ConfigError
    path, _ = tiny_config(tmp_path)
    # (Global.log_ranks and Global.iter_per_epoch are PaddleClas keys: tests/test_paddleclas_dropin.py)
    for gone in ("Global.nan_policy=skip", "Global.log_rank=0", "Global.iter_per_epochs=5", "DataLoader.Test={}"):
        with pytest.raises(ConfigError, match="unknown key"):
            get_config(path, [gone])
    import logging
    from ppcls.utils import config as config_module
    # the warning is once per process: start from a process that has not given it, whatever ran before
    config_module._warned.discard("Global.use_dali")
    logging.getLogger("ppcls").propagate = True
    try:
        with caplog.at_level(logging.WARNING, logger="ppcls"):
            get_config(path, ["Global.use_dali=True"])
            get_config(path, ["Global.use_dali=True"])
    finally:
        logging.getLogger("ppcls").propagate = False
    warned = [r.getMessage() for r in caplog.records if "Global.use_dali" in r.getMessage()]
    assert len(warned) == 1 and "accepted for compatibility; it has no effect" in warned[0], warned
    cfg = get_config(path)
    assert cfg["AMP"]["use_promote"] is False and cfg["Global"]["epochs"] == 2  # defaults resolved once


def test_decode_backend_pil_and_compat_keys():
    import cv2
    from ppcls.data.preprocess import OPS
    img = (np.random.RandomState(0).rand(20, 30, 3) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", img[:, :, ::-1])
    a = OPS["DecodeImage"](backend="cv2")(buf.tobytes())
    b = OPS["DecodeImage"](backend="pil")(buf.tobytes())
    np.testing.assert_array_equal(a, b)  # lossless PNG: both decoders agree exactly
    big = OPS["ResizeImage"](size=12, backend="pil")(a)
    assert big.shape == (12, 12, 3)
    from ppcls.utils.errors import ConfigError
    with pytest.raises(ConfigError, match="DecodeImage.backend: 'cv2' or 'pil'"):
        OPS["DecodeImage"](backend="turbo")


def test_sync_batch_norm_where_it_applies():
    from ppcls.arch import build_model
    from ppcls.engine.engine import sync_batch_norm
    model = build_model({"name": "DLA46_c", "class_num": 3})
    synced = sync_batch_norm(model, True, 2, "gpu")
    assert any(isinstance(layer, paddle.nn.SyncBatchNorm) for layer in synced.sublayers())
    cpu = sync_batch_norm(build_model({"name": "DLA46_c", "class_num": 3}), True, 2, "cpu")
    assert not any(isinstance(layer, paddle.nn.SyncBatchNorm) for layer in cpu.sublayers())


CONTRIB_STYLE = """
mode: 'train'
ARCHITECTURE:
    name: 'DLA60'
pretrained_model: ""
model_save_dir: "./output/DLA60_v1"
classes_num: 1000
total_images: 1281167
save_interval: 1
validate: True
valid_interval: 1
epochs: 120
topk: 5
image_shape: [3, 224, 224]
use_ema: True
ema_decay: 0.9999
use_aa: True
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
    file_list: "/dataset/public/ImageNetOrigin/list_train.txt"
    data_dir: "/dataset/public/ImageNetOrigin/train/"
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
{autoaugment}        - NormalizeImage:
            scale: 1./255.
            mean: [0.485, 0.456, 0.406]
            std: [0.229, 0.224, 0.225]
            order: ''
        - ToCHWImage:
VALID:
    batch_size: 128
    num_workers: 4
    file_list: "/dataset/public/ImageNetOrigin/list_val.txt"
    data_dir: "/dataset/public/ImageNetOrigin/val/"
    shuffle_seed: 0
    transforms:
        - DecodeImage:
            to_rgb: True
            to_np: False
            channel_first: False
        - ResizeImage:
            interpolation: 2
            resize_short: 256
        - CropImage:
            size: 224
        - NormalizeImage:
            scale: 1.0/255.0
            mean: [0.485, 0.456, 0.406]
            std: [0.229, 0.224, 0.225]
            order: ''
        - ToCHWImage:
"""


@pytest.mark.parametrize("listed", [True, False])
def test_legacy_flat_overrides_and_use_aa(tmp_path, listed):
    """A release/2.0 file shaped like PaddlePaddle/Contrib's DLA60_best_v1.yaml, pointed at data with the
    old flat overrides, trains; use_aa adds AutoAugment once whether or not the transforms list it."""
    _, data = tiny_config(tmp_path, per_class=4, size=32)
    path = tmp_path / "DLA60_best_v1.yaml"
    path.write_text(CONTRIB_STYLE.format(autoaugment="        - AutoAugment:\n" if listed else ""))
    overrides = [f"TRAIN.file_list={data}/train_list.txt", f"TRAIN.data_dir={data}", f"VALID.file_list={data}/val_list.txt",
                 f"VALID.data_dir={data}", "TRAIN.batch_size=6", "VALID.batch_size=4", "TRAIN.num_workers=0",
                 "VALID.num_workers=0", "epochs=1", "classes_num=3", "total_images=12", "ARCHITECTURE.name=DLA46_c",
                 "LEARNING_RATE.params.lr=0.01", "OPTIMIZER.params.momentum=0.8", f"model_save_dir={tmp_path}/out",
                 "image_shape=[3,32,32]", "pretrained_model=null"]
    from ppcls.schema import get_config
    cfg = get_config(str(path), overrides, world_size=1)
    assert cfg["Arch"] == {"name": "DLA46_c", "class_num": 3} and cfg["Global"]["epochs"] == 1
    assert cfg["Optimizer"]["lr"]["learning_rate"] == 0.01 and cfg["Optimizer"]["momentum"] == 0.8
    ops = [next(iter(op)) for op in cfg["DataLoader"]["Train"]["dataset"]["transform_ops"]]
    assert ops.count("AutoAugment") == 1 and ops.index("AutoAugment") == ops.index("RandFlipImage") + 1
    assert cfg["DataLoader"]["Train"]["dataset"]["cls_label_path"] == f"{data}/train_list.txt"
    # the same through the training tool, with small crops for the tiny images
    r = run_tool("train.py", "-c", str(path), *[x for o in overrides for x in ("-o", o)],
                 "-o", "Global.device=cpu", "-o", "DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=32",
                 "-o", "DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short=32",
                 "-o", "DataLoader.Eval.dataset.transform_ops.2.CropImage.size=32", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.path.isfile(tmp_path / "out" / "DLA46_c" / "latest.pdparams")
    assert "total_images: accepted for compatibility; it has no effect" in r.stdout


def test_legacy_keys_on_a_modern_config_are_explained(tmp_path):
    from ppcls.schema import get_config
    from ppcls.utils.errors import ConfigError
    path, _ = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match="a release/2.0 key, but this config is in the modern schema"):
        get_config(path, ["TRAIN.file_list=x.txt"])


def test_exit_codes_documented_and_used():
    from ppcls.utils import errors
    assert (errors.ConfigError.exit_code, errors.RunError.exit_code) == (2, 3)
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert "| 2 |" in readme and "| 3 |" in readme


@pytest.mark.slow
@pytest.mark.launch
def test_pip_install_in_a_fresh_venv(tmp_path):
    """pip install . into a new virtual environment (PaddlePaddle and the dependencies come from the
    current environment, nothing is downloaded); then the command, the API and the installed configs
    work from outside the checkout, and ppcls train runs under paddle.distributed.launch."""
    venv = tmp_path / "venv"
    # no pip of its own: this pip installs into it, building with this environment's setuptools
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=300)
    py = str(venv / "bin" / "python")
    import shutil
    src = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info beside the sources
    top_level_only = {".git", "build", "output", "dataset", "inference", "log", "tests"}

    def skip(directory, names):  # run products of the checkout, not packages such as ppcls/data/dataset
        at_root = os.path.samefile(directory, ROOT)
        return {n for n in names if n == "__pycache__" or n.endswith(".egg-info")
                or (at_root and (n in top_level_only or n.startswith("output")))}
    shutil.copytree(ROOT, src, symlinks=True, ignore=skip)
    r = subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    ppcls = str(venv / "bin" / "ppcls")
    r = subprocess.run([ppcls, "models", "DLA3*"], capture_output=True, text=True, cwd=str(outside), timeout=120)
    assert r.returncode == 0 and "DLA34" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([py, "-c", "import ppcls, os; print(ppcls.list_models()[:5]); print(ppcls.__file__)"],
                       capture_output=True, text=True, cwd=str(outside), timeout=120)
    assert r.returncode == 0 and "AttentionNet128" in r.stdout and str(venv) in r.stdout, r.stderr[-2000:]
    path, _ = tiny_config(tmp_path, epochs=1, per_class=4, extra={"Global": {"eval_during_train": False}})
    r = subprocess.run([py, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
                        str(tmp_path / "log"), ppcls, "train", "-c", path, "-o", "Global.device=cpu",
                        "-o", f"Global.output_dir={tmp_path}/out"], capture_output=True, text=True,
                       cwd=str(outside), timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert os.path.isfile(tmp_path / "out" / "ResNet18" / "latest.pdparams")
    # PaddleClas's config paths and those of the earlier layouts, all from the installed package
    forms = ["ppcls/configs/ImageNet/DLA/DLA34.yaml", "configs/ImageNet/ReXNet/ReXNet_1_0.yaml", "DLA/DLA34.yaml",
             "configs/DLA/DLA60.yaml", "ResidualAttention/AttentionNet56_CIFAR10.yaml"]
    script = ("import sys; from ppcls.schema import get_config; from ppcls.utils.config import resolve_config_path\n"
              "for p in sys.argv[1:]: print(get_config(p)['Arch']['name'], resolve_config_path(p))")
    r = subprocess.run([py, "-c", script, *forms], capture_output=True, text=True, cwd=str(outside), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    found = [line.split() for line in r.stdout.splitlines()]
    assert [n for n, _ in found] == ["DLA34", "ReXNet_1_0", "DLA34", "DLA60", "AttentionNet56_CIFAR"], r.stdout
    assert all(path.startswith(str(venv)) for _, path in found), r.stdout
