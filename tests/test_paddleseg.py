"""ppcls seg: the zoo's backbones, ReXUNet and DLA-Up inside PaddleSeg 2.8.0 — every shipped config builds,
the models' contracts, training lowers the loss, the printed mIoU equals one computed from the saved
predictions, the export predicts the dygraph masks, bad data stops with file:line, 2-process training."""
import glob
import os
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("paddleseg")

import paddle  # noqa: E402
from PIL import Image  # noqa: E402

import ppcls.seg  # noqa: E402,F401
from ppcls.utils.errors import ConfigError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEG_CONFIGS = os.path.join(ROOT, "ppcls", "configs", "segmentation")
CONFIGS = sorted(p for p in glob.glob(os.path.join(SEG_CONFIGS, "**", "*.yaml"), recursive=True) if "_base_" not in p)
DEMO = {name: os.path.join(SEG_CONFIGS, "digits", f"{name}_digits.yaml")
        for name in ("dlaup_dla34", "rexunet", "deeplabv3p_rla_resnet50", "deeplabv3p_resnet50_vd")}
# DeepLabV3P on a ResNet-50: seconds per build; the Cityscapes DLA-Up is the digits one with 19 classes
HEAVY = ("rla_resnet50", "resnet50_vd", "dlaup_dla34_cityscapes")


@pytest.fixture(scope="module")
def digits(module_tmp):
    """The demo dataset at 64 px (4 train, 2 val canvases) where the demo configs look for it:
    dataset/digit_canvas under the returned folder, the working directory of the tests that use it."""
    from ppcls.data.dataset.digit_canvas import make_digit_canvas_dataset
    root = module_tmp("segdigits")
    make_digit_canvas_dataset(str(root / "dataset" / "digit_canvas"), n_train=4, n_val=2, canvas=64, kinds=("seg",))
    return root


def _config(path, **changes):
    """PaddleSeg's Config of ``path`` without the pretrained weights (nothing is downloaded)."""
    from paddleseg.cvlibs import Config
    cfg = Config(path)

    def strip(d):
        for key in [k for k in d if k in ("pretrained", "backbone_pretrained", "encoder_pretrained")]:
            d.pop(key)
        for v in d.values():
            if isinstance(v, dict):
                strip(v)
    strip(cfg.dic["model"])
    for key, value in changes.items():
        cfg.dic[key] = value
    return cfg


def _build_model(cfg):
    from paddleseg.cvlibs import SegBuilder
    with paddle.utils.unique_name.guard():
        return SegBuilder(cfg).model


# -- configs and models -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", [pytest.param(p, id=os.path.relpath(p, SEG_CONFIGS), marks=[pytest.mark.slow]
                                               if any(h in p for h in HEAVY) else []) for p in CONFIGS])
def test_every_config_builds_and_pairs_outputs_with_losses(path):
    from paddleseg.cvlibs import SegBuilder
    cfg = _config(path)
    builder = SegBuilder(cfg)
    with paddle.utils.unique_name.guard():
        model = builder.model
        builder.optimizer
    losses = builder.loss
    num_classes = cfg.dic["model"]["num_classes"]
    x = paddle.rand([1, 3, 64, 64])
    model.train()
    outs = model(x)
    assert len(outs) == len(losses["types"]) == len(losses["coef"])
    assert all(list(o.shape) == [1, num_classes, 64, 64] for o in outs)
    model.eval()
    assert list(model(x)[0].shape) == [1, num_classes, 64, 64]


def test_backbones_of_every_family_are_registered_beside_paddleseg_s():
    from paddleseg.cvlibs import manager
    from ppcls.seg.backbones import REGISTERED, ZooBackbone
    for name in ("DLA34", "DLA46_c", "DLA169", "RLA_ResNet50", "RLA_MobileNetV2", "RLA_ResNeXt50_32x4d",
                 "ReXNet_1_0", "ReXNet_3_0", "AttentionNet56", "AttentionNet92"):
        assert name in REGISTERED and issubclass(manager.BACKBONES[name], ZooBackbone)
    assert not any(n.endswith("_CIFAR") or n == "ReXUNet" for n in REGISTERED)
    assert manager.BACKBONES["ResNet50_vd"].__module__.startswith("paddleseg.")  # PaddleSeg's own stays


@pytest.mark.parametrize("name", ["DLA46_c", "ReXNet_1_0", "RLA_MobileNetV2"])
def test_backbone_gives_feat_channels_at_strides(name):
    from paddleseg.cvlibs import manager
    from ppcls.arch import build_model
    backbone = manager.BACKBONES[name]()
    feats = backbone(paddle.rand([1, 3, 64, 64]))
    assert [f.shape[1] for f in feats] == backbone.feat_channels
    assert [64 // f.shape[2] for f in feats] == backbone.out_strides == [4, 8, 16, 32]
    # no classifier left to sit unused (data-parallel training would wait for its gradients)
    assert set(backbone.net.state_dict()) == set(build_model({"name": name, "class_num": 0}).state_dict())
    two = manager.BACKBONES[name](out_strides=[8, 32])
    assert len(two(paddle.rand([1, 3, 64, 64]))) == 2 and two.feat_channels == [backbone.feat_channels[1],
                                                                                  backbone.feat_channels[3]]
    with pytest.raises(ConfigError, match="out_strides: \\[64\\] not available"):
        manager.BACKBONES[name](out_strides=[64])


def test_backbone_pretrained_goes_through_the_weights_loader(tmp_path):
    from paddleseg.cvlibs import manager
    from ppcls.arch import build_model
    paddle.seed(3)
    classifier = build_model({"name": "DLA46_c", "class_num": 10})
    path = tmp_path / "dla46c.pdparams"
    paddle.save(classifier.state_dict(), str(path))
    backbone = manager.BACKBONES["DLA46_c"](pretrained=str(path))
    source = classifier.state_dict()
    for key, value in backbone.net.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), source[key].numpy())
    with pytest.raises(ConfigError, match="DLA46_c.pretrained: 'no_such_tag'"):
        manager.BACKBONES["DLA46_c"](pretrained="no_such_tag")


def test_dlaup_is_the_ported_network_with_imagenet_base(tmp_path):
    from paddleseg.cvlibs import manager
    from ppcls.arch import build_model
    paddle.seed(4)
    base = build_model({"name": "DLA46_c"})
    path = tmp_path / "base.pdparams"
    paddle.save(base.state_dict(), str(path))
    model = manager.MODELS["DLAUp"](num_classes=3, base="DLA46_c", backbone_pretrained=str(path))
    np.testing.assert_array_equal(model.net.base.state_dict()["base_layer.0.weight"].numpy(),
                                  base.state_dict()["base_layer.0.weight"].numpy())
    model.eval()
    x = paddle.rand([2, 3, 64, 64])
    out = model(x)
    log_probs, _ = model.net(x)
    assert len(out) == 1 and list(out[0].shape) == [2, 3, 64, 64]
    np.testing.assert_array_equal(out[0].numpy(), log_probs.numpy())


def test_rexunet_six_outputs_and_imagenet_encoder(tmp_path):
    from paddleseg.cvlibs import manager
    from ppcls.arch import build_model
    paddle.seed(5)
    rexnet = build_model({"name": "ReXNet_1_0"})
    path = tmp_path / "rexnet.pdparams"
    paddle.save(rexnet.state_dict(), str(path))
    model = manager.MODELS["ReXUNet"](num_classes=4, encoder_pretrained=str(path))
    np.testing.assert_array_equal(model.net.conv0.state_dict()["0.weight"].numpy(),
                                  rexnet.state_dict()["features.0.weight"].numpy())
    x = paddle.rand([1, 3, 64, 64])
    model.train()
    outs = model(x)
    assert len(outs) == 6 and all(list(o.shape) == [1, 4, 64, 64] for o in outs)
    model.eval()
    finest = model(x)
    assert len(finest) == 1
    np.testing.assert_allclose(finest[0].numpy(), model.net.decode(x)[0].numpy(), rtol=1e-6)
    with pytest.raises(ConfigError, match="num_classes: at least 2"):
        manager.MODELS["ReXUNet"](num_classes=1)


# -- training ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [pytest.param("dlaup_dla34", marks=pytest.mark.slow), "rexunet"])
def test_a_few_steps_lower_the_loss(name, digits, monkeypatch):
    from paddleseg.core.train import loss_computation
    from paddleseg.cvlibs import SegBuilder
    monkeypatch.chdir(digits)
    paddle.seed(0)
    cfg = _config(DEMO[name])
    cfg.dic["lr_scheduler"] = {"type": "PolynomialDecay", "learning_rate": 0.002, "end_lr": 0, "power": 0.9}
    builder = SegBuilder(cfg)
    with paddle.utils.unique_name.guard():
        model, optimizer = builder.model, builder.optimizer
    data = [builder.train_dataset[i] for i in range(2)]
    images = paddle.to_tensor(np.stack([d["img"] for d in data]))
    labels = paddle.to_tensor(np.stack([d["label"] for d in data]).astype("int64"))
    model.train()
    losses = []
    for _ in range(6):
        loss = sum(loss_computation(model(images), labels, None, builder.loss))
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(loss))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses


def _metrics_from_log(text):
    m = re.search(r"\[EVAL\] #Images: (\d+) mIoU: ([\d.]+) Acc: ([\d.]+) Kappa: (-?[\d.]+) Dice: ([\d.]+)", text)
    assert m, text[-3000:]
    return {k: float(v) for k, v in zip(("images", "miou", "acc", "kappa", "dice"), m.groups())}


def _numpy_metrics(preds, labels, num_classes, ignore=255):
    """mIoU, pixel accuracy and mean Dice from a confusion matrix over all pixels (classes absent from both
    count 0, as PaddleSeg counts them)."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    for p, t in zip(preds, labels):
        keep = t != ignore
        np.add.at(cm, (t[keep].astype(np.int64), p[keep].astype(np.int64)), 1)
    inter = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    both = cm.sum(0) + cm.sum(1)
    dice = np.where(both > 0, 2 * inter / np.maximum(both, 1), 0.0)
    return {"miou": iou.mean(), "acc": inter.sum() / cm.sum(), "dice": dice.mean()}


@pytest.mark.slow
def test_train_val_predict_resume_export(digits, monkeypatch, capsys):
    """The CLI end to end on DLA-Up: the printed mIoU / Acc / Dice equal those of a numpy confusion matrix
    over the masks predict saved; resume continues the iteration count; the exported model's masks are
    the dygraph model's."""
    from ppcls.seg.cli import main
    from ppcls.seg.deploy import SegPredictor
    monkeypatch.chdir(digits)
    config = DEMO["dlaup_dla34"]
    out = digits / "out_cli"
    main(["train", "--config", config, "--iters", "4", "--batch_size", "2", "--save_interval", "4", "--log_iters", "2",
          "--save_dir", str(out), "--seed", "1", "--do_eval", "--use_vdl", "--device", "cpu"])
    assert os.path.isfile(out / "iter_4" / "model.pdparams") and os.path.isfile(out / "best_model" / "model.pdparams")
    assert glob.glob(str(out / "vdlrecords.*.log"))
    capsys.readouterr()
    weights = str(out / "iter_4" / "model.pdparams")
    main(["val", "--config", config, "--model_path", weights, "--device", "cpu"])
    printed = _metrics_from_log(capsys.readouterr().out)
    val_dir = digits / "dataset" / "digit_canvas" / "seg" / "images" / "val"
    main(["predict", "--config", config, "--model_path", weights, "--image_path", str(val_dir),
          "--save_dir", str(digits / "pred"), "--device", "cpu"])
    names = sorted(os.listdir(val_dir))
    preds = [np.asarray(Image.open(digits / "pred" / "pseudo_color_prediction" / n)) for n in names]
    labels = [np.asarray(Image.open(digits / "dataset" / "digit_canvas" / "seg" / "labels" / "val" / n)) for n in names]
    assert all(os.path.isfile(digits / "pred" / "added_prediction" / n) for n in names)
    assert printed["images"] == len(names) == 2
    computed = _numpy_metrics(preds, labels, 11)
    for key in ("miou", "acc", "dice"):
        assert abs(printed[key] - computed[key]) < 6e-5, (key, printed, computed)

    capsys.readouterr()
    main(["train", "--config", config, "--iters", "6", "--batch_size", "2", "--save_interval", "2", "--log_iters", "2",
          "--save_dir", str(out), "--resume_model", str(out / "iter_4"), "--device", "cpu"])
    log = capsys.readouterr().out
    assert "Resume model from" in log and "iter: 6/6" in log and "iter: 2/6" not in log
    assert os.path.isfile(out / "iter_6" / "model.pdparams")

    main(["export", "--config", config, "--model_path", weights, "--save_dir", str(digits / "export")])  # any size
    predictor = SegPredictor(str(digits / "export"))
    masks = predictor.predict([str(val_dir / n) for n in names])
    for mask, dygraph in zip(masks, preds):
        np.testing.assert_array_equal(mask, dygraph)


def test_export_of_unknown_sides_names_the_fix(tmp_path):
    """A network that checks its input sides in Python cannot be traced with unknown sides: one line asking
    for --input_shape."""
    import paddle
    from ppcls.seg.deploy import export_model

    class SidesChecked(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 2, 1)

        def forward(self, x):
            if x.shape[2] % 32:
                raise ValueError(f"sides must be multiples of 32, got {x.shape[2]}")
            return self.conv(x)

    with pytest.raises(ConfigError, match="SidesChecked cannot be exported with any input size.*--input_shape -1 3 H W"):
        export_model(SidesChecked(), str(tmp_path / "e"), [])
    files = export_model(SidesChecked(), str(tmp_path / "f"), [], [-1, 3, 64, 64])
    assert files


# -- bad input --------------------------------------------------------------------------------------
def _bad_set(root, case):
    """A Dataset folder with one good line and, on line 2, the problem ``case``."""
    os.makedirs(root / "img", exist_ok=True)
    good = np.zeros((32, 32), np.uint8)
    good[4:9, 4:9] = 2
    Image.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(root / "img" / "a.jpg")
    Image.fromarray(good).save(root / "img" / "a.png")
    line = "img/b.jpg img/b.png"
    Image.fromarray(np.full((32, 32, 3), 50, np.uint8)).save(root / "img" / "b.jpg")
    label = good.copy()
    if case == "values":
        label[0, 0], label[1, 1] = 7, 255  # 7 >= num_classes 3; 255 is the ignore index, allowed
    elif case == "size":
        label = np.zeros((30, 32), np.uint8)
    elif case == "columns":
        line = "img/b.jpg img/b.png extra"
    elif case == "missing":
        line = "img/b.jpg img/nothing.png"
    Image.fromarray(label).save(root / "img" / "b.png")
    with open(root / "train.txt", "w") as f:
        f.write(f"img/a.jpg img/a.png\n{line}\n")
    return root / "train.txt"


@pytest.mark.parametrize("case, message", [
    ("values", r"train\.txt:2: label .*b\.png has values 7 outside 0\.\.2 \(num_classes 3; ignore_index 255\)"),
    ("size", r"train\.txt:2: label .*b\.png is 32x30 but image .*b\.jpg is 32x32"),
    ("columns", r"train\.txt:2: expected 2 columns 'image label', found 3"),
    ("missing", r"train\.txt:2: label file not found: .*nothing\.png"),
])
def test_bad_dataset_lines_are_named(tmp_path, case, message):
    from ppcls.seg.data_check import check_list
    path = _bad_set(tmp_path, case)
    with pytest.raises(ConfigError, match=message):
        check_list(str(path), str(tmp_path), num_classes=3)


def test_good_dataset_with_ignore_index_passes(tmp_path):
    from ppcls.seg.data_check import check_list
    path = _bad_set(tmp_path, "none")
    assert check_list(str(path), str(tmp_path), num_classes=3) == 2


def test_bad_data_stops_the_command_before_training(tmp_path):
    """Through the script: exit 2, one line naming the list file and line, no checkpoint written."""
    path = _bad_set(tmp_path, "values")
    config = tmp_path / "bad.yaml"
    config.write_text(f"_base_: {os.path.join(SEG_CONFIGS, 'digits', 'dlaup_dla34_digits.yaml')}\n"
                      f"train_dataset:\n  dataset_root: {tmp_path}\n  train_path: {path}\n  num_classes: 3\n"
                      f"val_dataset:\n  dataset_root: {tmp_path}\n  val_path: {path}\n  num_classes: 3\n"
                      "model:\n  num_classes: 3\n")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "seg", "train.py"), "--config", str(config),
                        "--iters", "1", "--save_dir", str(tmp_path / "out")], capture_output=True, text=True,
                       cwd=str(tmp_path), timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and re.search(r"train\.txt:2: label .*b\.png has values 7", errors[0]), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not os.path.exists(tmp_path / "out")


def test_unknown_component_is_one_line(digits, monkeypatch, tmp_path):
    from ppcls.seg.cli import main
    monkeypatch.chdir(digits)
    config = tmp_path / "typo.yaml"
    config.write_text(f"_base_: {DEMO['dlaup_dla34']}\nmodel:\n  type: DLAUpp\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: cannot build model: .*DLAUpp.*not found"):
        main(["val", "--config", str(config), "--model_path", str(config)])


# -- distributed ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.launch
def test_two_cpu_processes_train(digits):
    log_dir = digits / "launch_log"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(log_dir),
           os.path.join(ROOT, "tools", "seg", "train.py"), "--config", DEMO["dlaup_dla34"], "--iters", "2",
           "--batch_size", "1", "--log_iters", "1", "--save_interval", "2", "--save_dir", str(digits / "out_launch")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(digits), timeout=600)
    logs = {n: open(log_dir / n).read() for n in os.listdir(log_dir) if n.startswith("workerlog")}
    assert r.returncode == 0, (r.stderr[-1500:], {n: t[-1500:] for n, t in logs.items()})
    assert sorted(logs) == ["workerlog.0", "workerlog.1"]
    assert "dp_degree: 2" in logs["workerlog.0"] and "iter: 2/2" in logs["workerlog.0"]
    assert os.path.isfile(digits / "out_launch" / "iter_2" / "model.pdparams")
