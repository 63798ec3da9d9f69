"""The quick start's bar: the demo dataset, DLA46_c trained with its config, val top-1 >= 0.95."""
import os

import pytest

from engine_utils import ROOT, eval_avg, run_tool

pytestmark = pytest.mark.slow


def test_quick_start_reaches_95_percent(tmp_path):
    data = os.path.join(str(tmp_path), "digits")
    r = run_tool("make_demo_dataset.py", "--out", data)
    assert r.returncode == 0 and "wrote 1438 train and 359 val images" in r.stdout, r.stderr
    cfg = os.path.join(ROOT, "configs", "quick_start", "DLA46_c_digits.yaml")
    common = ["-c", cfg, "-o", f"Global.output_dir={tmp_path}/output", "-o", f"DataLoader.Train.dataset.image_root={data}",
              "-o", f"DataLoader.Train.dataset.cls_label_path={data}/train_list.txt",
              "-o", f"DataLoader.Eval.dataset.image_root={data}",
              "-o", f"DataLoader.Eval.dataset.cls_label_path={data}/val_list.txt", "-o", "Global.use_visualdl=False"]
    r = run_tool("train.py", *common, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_tool("eval.py", *common, "-o", f"Global.pretrained_model={tmp_path}/output/DLA46_c/best_model")
    loss, top1, n = eval_avg(r.stdout)
    assert n == 359 and top1 >= 0.95, top1
