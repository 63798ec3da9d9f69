"""The quick start's bar: the demo dataset, DLA46_c trained with its config, val top-1 >= 0.95; its INT8
model (tools/quantize.py, 200 calibration images) within 0.5 points of fp32 top-1 on the same 359 images."""
import os
import re

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
              "-o", f"DataLoader.Eval.dataset.cls_label_path={data}/val_list.txt", "-o", "Global.use_visualdl=False",
              "-o", f"Infer.PostProcess.class_id_map_file={data}/label_list.txt"]
    r = run_tool("train.py", *common, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_tool("eval.py", *common, "-o", f"Global.pretrained_model={tmp_path}/output/DLA46_c/best_model")
    loss, top1, n = eval_avg(r.stdout)
    assert n == 359 and top1 >= 0.95, top1
    weights = f"{tmp_path}/output/DLA46_c/best_model"
    inf = str(tmp_path / "inference")
    r = run_tool("export_model.py", *common, "-o", f"Global.pretrained_model={weights}",
                 "-o", f"Global.save_inference_dir={inf}", "-o", "Global.backend_probe=False")
    assert r.returncode == 0, r.stderr[-2000:]
    pytest.importorskip("onnxruntime")
    r = run_tool("quantize.py", *common, "--model-dir", inf, "--out", str(tmp_path / "int8"), "--calib-images", "200",
                 timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    m = re.search(r"^fp32 top1: ([0-9.]+) int8 top1: ([0-9.]+)$", r.stdout, re.M)
    fp32, int8 = float(m.group(1)), float(m.group(2))
    print(f"QUICK_START top1 eval {top1:.5f} fp32 export {fp32:.5f} int8 {int8:.5f}")
    assert fp32 == pytest.approx(top1, abs=1.5 / 359)  # the exported graph scores what the checkpoint did (±1 image)
    assert abs(fp32 - int8) <= 0.005 + 1e-9, (fp32, int8)
