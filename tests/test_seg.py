"""ReXUNet training pieces: the image/mask dataset and joint transforms, the multi-scale loss, the
IoU/Dice metrics, and training through the engine on generated shapes."""
import os
import random

import numpy as np
import paddle
import pytest

from engine_utils import ROOT, run_tool
from ppcls.data.dataset.seg_dataset import JOINT_OPS, SegDataset
from ppcls.engine import Engine
from ppcls.loss.seg_loss import MultiScaleSegLoss
from ppcls.metric.seg_metrics import SegDice, SegIoU
from ppcls.schema import get_config
from datasets import make_shapes_dataset
from ppcls.utils.errors import ConfigError

NORM = [{"NormalizeImage": {"scale": "1.0/255.0", "mean": [0, 0, 0], "std": [1, 1, 1], "order": ""}}]


@pytest.fixture(scope="module")
def shapes(module_tmp):
    root = str(module_tmp("shapes"))
    make_shapes_dataset(root, n_train=32, n_val=8, size=64)
    return root


def test_joint_transforms_keep_image_and_mask_aligned():
    img = np.zeros((40, 60, 3), np.uint8)
    img[10:20, 5:15] = 255
    mask = (img[:, :, 0] > 0).astype(np.uint8) * 255
    for name, kw in (("SegRandFlip", {"prob": 1.0}), ("SegRandResizedCrop", {"size": [32, 48], "scale": [0.6, 1.0]}),
                     ("SegResize", {"size": [20, 30]})):
        random.seed(3)
        a, m = JOINT_OPS[name](**kw)(img, mask)
        assert a.shape[:2] == m.shape
        bright = a[:, :, 0] > 127
        assert ((m > 127) == bright).mean() > 0.97, name  # the object stays under its mask


def test_dataset_items_and_errors(shapes, tmp_path):
    ds = SegDataset(shapes, os.path.join(shapes, "train_list.txt"), [{"SegRandFlip": {}}], NORM)
    img, mask = ds[0]
    assert img.shape == (3, 64, 64) and img.dtype == np.float32
    assert mask.shape == (1, 64, 64) and set(np.unique(mask)) <= {0.0, 1.0} and mask.sum() > 0
    bad = tmp_path / "bad.txt"
    bad.write_text("train/0000.png\n")
    with pytest.raises(ConfigError, match=r"bad.txt:1: expected 'image_path mask_path'"):
        SegDataset(shapes, str(bad))
    with pytest.raises(ConfigError, match="unknown joint"):
        SegDataset(shapes, os.path.join(shapes, "train_list.txt"), [{"SegFlip": {}}])


def test_multiscale_loss_and_metrics_values():
    mask = paddle.zeros([1, 1, 4, 4])
    mask[:, :, :2, :2] = 1.0
    p0 = paddle.full([1, 1, 4, 4], 0.25)
    p0[:, :, :2, :2] = 0.75
    p1 = paddle.full([1, 1, 2, 2], 0.5)
    loss = MultiScaleSegLoss(weights=[1.0, 2.0])([p0, p1], mask)
    t1 = np.array([[1, 0], [0, 0]], np.float64)  # the mask at half scale (nearest)
    bce0 = -np.log(0.75)
    bce1 = -(t1 * np.log(0.5) + (1 - t1) * np.log(0.5)).mean()
    assert float(loss) == pytest.approx(bce0 + 2 * bce1, rel=1e-5)
    with_dice = MultiScaleSegLoss(weights=[1.0, 0.0], dice_weight=1.0)([p0, p1], mask)
    dice = 1 - (2 * 4 * 0.75 + 1) / (4 * 0.75 + 12 * 0.25 + 4 + 1)
    assert float(with_dice) == pytest.approx(bce0 + dice, rel=1e-5)
    iou, dice_m = SegIoU(), SegDice()
    pred = paddle.zeros([1, 1, 4, 4])
    pred[:, :, :2, :3] = 0.9  # 6 predicted, 4 true, 4 overlap
    for m in (iou, dice_m):
        m.update([pred, p1], mask)
    assert iou.compute()["iou"] == pytest.approx(4 / 6) and dice_m.compute()["dice"] == pytest.approx(8 / 10)


def _config(shapes, tmp_path, epochs):
    cfg = os.path.join(ROOT, "configs", "ReXUNet", "ReXUNet_demo_shapes.yaml")
    return get_config(cfg, [f"Global.output_dir={tmp_path}/out", f"Global.epochs={epochs}",
                            f"DataLoader.Train.dataset.image_root={shapes}",
                            f"DataLoader.Train.dataset.cls_label_path={shapes}/train_list.txt",
                            f"DataLoader.Eval.dataset.image_root={shapes}",
                            f"DataLoader.Eval.dataset.cls_label_path={shapes}/val_list.txt",
                            "DataLoader.Train.loader.num_workers=0", "Global.use_visualdl=False",
                            "Global.save_interval=100"])  # no epoch_N: 20 of them held 1.1 GB of checkpoints


@pytest.mark.slow  # 6 epochs; the quick tier trains ReXUNet one step (tests/test_configs.py ReXUNet_demo_shapes)
def test_training_steps_lower_the_loss(shapes, tmp_path):
    cfg = _config(shapes, tmp_path, 6)
    cfg["Global"]["eval_during_train"] = False
    eng = Engine(cfg, "train")
    model, loss_fn = eng.model, eng.train_loss
    batch = next(iter(eng.train_loader))
    model.train()  # batch statistics: a few steps are too few for BN running statistics
    with paddle.no_grad():
        before = float(loss_fn(model(batch[0]), batch[1])["loss"])
    eng.train()
    model.train()
    with paddle.no_grad():
        after = float(loss_fn(model(batch[0]), batch[1])["loss"])
    assert after < 0.7 * before, (before, after)


@pytest.mark.slow
def test_reaches_iou_080_on_generated_shapes(tmp_path):
    data = str(tmp_path / "shapes")
    make_shapes_dataset(data, size=64)
    cfg = _config(data, tmp_path, 20)
    eng = Engine(cfg, "train")
    result = eng.train()
    best = result.best_metric
    assert best >= 0.8, best
    assert result.last_eval.metrics["dice"] >= 0.85
