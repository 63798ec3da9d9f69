"""ppcls.visual: attention masks, Grad-CAM, the evaluation report and tools/visualize.py."""
import csv
import glob
import os
import subprocess
import sys

import cv2
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

from engine_utils import ROOT, eval_avg, run_tool, tiny_config
from ppcls.arch import build_model
from ppcls.arch.backbone.residual_attention import ATTENTION_SPECS
from ppcls.utils.errors import ConfigError
from ppcls.visual import (attention_masks, confusion_matrix, confusion_matrix_image, grad_cam, merge_shards,
                          per_class_metrics, resolve_stage, save_attention_panels, save_cam_overlays, summarize,
                          write_report)
from ppcls.visual.cli import main as visualize_main


# -- attention masks ---------------------------------------------------------------------------------
def _check_masks(name, depth, size):
    paddle.seed(0)
    model = build_model({"name": name, "class_num": 10})
    model.eval()
    x = np.random.RandomState(0).randn(2, 3, size, size).astype(np.float32)
    with paddle.no_grad():
        before = model(paddle.to_tensor(x)).numpy()
    masks = attention_masks(model, x)
    per_stage = ATTENTION_SPECS[depth][1]
    assert len(masks) == sum(per_stage)
    expected = []
    for s, n in enumerate(per_stage, start=1):
        info = model.feature_info[s]
        expected += [(f"stage{s}.module{k}", s, (info["channels"], size // info["reduction"], size // info["reduction"]))
                     for k in range(1, n + 1)]
    assert [(m.name, m.stage, m.native_shape) for m in masks] == expected
    for m in masks:
        assert m.layer.endswith("mask_branch") and m.mask.shape == (2, size, size) and m.mask.dtype == np.float32
        assert np.isfinite(m.mask).all() and m.mask.min() >= 0.0 and m.mask.max() <= 1.0
    # the hooks are gone and the model computes what it computed before
    assert all(not layer._forward_post_hooks for layer in model.sublayers())
    with paddle.no_grad():
        np.testing.assert_array_equal(model(paddle.to_tensor(x)).numpy(), before)
    return model, x, masks


@pytest.mark.parametrize("name,depth", [("AttentionNet56_CIFAR", 56), ("AttentionNet92_CIFAR", 92)])
def test_attention_masks_cifar(name, depth):
    model, x, masks = _check_masks(name, depth, 32)
    # the first module's mask, computed by hand: the layers before it, its pre units, its mask branch
    first = masks[0]
    block_index = int(first.layer.split(".")[1])
    with paddle.no_grad():
        h = paddle.to_tensor(x)
        for layer in list(model.features.children())[:block_index]:
            h = layer(h)
        block = model.features[block_index]
        ref = block.mask_branch(block.pre(h)).mean(axis=1).numpy()
    np.testing.assert_allclose(first.mask, ref, rtol=1e-5, atol=1e-6)  # stage 1 runs at the input size


@pytest.mark.parametrize("name,depth", [("AttentionNet56", 56), ("AttentionNet92", 92)])
def test_attention_masks_imagenet_at_224(name, depth):
    _, _, masks = _check_masks(name, depth, 224)
    assert [m.native_shape[1] for m in masks][:1] == [56]


def test_attention_masks_need_an_attention_net():
    with pytest.raises(ConfigError, match="no attention modules"):
        attention_masks(build_model({"name": "ResNet18", "class_num": 3}), np.zeros((1, 3, 32, 32), np.float32))


def test_attention_panels_written(tmp_path):
    paddle.seed(0)
    model = build_model({"name": "AttentionNet56_CIFAR", "class_num": 10})
    x = np.random.RandomState(1).randn(3, 3, 32, 32).astype(np.float32)
    shown = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(3)]
    written = save_attention_panels(shown, attention_masks(model, x), str(tmp_path), ["a", "b", "c"])
    assert [w[0] for w in written] == ["stage1.module1", "stage2.module1", "stage3.module1"]
    for _, path, arr in written:
        img = cv2.imread(path)
        assert img is not None and img.shape[:2] == arr.shape[:2] and arr.dtype == np.uint8


# -- Grad-CAM ------------------------------------------------------------------------------------------
class _LinearCam(nn.Layer):
    """1x1 conv -> ReLU -> global average -> linear: Grad-CAM has a closed form here."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 4, 1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean(axis=[2, 3]))


def test_grad_cam_closed_form():
    paddle.seed(3)
    model = _LinearCam()
    x = np.random.RandomState(3).randn(4, 3, 6, 5).astype(np.float32)
    r = grad_cam(model, x, class_id=[0, 1, 2, 1], stage="relu")
    with paddle.no_grad():
        a = F.relu(model.conv(paddle.to_tensor(x))).numpy()  # [N, 4, 6, 5]
    w = model.fc.weight.numpy()  # [in 4, out 3]
    raw = np.maximum(np.einsum("nc,nchw->nhw", w[:, [0, 1, 2, 1]].T / 30.0, a), 0)
    peak = raw.reshape(4, -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(r.cams, np.where(peak > 0, raw / np.maximum(peak, 1e-30), 0), rtol=1e-4, atol=1e-6)
    assert r.class_ids.tolist() == [0, 1, 2, 1] and r.feature_size == (6, 5)
    with paddle.no_grad():
        probs = F.softmax(model(paddle.to_tensor(x)), axis=1).numpy()
    np.testing.assert_allclose(r.scores, probs[np.arange(4), [0, 1, 2, 1]], rtol=1e-5)


def _half_images(rng, n, size=32):
    """Class 0: a bright blob in the left half, class 1: in the right half, class 2: no blob; noise
    everywhere (the blob-free class keeps the net from deciding by an empty half)."""
    y = rng.randint(0, 3, n)
    cx = np.where(y == 0, rng.randint(4, size // 2 - 4, n), rng.randint(size // 2 + 4, size - 4, n))
    cy = rng.randint(4, size - 4, n)
    yy, xx = np.mgrid[0:size, 0:size]
    blob = np.exp(-((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) / 8.0)
    x = rng.uniform(0, 0.35, (n, 3, size, size)) + 0.9 * (blob * (y < 2)[:, None, None])[:, None]
    return ((x - 0.5) / 0.5).astype(np.float32), y.astype(np.int64)


class _TinyNet(nn.Layer):
    def __init__(self, classes=3):
        super().__init__()

        def block(i, o):
            return [nn.Conv2D(i, o, 3, padding=1), nn.BatchNorm2D(o), nn.ReLU()]
        self.body = nn.Sequential(*block(3, 16), nn.MaxPool2D(2), *block(16, 32), nn.MaxPool2D(2), *block(32, 32))
        self.features = nn.Sequential(*block(32, 32))
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(self.body(x))).flatten(1))


def test_grad_cam_lights_the_half_that_decides():
    paddle.seed(0)
    rng = np.random.RandomState(0)
    model = _TinyNet()
    xtr, ytr = _half_images(rng, 512)
    opt = paddle.optimizer.Adam(3e-3, parameters=model.parameters())
    for _ in range(4):
        perm = rng.permutation(len(xtr))
        for a in range(0, len(xtr), 32):
            i = perm[a:a + 32]
            loss = F.cross_entropy(model(paddle.to_tensor(xtr[i])), paddle.to_tensor(ytr[i]))
            loss.backward()
            opt.step()
            opt.clear_grad()
    model.eval()
    xte, yte = _half_images(rng, 96)
    with paddle.no_grad():
        acc = float((model(paddle.to_tensor(xte)).argmax(1).numpy() == yte).mean())
    assert acc >= 0.95, acc
    r = grad_cam(model, xte)  # the default: the last direct child with a feature map, "features" (8x8)
    assert r.target == "features" and r.feature_size == (8, 8)
    keep = yte < 2
    cams, y = r.cams[keep], yte[keep]
    left, right = cams[:, :, :16].sum(axis=(1, 2)), cams[:, :, 16:].sum(axis=(1, 2))
    own, other = np.where(y == 0, left, right), np.where(y == 0, right, left)
    ratio = float(own.sum() / other.sum())
    print(f"Grad-CAM mass in the deciding half / the other half: {ratio:.2f} "
          f"({(own > other).mean():.0%} of {y.size} images)")
    assert ratio > 1.5 and (own > other).mean() >= 0.85, (ratio, (own > other).mean())


FAMILIES = [("DLA46_c", "level5", 64), ("RLA_MobileNetV2", "stages.6", 64), ("RLA_ResNet50", "stages.3", 64),
            ("ReXNet_1_0", "features.21", 64), ("AttentionNet56_CIFAR", "stage4", 32), ("ResNet18", "layer4", 64)]


@pytest.mark.parametrize("name,last,size", FAMILIES)
def test_grad_cam_every_family(name, last, size):
    paddle.seed(0)
    model = build_model({"name": name, "class_num": 5})
    x = np.random.RandomState(0).randn(3, 3, size, size).astype(np.float32)
    r = grad_cam(model, x)
    assert last in r.target
    assert r.cams.shape == (3, size, size) and r.cams.dtype == np.float32
    assert np.isfinite(r.cams).all() and r.cams.min() >= 0 and r.cams.max() <= 1
    assert r.probs.shape == (3, 5) and r.class_ids.tolist() == r.probs.argmax(1).tolist()
    assert all(not layer._forward_post_hooks for layer in model.sublayers())
    # an earlier stage, by index or by name (zoo backbones) / by sublayer name (Paddle's ResNet)
    if name == "ResNet18":
        a, b = grad_cam(model, x, 2, "layer3"), grad_cam(model, x, 2, "layer3.1")
    else:
        names = [d["name"] for d in model.feature_info]
        a, b = grad_cam(model, x, 2, 2), grad_cam(model, x, 2, names[2])
        assert a.target == f"stage 2 ({names[2]})"
    np.testing.assert_allclose(a.cams, b.cams, atol=1e-6)
    assert a.class_ids.tolist() == [2, 2, 2] and np.isfinite(a.cams).all() and a.cams.min() >= 0


def test_grad_cam_batch_equals_single_images():
    paddle.seed(1)
    model = build_model({"name": "ResNet18", "class_num": 4})
    x = np.random.RandomState(1).randn(4, 3, 64, 64).astype(np.float32)
    batch = grad_cam(model, x, stage="layer3")
    singles = np.concatenate([grad_cam(model, x[i:i + 1], stage="layer3").cams for i in range(4)])
    np.testing.assert_allclose(batch.cams, singles, rtol=1e-4, atol=1e-5)


def test_grad_cam_stage_errors():
    dla = build_model({"name": "DLA46_c", "class_num": 3})
    with pytest.raises(ConfigError, match=r"stage 9: DLA46_c has no such stage; valid: 0\.\.5 .*level5"):
        resolve_stage(dla, 9, "DLA46_c")
    with pytest.raises(ConfigError, match="no such stage or sublayer"):
        resolve_stage(dla, "level7")
    rla = build_model({"name": "RLA_MobileNetV2", "class_num": 3})
    with pytest.raises(ConfigError, match="container"):
        resolve_stage(rla, "conv_outs")
    with pytest.raises(ConfigError, match="layer1, layer2, layer3, layer4"):
        resolve_stage(build_model({"name": "ResNet18", "class_num": 3}), "layer5")
    with pytest.raises(ConfigError, match="class id 3: the model has classes 0..2"):
        grad_cam(dla, np.zeros((1, 3, 32, 32), np.float32), class_id=3)


def test_cam_overlays_written(tmp_path):
    model = build_model({"name": "DLA46_c", "class_num": 3})
    x = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
    r = grad_cam(model, x, stage="level3")
    shown = [np.zeros((32, 32, 3), np.uint8)] * 2
    written = save_cam_overlays(shown, r, str(tmp_path), ["x", "y"], ["zero", "one", "two"])
    assert [os.path.basename(p) for _, p, _ in written] == ["gradcam_000_x.png", "gradcam_001_y.png"]
    assert all(cv2.imread(p) is not None for _, p, _ in written)


# -- evaluation report ----------------------------------------------------------------------------------
def _predictions(n=400, k=6, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, k - 1, n)  # the last class has no samples
    logits = rng.randn(n, k) + 2.5 * np.eye(k)[y]
    logits[:, 2] -= 4.0  # class 2 is almost never predicted
    return y, logits


def test_report_matches_sklearn_and_top1(tmp_path):
    from sklearn.metrics import confusion_matrix as sk_cm
    from sklearn.metrics import precision_recall_fscore_support
    from ppcls.metric.topk import TopkAcc
    y, logits = _predictions()
    k = logits.shape[1]
    names = [f"class {i}" for i in range(k)]
    paths = []
    for i in range(len(y)):
        p = os.path.join(str(tmp_path), "img", f"{i}.png")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        cv2.imwrite(p, np.full((16, 16, 3), i % 255, np.uint8))
        paths.append(p)
    out = str(tmp_path / "report")
    s = write_report(out, y, logits, names, paths)
    preds = logits.argmax(1)
    np.testing.assert_array_equal(s["cm"], sk_cm(y, preds, labels=list(range(k))))
    p, r, f, sup = precision_recall_fscore_support(y, preds, labels=list(range(k)), zero_division=0)
    np.testing.assert_allclose(s["precision"], p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s["recall"], r, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s["f1"], f, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(s["support"], sup)
    for avg in ("macro", "weighted"):
        pa, ra, fa, _ = precision_recall_fscore_support(y, preds, labels=list(range(k)), average=avg, zero_division=0)
        assert abs(s[f"{avg}_precision"] - pa) < 1e-12 and abs(s[f"{avg}_recall"] - ra) < 1e-12
        assert abs(s[f"{avg}_f1"] - fa) < 1e-12
    # the diagonal share is top-1, computed independently by the engine's metric
    metric = TopkAcc(topk=[1])
    metric.update(paddle.to_tensor(logits.astype(np.float32)), paddle.to_tensor(y))
    top1 = metric.compute()["top1"]
    assert abs(np.trace(s["cm"]) / s["cm"].sum() - top1) < 1e-12 and abs(s["top1"] - top1) < 1e-12
    assert abs(s["top1"] - float((preds == y).mean())) < 1e-12
    # probabilities give the same report as logits
    e = np.exp(logits - logits.max(1, keepdims=True))
    s2 = summarize(y, e / e.sum(1, keepdims=True), k)
    np.testing.assert_array_equal(s2["cm"], s["cm"])
    # the files say the same
    with open(os.path.join(out, "confusion_matrix.csv"), newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][1:] == names and [r_[0] for r_ in rows[1:]] == names
    np.testing.assert_array_equal(np.array([r_[1:] for r_ in rows[1:]], dtype=np.int64), s["cm"])
    with open(os.path.join(out, "per_class.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r_["class_name"] for r_ in rows] == names
    np.testing.assert_allclose([float(r_["precision"]) for r_ in rows], p, atol=1e-9)
    np.testing.assert_allclose([float(r_["recall"]) for r_ in rows], r, atol=1e-9)
    np.testing.assert_allclose([float(r_["f1"]) for r_ in rows], f, atol=1e-9)
    assert [int(r_["support"]) for r_ in rows] == sup.tolist()
    md = open(os.path.join(out, "per_class.md")).read().splitlines()
    assert md[0].startswith("| class | name | precision") and len([l for l in md if l.startswith("| ")]) == k + 3
    assert f"top-1 accuracy: {top1:.4f}" in md[-1]
    for f_ in ("confusion_matrix.png", "mistakes.png"):
        assert cv2.imread(os.path.join(out, f_)) is not None and os.path.getsize(os.path.join(out, f_)) < 200_000
    with open(os.path.join(out, "mistakes.csv"), newline="") as fh:
        mistakes = list(csv.DictReader(fh))
    assert len(mistakes) == int((preds != y).sum())
    scores = [float(m["score"]) for m in mistakes]
    assert scores == sorted(scores, reverse=True)


def test_report_equal_after_sharded_gather():
    """What a distributed evaluation does: each rank sees indices rank, rank + W, ...; the ranks pad to
    one length, all_gather, and merge_shards restores the dataset order."""
    y, logits = _predictions(n=103, seed=4)
    world = 4
    per_rank = -(-len(y) // world)
    idx, lab, sco = [], [], []
    for rank in range(world):
        mine = np.arange(rank, len(y), world)
        pad = per_rank - mine.size
        idx.append(np.concatenate([mine, -np.ones(pad, np.int64)]))
        lab.append(np.concatenate([y[mine], np.zeros(pad, np.int64)]))
        sco.append(np.concatenate([logits[mine], np.zeros((pad, logits.shape[1]))]))
    order, y2, logits2 = merge_shards(np.concatenate(idx), np.concatenate(lab), np.concatenate(sco))
    np.testing.assert_array_equal(order, np.arange(len(y)))
    a, b = summarize(y, logits), summarize(y2, logits2)
    for key in ("cm", "precision", "recall", "f1", "support"):
        np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ConfigError, match="more than one rank"):
        merge_shards(np.array([0, 1, 1]), np.zeros(3))


def test_report_basics():
    cm = confusion_matrix([0, 1, 1, 2], [0, 2, 1, 2], 4)
    assert cm.tolist() == [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    m = per_class_metrics(cm)
    assert m["precision"].tolist() == [1.0, 1.0, 0.5, 0.0] and m["support"].tolist() == [1, 2, 1, 0]
    img = confusion_matrix_image(cm, ["a", "b", "c", "d"])
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    with pytest.raises(ConfigError, match="out of range for 2 classes"):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(ConfigError, match="differ in length"):
        summarize([0, 1], np.zeros((3, 2)))


# -- tools/visualize.py ----------------------------------------------------------------------------------
def _tool_setup(tmp_path, arch):
    cfg, data = tiny_config(tmp_path, arch=arch, num_classes=3, per_class=2, size=32)
    weights = os.path.join(str(tmp_path), "weights")
    paddle.seed(0)
    paddle.save(build_model({"name": arch, "class_num": 3}).state_dict(), weights + ".pdparams")
    images = sorted(glob.glob(os.path.join(data, "val", "*.jpg")))[:3]
    return cfg, weights, images


def test_visualize_errors_in_process(tmp_path):
    cfg, weights, images = _tool_setup(tmp_path, "ResNet18")
    base = ["-c", cfg, "-o", f"Global.pretrained_model={weights}", "--out", str(tmp_path / "out")]
    with pytest.raises(ConfigError, match="--mode attention: ResNet18 has no attention modules"):
        visualize_main(base + ["--mode", "attention", "--images", images[0]])
    with pytest.raises(ConfigError, match=r"--stage layer9: ResNet18 has no such stage .*layer4"):
        visualize_main(base + ["--mode", "cam", "--stage", "layer9", "--images", images[0]])
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ConfigError, match=f"--images: {bad} cannot be read"):
        visualize_main(base + ["--mode", "cam", "--images", images[0], str(bad)])
    with pytest.raises(ConfigError, match="--class-id 7: ResNet18 has classes 0..2"):
        visualize_main(base + ["--mode", "cam", "--class-id", "7", "--images", images[0]])
    with pytest.raises(ConfigError, match="--images: not found"):
        visualize_main(base + ["--mode", "cam", "--images", str(tmp_path / "missing.jpg")])
    with pytest.raises(ConfigError, match="the following arguments are required: --images"):
        visualize_main(base + ["--mode", "cam"])
    with pytest.raises(ConfigError, match="--class-id / --stage: only with --mode cam, not --mode attention"):
        visualize_main(base + ["--mode", "attention", "--stage", "1", "--images", images[0]])
    with pytest.raises(ConfigError, match="invalid choice: 'gradcam'"):
        visualize_main(base + ["--mode", "gradcam", "--images", images[0]])
    assert not os.path.exists(tmp_path / "out")  # nothing written before the inputs are checked


def _report_cm(out):
    for name in ("confusion_matrix.csv", "confusion_matrix.png", "per_class.csv", "per_class.md", "mistakes.csv"):
        assert os.path.isfile(os.path.join(out, name)), name
    with open(os.path.join(out, "confusion_matrix.csv"), newline="") as fh:
        return np.array([r[1:] for r in list(csv.reader(fh))[1:]], dtype=np.int64)


def test_eval_report_dir_agrees_with_the_printed_top1(tmp_path):
    """tools/eval.py -o Global.report_dir=DIR: the confusion matrix's diagonal share is the top-1 it logs."""
    cfg, weights, _ = _tool_setup(tmp_path, "ResNet18")
    out = str(tmp_path / "report")
    r = run_tool("eval.py", "-c", cfg, "-o", f"Global.pretrained_model={weights}", "-o", f"Global.report_dir={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    _, top1, n = eval_avg(r.stdout)
    cm = _report_cm(out)
    assert cm.sum() == n == 12 and abs(np.trace(cm) / cm.sum() - top1) < 1e-5  # the log prints 5 decimals


@pytest.mark.slow
@pytest.mark.launch
def test_eval_report_dir_same_under_distributed_evaluation(tmp_path):
    """Two evaluating processes write the same report as one (rank 0 writes after gathering every sample)."""
    cfg, weights, _ = _tool_setup(tmp_path, "ResNet18")
    single = str(tmp_path / "single")
    r = run_tool("eval.py", "-c", cfg, "-o", f"Global.pretrained_model={weights}", "-o", f"Global.report_dir={single}")
    assert r.returncode == 0, r.stderr[-2000:]
    dist = str(tmp_path / "dist")
    r = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
                        str(tmp_path / "log"), os.path.join(ROOT, "tools", "eval.py"), "-c", cfg, "-o",
                        f"Global.pretrained_model={weights}", "-o", f"Global.report_dir={dist}", "-o", "Global.device=cpu"],
                       capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    np.testing.assert_array_equal(_report_cm(dist), _report_cm(single))
    assert open(os.path.join(dist, "per_class.csv")).read() == open(os.path.join(single, "per_class.csv")).read()
    # the same mistakes in the same order; their scores agree to float32 rounding (other batch shapes)
    rows = [list(csv.reader(open(os.path.join(d, "mistakes.csv"), newline="")))[1:] for d in (dist, single)]
    assert [r[:-1] for r in rows[0]] == [r[:-1] for r in rows[1]] and rows[0]
    np.testing.assert_allclose([float(r[-1]) for r in rows[0]], [float(r[-1]) for r in rows[1]], rtol=1e-6)


@pytest.mark.slow
def test_visualize_tool_end_to_end(tmp_path):
    from visualdl import LogReader
    cfg, weights, images = _tool_setup(tmp_path, "AttentionNet56_CIFAR")
    out, vdl = str(tmp_path / "att"), str(tmp_path / "vdl")
    r = run_tool("visualize.py", "-c", cfg, "-o", f"Global.pretrained_model={weights}", "--mode", "attention",
                 "--images", *images, "--out", out, "--vdl", vdl)
    assert r.returncode == 0, r.stderr[-2000:]
    pngs = sorted(os.listdir(out))
    assert pngs == ["attention_00_stage1.module1.png", "attention_01_stage2.module1.png",
                    "attention_02_stage3.module1.png"]
    assert all(cv2.imread(os.path.join(out, p)) is not None for p in pngs)
    reader = LogReader(file_path=glob.glob(os.path.join(vdl, "vdlrecords.*"))[0])
    tags = reader.get_tags()["image"]
    assert sorted(tags) == ["attention/stage1.module1", "attention/stage2.module1", "attention/stage3.module1"]
    record = reader.get_data("image", tags[0])[0]
    png = cv2.imdecode(np.frombuffer(record.image.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    assert png.shape == cv2.imread(os.path.join(out, pngs[0])).shape

    out = str(tmp_path / "cam")
    r = run_tool("visualize.py", "-c", cfg, "-o", f"Global.pretrained_model={weights}", "--mode", "cam",
                 "--images", os.path.dirname(images[0]), "--out", out, "--stage", "stage2", "--class-id", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    n = len(glob.glob(os.path.join(os.path.dirname(images[0]), "*.jpg")))
    assert len(glob.glob(os.path.join(out, "gradcam_*.png"))) == n and "(stage 2 (stage2))" in r.stdout


@pytest.mark.slow
def test_visualize_tool_bad_inputs_exit_2(tmp_path):
    cfg, weights, images = _tool_setup(tmp_path, "ResNet18")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    base = ["-c", cfg, "-o", f"Global.pretrained_model={weights}", "--out", str(tmp_path / "out")]
    cases = [(["--mode", "attention", "--images", images[0]], "ResNet18 has no attention modules"),
             (["--mode", "cam", "--stage", "7", "--images", images[0]], "--stage 7: ResNet18 has no such stage"),
             (["--mode", "cam", "--images", str(bad)], f"--images: {bad} cannot be read")]
    for args, culprit in cases:
        r = run_tool("visualize.py", *base, *args)
        errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert len(errors) == 1 and culprit in errors[0], r.stderr[-2000:]
