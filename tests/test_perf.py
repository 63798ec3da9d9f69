"""Performance features: thread count, to_static training per family, AMP on CPU, the benchmark tool,
and the input pipeline keeping up with training."""
import json
import os
import re

import numpy as np
import pytest

from engine_utils import ROOT, run_tool, tiny_config
from learning import (assert_finite, assert_learns, assert_moved, assert_reloads_to_same_outputs,
                      biases_before_batchnorm, overfit_losses, parameters, record_losses)
from ppcls.arch import list_models
from ppcls.engine import Engine
from ppcls.schema import get_config

# one representative per family (each is tested where its family is registered)
FAMILY_MAIN = ["ResNet18", "DLA34", "RLA_ResNet50", "ReXNet_1_0", "AttentionNet56", "AttentionNet56_CIFAR"]


def test_engine_sets_cpu_threads(tmp_path, monkeypatch):
    import paddle
    calls = []
    monkeypatch.setattr(paddle.base.core, "set_num_threads", lambda n: calls.append(n))
    path, _ = tiny_config(tmp_path)
    from ppcls.utils.device import available_cores
    Engine(get_config(path), "eval")
    Engine(get_config(path, ["Global.cpu_threads=1"]), "eval")
    assert calls == [available_cores(), 1]


@pytest.mark.slow
@pytest.mark.parametrize("arch", FAMILY_MAIN)
def test_to_static_training(tmp_path, arch):
    if arch not in list_models():
        pytest.skip(f"{arch} not registered")
    size = 32 if arch.endswith("CIFAR") or arch == "ResNet18" else 64
    path, _ = tiny_config(tmp_path, arch=arch, epochs=1, per_class=4, size=size, batch_size=4,
                          extra={"Global": {"to_static": True, "eval_during_train": False}})
    eng = Engine(get_config(path), "train")
    before, steps = parameters(eng.model), record_losses(eng)
    assert eng.train().timing.iters >= 1
    # the compiled program trains the dygraph parameters: they moved, every loss finite, and it learns
    assert_finite(steps)
    assert_moved(before, eng.model, exempt=biases_before_batchnorm(eng.model))
    import paddle
    assert_learns(overfit_losses(eng, model=paddle.jit.to_static(eng.model, full_graph=True)))


def test_amp_config_trains_in_fp32_on_cpu(tmp_path):
    path, _ = tiny_config(tmp_path, epochs=1, per_class=4, batch_size=4,
                          extra={"AMP": {"use_amp": True, "level": "O2"}, "Global": {"eval_during_train": False}})
    eng = Engine(get_config(path), "train")
    assert eng.amp.enabled is False  # Paddle's autocast does nothing on CPU: we say so and train in fp32
    before, steps = parameters(eng.model), record_losses(eng)
    eng.train()
    assert_finite(steps)
    assert all(logits.dtype == np.float32 for logits, _, _ in steps)
    assert_moved(before, eng.model)
    from ppcls.arch import build_model
    from ppcls.utils.save_load import load_state_file
    images, _ = next(iter(eng.train_loader))
    saved = load_state_file(os.path.join(str(tmp_path), "output", "ResNet18", "latest.pdparams"))
    assert all(v.dtype == np.float32 for v in saved.values() if v.dtype.kind == "f")
    assert_reloads_to_same_outputs(eng.model, lambda: build_model(eng.config["Arch"]), saved, images)
    assert_learns(overfit_losses(eng))


def test_benchmark_tool_table(tmp_path):
    r = run_tool("benchmark.py", "-a", "ResNet18", "--batch-size", "2", "--image-size", "32",
                 "--mode", "train,amp_o1,infer,predictor", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    by_mode = {row["mode"]: row for row in rows}
    assert by_mode["train"]["images_per_s"] > 0 and by_mode["predictor"]["images_per_s"] > 0
    assert by_mode["amp_o1"]["images_per_s"] is None and "GPU" in by_mode["amp_o1"]["note"]


@pytest.mark.slow
@pytest.mark.timing
def test_pipeline_keeps_up_with_dla60_training(tmp_path):
    """The DLA60 training config's pipeline with 2 workers delivers >= 3x the images/s of a DLA60
    training step, and the reader is < 5% of the step in an engine run."""
    if "DLA60" not in list_models():
        pytest.skip("DLA60 not registered")
    from datasets import make_jpeg_list
    from ppcls.benchmark import bench_data, bench_train, bench_train_pipeline
    photos = str(tmp_path / "photos")
    lst = make_jpeg_list(photos, 48)
    data_overrides = [f"DataLoader.Train.dataset.image_root={photos}", f"DataLoader.Train.dataset.cls_label_path={lst}",
                      "Arch.class_num=10"]
    cfg = os.path.join(ROOT, "configs", "ImageNet", "DLA", "DLA60.yaml")
    data, _ = bench_data(get_config(cfg, data_overrides), batch=16, workers=2, epochs=2)
    train, _ = bench_train("DLA60", 16, 224, warmup=1, windows=1, iters=1)
    assert data["images_per_s"] >= 3 * train["images_per_s"], (data, train)
    pipe, _ = bench_train_pipeline(get_config(cfg, data_overrides + [
        "Global.epochs=1", "Global.eval_during_train=False", "Global.print_batch_step=1000", "Global.device=cpu",
        f"Global.output_dir={tmp_path}/out", "DataLoader.Train.sampler.batch_size=8",
        "DataLoader.Train.loader.num_workers=2", "DataLoader.Train.dataset.batch_transform_ops=null"]))
    assert pipe["reader_share"] < 0.05, pipe
