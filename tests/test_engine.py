"""End-to-end: train -> eval -> resume on generated images, outputs, logs, VisualDL, bad inputs."""
import os
import re

import numpy as np
import paddle
import pytest

from engine_utils import eval_avg, run_tool, tiny_config
from ppcls.engine import Engine
from ppcls.schema import get_config
from ppcls.utils.errors import ConfigError


def train(path, *overrides):
    eng = Engine(get_config(path, list(overrides)), "train")
    best = eng.train().best_metric
    return eng, best


def weights(prefix):
    return {k: np.asarray(v) for k, v in paddle.load(prefix + ".pdparams").items()}


@pytest.fixture(scope="module")
def trained(module_tmp):
    tmp = module_tmp("run")
    path, data = tiny_config(tmp, epochs=3, extra={"Global": {"use_visualdl": True}})
    eng, best = train(path)
    return tmp, path, eng, best


def test_outputs_and_log_format(trained):
    tmp, path, eng, best = trained
    out = os.path.join(tmp, "output", "ResNet18")
    for name in ("latest", "best_model", "epoch_1", "epoch_2", "epoch_3"):
        for suffix in (".pdparams", ".pdopt", ".pdstates"):
            assert os.path.isfile(os.path.join(out, name + suffix)), name + suffix
    states = paddle.load(os.path.join(out, "latest.pdstates"))
    assert states["epoch"] == 3 and states["metric"] == pytest.approx(best)
    log = open(os.path.join(out, "train.log")).read()
    step = re.compile(r"^\[\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\] ppcls INFO: \[Train\]\[Epoch 2/3\]\[Iter: 1/10\]"
                      r"lr\(LinearWarmup\): \d+\.\d{8}, top1: \d\.\d{5}, top2: \d\.\d{5}, CELoss: \d+\.\d{5}, "
                      r"loss: \d+\.\d{5}, batch_cost: \d+\.\d{5}s, reader_cost: \d+\.\d{5}, "
                      r"ips: \d+\.\d{5} samples/s, eta: \d+:\d\d:\d\d$", re.M)
    assert step.search(log), log[-3000:]
    assert re.search(r"\[Eval\]\[Epoch 3\]\[Avg\]CELoss: \d+\.\d{5}, loss: \d+\.\d{5}, top1: \d\.\d{5}, top2: \d\.\d{5}", log)
    assert re.search(r"\[Eval\]\[Epoch \d\]\[best metric: [0-9.]+\]", log)
    assert "Already save model in " + os.path.join(out, "latest") in log


def test_training_learns_the_toy_task(trained):
    _, _, eng, best = trained
    assert best >= 0.66, best  # 3 classes; chance is 0.33


def test_visualdl_scalars(trained):
    tmp = trained[0]
    from visualdl import LogReader
    vdl = os.path.join(tmp, "output", "vdl")
    files = [f for f in os.listdir(vdl) if f.startswith("vdlrecords")]
    assert files
    reader = LogReader(file_path=os.path.join(vdl, files[0]))
    tags = set(reader.get_tags()["scalar"])
    assert {"train_loss", "train_CELoss", "train_top1", "eval_acc", "eval_top2", "eval_loss",
            "lr(LinearWarmup)"} <= tags, tags
    assert len(reader.get_data("scalar", "eval_acc")) == 3
    # the confusion matrix of every evaluated epoch, as an image record
    images = reader.get_data("image", "eval/confusion_matrix")
    assert [r.id for r in images] == [1, 2, 3]


def test_eval_tool_matches_training_eval(trained):
    tmp, path, eng, best = trained
    prefix = os.path.join(tmp, "output", "ResNet18", "best_model")
    r = run_tool("eval.py", "-c", path, "-o", f"Global.pretrained_model={prefix}")
    assert r.returncode == 0, r.stderr[-2000:]
    loss, top1, n = eval_avg(r.stdout)
    assert n == 12 and top1 == pytest.approx(best, abs=1e-5)


def test_resume_equals_uninterrupted_run(trained, tmp_path):
    tmp, path, eng, best = trained
    src = os.path.join(tmp, "output", "ResNet18")
    out2 = os.path.join(str(tmp_path), "out2")
    eng2, best2 = train(path, f"Global.checkpoints={src}/epoch_1", f"Global.output_dir={out2}",
                        "Global.use_visualdl=False")
    a = weights(os.path.join(src, "latest"))
    b = weights(os.path.join(out2, "ResNet18", "latest"))
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    s1 = paddle.load(os.path.join(src, "epoch_1.pdstates"))
    s2 = paddle.load(os.path.join(out2, "ResNet18", "latest.pdstates"))
    assert s2["epoch"] == 3 and s2["metric"] >= s1["metric"]  # best metric restored, not reset to 0
    assert best2 == pytest.approx(best)


def test_mid_epoch_resume_is_bit_exact(tmp_path):
    # 24 images, 2 iterations an epoch: iteration 1 of epoch 2 is still mid-epoch, and saving every iteration
    # writes 4 ResNet18 checkpoints (90 MB each), not the 20 of the default 120 images
    path, _ = tiny_config(tmp_path, epochs=2, per_class=8, extra={"Global": {"eval_during_train": False}})
    full_out = os.path.join(str(tmp_path), "full")
    train(path, f"Global.output_dir={full_out}")
    part_out = os.path.join(str(tmp_path), "part")
    # save every iteration; keep the mid-epoch checkpoint of epoch 2, iteration 1
    cfg = get_config(path, [f"Global.output_dir={part_out}", "Global.save_interval_iters=1"])
    eng = Engine(cfg, "train")
    import shutil
    saved = {}
    orig = eng.checkpoints.save

    def spy(name, states):
        orig(name, states)
        if name == "latest" and states["epoch"] == 2 and states["iter"] == 1:
            for s in (".pdparams", ".pdopt", ".pdstates"):
                shutil.copy(os.path.join(part_out, "ResNet18", "latest" + s), os.path.join(str(tmp_path), "mid" + s))
            saved["ok"] = True
    eng.checkpoints.save = spy
    eng.train()
    assert saved
    resumed_out = os.path.join(str(tmp_path), "resumed")
    train(path, f"Global.output_dir={resumed_out}", f"Global.checkpoints={tmp_path}/mid")
    a = weights(os.path.join(full_out, "ResNet18", "latest"))
    b = weights(os.path.join(resumed_out, "ResNet18", "latest"))
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_corrupt_image_is_skipped_and_counted(tmp_path):
    path, data = tiny_config(tmp_path, epochs=1, extra={"Global": {"eval_during_train": False}})
    with open(os.path.join(data, "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8 truncated jpeg")
    with open(os.path.join(data, "train_list.txt"), "a") as f:
        f.write("broken.jpg 1\nnot_there.jpg 2\n")
    r = run_tool("train.py", "-c", path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipped unreadable image " + os.path.join(data, "broken.jpg") in r.stdout
    assert "skipped unreadable image " + os.path.join(data, "not_there.jpg") in r.stdout
    assert re.search(r"\d+ unreadable training images were skipped", r.stdout)
    r = run_tool("train.py", "-c", path, "-o", "Global.skip_bad_images=False")
    assert r.returncode == 2 and "unreadable image" in r.stderr and "Traceback" not in r.stderr


def test_pretrained_finetune_other_class_num_and_wrong_arch(trained, tmp_path):
    tmp = trained[0]
    prefix = os.path.join(tmp, "output", "ResNet18", "best_model")
    path, _ = tiny_config(tmp_path, epochs=1, num_classes=5)
    eng = Engine(get_config(path, [f"Global.pretrained_model={prefix}"]), "eval")
    src = paddle.load(prefix + ".pdparams")
    assert np.array_equal(eng.model.conv1.weight.numpy(), src["conv1.weight"].numpy())
    assert eng.model.fc.weight.shape == [512, 5]
    with pytest.raises(ConfigError, match="does not fit|not a checkpoint"):
        Engine(get_config(path, [f"Global.pretrained_model={prefix}", "Arch.name=MobileNetV2"]), "eval")
    r = run_tool("train.py", "-c", path, "-o", f"Global.checkpoints={prefix}", "-o", "Arch.name=ResNet34")
    assert r.returncode == 2 and "not a checkpoint of ResNet34" in r.stderr


def test_truncated_checkpoint_is_reported(trained, tmp_path):
    tmp, path = trained[0], trained[1]
    src = os.path.join(tmp, "output", "ResNet18", "epoch_1")
    dst = os.path.join(str(tmp_path), "trunc")
    for s in (".pdparams", ".pdopt", ".pdstates"):
        data = open(src + s, "rb").read()
        open(dst + s, "wb").write(data[: len(data) // 2] if s == ".pdparams" else data)
    r = run_tool("train.py", "-c", path, "-o", f"Global.checkpoints={dst}")
    assert r.returncode == 2 and "does not belong to" in r.stderr, r.stderr[-1000:]
    r = run_tool("eval.py", "-c", path, "-o", f"Global.pretrained_model={dst}")
    assert r.returncode == 2 and "unreadable or truncated" in r.stderr, r.stderr[-1000:]


def test_mixup_label_smoothing_ema_train(tmp_path):
    path, _ = tiny_config(tmp_path, epochs=1, extra={
        "EMA": {"decay": 0.9},
        "Loss": {"Train": [{"CELoss": {"weight": 1.0, "epsilon": 0.1}}]},
        "DataLoader": {"Train": {"dataset": {"batch_transform_ops": [{"MixupOperator": {"alpha": 0.2}}]}}}})
    from learning import assert_finite, record_losses
    from ppcls.utils.save_load import load_state_file
    eng = Engine(get_config(path), "train")
    # what the loop trains on: the labels and numpy's random state each batch is mixed with, the loss's
    # inputs, and an EMA of one weight computed beside the engine's
    batches, mix, steps = [], eng.batch_ops, record_losses(eng)

    def recording_mix(images, labels, epoch=1):
        batches.append((labels.numpy().reshape(-1), np.random.get_state()))
        return mix(images, labels, epoch)
    eng.batch_ops = recording_mix
    ema_ref = [eng.model.state_dict()["fc.weight"].numpy().copy()]
    ema_update = eng.ema.update

    def recording_update(model):
        ema_update(model)
        ema_ref[0] = 0.9 * ema_ref[0] + 0.1 * model.state_dict()["fc.weight"].numpy()
    eng.ema.update = recording_update
    eng.train()
    assert_finite(steps)
    assert len(batches) == len(steps) == len(eng.train_loader)
    mixed = 0
    for (labels, rng), (logits, targets, loss) in zip(batches, steps):
        np.random.set_state(rng)
        lam, perm = np.random.beta(0.2, 0.2), np.random.permutation(len(labels))
        onehot = np.eye(3, dtype=np.float32)[labels]
        np.testing.assert_allclose(targets, lam * onehot + (1 - lam) * onehot[perm], rtol=1e-5, atol=1e-6)
        mixed += not np.array_equal(targets, onehot)
        # CELoss with epsilon 0.1 smooths the mixed targets uniformly over the 3 classes
        log_p = logits - logits.max(1, keepdims=True)
        log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
        assert loss == pytest.approx(float(-(((1 - 0.1) * targets + 0.1 / 3) * log_p).sum(1).mean()), rel=1e-4)
    assert mixed > 0
    out = os.path.join(str(tmp_path), "output", "ResNet18")
    ema_saved = load_state_file(os.path.join(out, "latest.ema.pdparams"))["fc.weight"]
    np.testing.assert_allclose(eng.ema.model.state_dict()["fc.weight"].numpy(), ema_ref[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ema_saved, ema_ref[0], rtol=1e-4, atol=1e-6)
    assert not np.allclose(ema_saved, eng.model.state_dict()["fc.weight"].numpy())
    log = open(os.path.join(out, "train.log")).read()
    assert "[Eval][Epoch 1][Avg]EMA " in log and "top1" not in log.split("[Train][Epoch 1/1][Avg]")[1].splitlines()[0]
