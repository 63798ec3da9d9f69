"""The seed project's run scripts, through their CPU fallback on a tiny dataset."""
import os
import subprocess

import pytest

from engine_utils import ROOT
from datasets import make_synthetic_dataset

pytestmark = [pytest.mark.slow, pytest.mark.launch]


def test_run_train_and_test_dla60_on_cpu(tmp_path):
    data = str(tmp_path / "data")
    make_synthetic_dataset(data, num_classes=2, per_class=4, size=64, val_per_class=2)
    env = dict(os.environ, DEVICE="cpu", NPROC="2", DATA_ROOT=data, LOG_DIR=str(tmp_path / "log"))
    common = ["-o", "Global.epochs=1", "-o", f"Global.output_dir={tmp_path}/out", "-o", "Arch.class_num=2",
              "-o", "DataLoader.Train.sampler.batch_size=2", "-o", "DataLoader.Eval.sampler.batch_size=2",
              "-o", "DataLoader.Train.loader.num_workers=0", "-o", "DataLoader.Eval.loader.num_workers=0",
              "-o", "DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=64",
              "-o", "DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short=64",
              "-o", "DataLoader.Eval.dataset.transform_ops.2.CropImage.size=64"]
    r = subprocess.run(["bash", os.path.join(ROOT, "run_train_dla60_best.sh"), *common], env=env, cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert os.path.isfile(tmp_path / "log" / "workerlog.1")
    assert os.path.isfile(tmp_path / "out" / "DLA60" / "latest.pdparams")
    r = subprocess.run(["bash", os.path.join(ROOT, "run_test_dla60_best.sh"), *common[2:],
                        "-o", f"Global.pretrained_model={tmp_path}/out/DLA60/latest"],
                       env=dict(env, DEVICE="cpu"), cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "[Eval][Epoch 0][Avg]" in r.stdout, (r.stdout + r.stderr)[-3000:]
