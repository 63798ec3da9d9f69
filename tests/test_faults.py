"""Fault injection: kills during training and during checkpoint saves, full disks, non-finite losses,
a dying worker process, broken loader workers. Every case must lose nothing but the interrupted work."""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

from engine_utils import ROOT, run_tool, tiny_config
from ppcls.engine import Engine
from ppcls.engine.checkpoint import load_checkpoint
from ppcls.schema import get_config
from ppcls.utils.errors import RunError

pytestmark = [pytest.mark.slow, pytest.mark.launch]

# Runs tools/train.py after patching ppcls for a fault: FAULT=save:<n> exits hard (like kill -9) in the
# middle of the n-th checkpoint save, after its weights file was replaced and before its states file
# (a step is written once, under latest; its other names are links: tests/test_resume_kill.py).
INJECT = r'''
import os, sys
sys.path.insert(0, ROOT)
fault = os.environ.get("FAULT", "")
if fault.startswith("save:"):
    import ppcls.engine.checkpoint as ck
    limit = int(fault.split(":")[1]); calls = [0]; orig = ck.atomic_save
    def atomic_save(obj, path):
        orig(obj, path)
        if path.endswith(".pdparams") and not path.endswith(".ema.pdparams"):
            calls[0] += 1
            if calls[0] == limit:
                os._exit(137)
    ck.atomic_save = atomic_save
if fault == "rank1":
    import ppcls.engine.loop as L
    if os.environ.get("PADDLE_TRAINER_ID") == "1":
        def boom(self, *a, **k):
            raise RuntimeError("injected failure on rank 1")
        L.TrainLoop.run_epoch = boom
from ppcls.cli import run
run("train")
'''


def injector(tmp_path):
    path = os.path.join(str(tmp_path), "inject.py")
    with open(path, "w") as f:
        f.write(f"ROOT = {ROOT!r}\n" + INJECT)
    return path


def weights(prefix):
    return {k: np.asarray(v) for k, v in paddle.load(prefix + ".pdparams").items()}


def same_weights(a, b):
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def config(tmp_path, **extra):
    return tiny_config(tmp_path, epochs=2, extra={"Global": dict({"eval_during_train": False}, **extra)})[0]


def test_kill_9_during_training_then_resume_is_bit_exact(tmp_path):
    path = config(tmp_path, save_interval_iters=2)
    ref = os.path.join(str(tmp_path), "ref")
    r = run_tool("train.py", "-c", path, "-o", f"Global.output_dir={ref}")
    assert r.returncode == 0, r.stderr[-2000:]
    out = os.path.join(str(tmp_path), "killed")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "train.py"), "-c", path, "-o",
                             f"Global.output_dir={out}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # kill -9 in the middle of epoch 2
        if "[Train][Epoch 2/2][Iter: 5/10]" in line:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    states = paddle.load(os.path.join(out, "ResNet18", "latest.pdstates"))
    assert states["epoch"] == 2 and 0 < states["iter"] <= 6  # lost at most 2 iterations
    r = run_tool("train.py", "-c", path, "-o", f"Global.output_dir={out}",
                 "-o", f"Global.checkpoints={out}/ResNet18/latest")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"iteration {states['iter']}" in r.stdout
    assert same_weights(os.path.join(ref, "ResNet18", "latest"), os.path.join(out, "ResNet18", "latest"))


def test_kill_during_checkpoint_save_falls_back_to_previous(tmp_path):
    path = config(tmp_path)
    out = os.path.join(str(tmp_path), "out")
    # saves: latest (+ epoch_1) (1), latest (+ epoch_2) (2): die inside the second save of latest
    env = dict(os.environ, FAULT="save:2")
    r = subprocess.run([sys.executable, injector(tmp_path), "-c", path, "-o", f"Global.output_dir={out}"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 137, r.stderr[-2000:]
    prefix = os.path.join(out, "ResNet18", "latest")
    model, opt, states, _ = load_checkpoint(prefix)
    assert states["epoch"] == 1 and states["loaded_from"].endswith("latest.bak")
    # the resumed run finishes epoch 2 and equals an uninterrupted run
    r = run_tool("train.py", "-c", path, "-o", f"Global.output_dir={out}", "-o", f"Global.checkpoints={prefix}")
    assert r.returncode == 0 and f"{prefix} was not saved completely" in r.stdout, r.stderr[-2000:]
    assert re.search(r"restored it from \S+/(latest\.bak|epoch_1) \(epoch 1\)", r.stdout)  # the same bytes
    ref = os.path.join(str(tmp_path), "ref")
    assert run_tool("train.py", "-c", path, "-o", f"Global.output_dir={ref}").returncode == 0
    assert same_weights(os.path.join(ref, "ResNet18", "latest"), prefix)


def test_full_disk_during_save_names_the_path_and_keeps_previous(tmp_path, monkeypatch):
    path = config(tmp_path)
    import ppcls.utils.save_load as sl
    orig = sl.paddle.save
    calls = [0]

    def failing_save(obj, p, *a, **k):
        calls[0] += 1
        if calls[0] > 3:  # epoch 1 writes latest (3 files; epoch_1 links to them); then the disk is full
            with open(p, "wb") as f:
                f.write(b"\0" * 10)
            raise OSError(28, "No space left on device")
        return orig(obj, p, *a, **k)
    monkeypatch.setattr(sl.paddle, "save", failing_save)
    eng = Engine(get_config(path), "train")
    with pytest.raises(RunError, match=r"could not save .*latest\.pdparams: \[Errno 28\] No space left"):
        eng.train()
    out = os.path.join(str(tmp_path), "output", "ResNet18")
    assert not [f for f in os.listdir(out) if ".tmp" in f]  # no half-written files left behind
    _, _, states, _ = load_checkpoint(os.path.join(out, "latest"))
    assert states["epoch"] == 1


def test_non_finite_loss_stops_with_epoch_and_iteration(tmp_path):
    path = config(tmp_path)
    r = run_tool("train.py", "-c", path, "-o", "Optimizer.lr.learning_rate=1.0e+30")
    assert r.returncode == 3, r.stderr[-2000:]  # a failed run, not a user mistake (2)
    assert "non-finite loss at epoch 1, iteration" in r.stderr and "Traceback" not in r.stderr
    out = os.path.join(str(tmp_path), "output", "ResNet18")
    assert not os.path.exists(os.path.join(out, "latest.pdparams"))  # nothing written from NaN weights


def test_dying_worker_fails_the_launch_promptly(tmp_path):
    path = config(tmp_path)
    env = dict(os.environ, FAULT="rank1")
    log_dir = os.path.join(str(tmp_path), "log")
    start = time.time()
    r = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
                        log_dir, injector(tmp_path), "-c", path], capture_output=True, text=True, env=env,
                       timeout=300, cwd=str(tmp_path))
    assert r.returncode != 0
    assert time.time() - start < 120
    assert "failed" in (r.stdout + r.stderr).lower()
    log1 = open(os.path.join(log_dir, "workerlog.1")).read()
    assert "rank 1 failed: RuntimeError: injected failure on rank 1" in log1


def test_bad_image_in_loader_worker_fails_cleanly(tmp_path):
    path, data = tiny_config(tmp_path, epochs=1, num_workers=2, extra={"Global": {"skip_bad_images": False}})
    with open(os.path.join(data, "bad.jpg"), "wb") as f:
        f.write(b"not a jpeg")
    with open(os.path.join(data, "train_list.txt"), "w") as f:
        f.write("bad.jpg 0\n" * 30)
    r = run_tool("train.py", "-c", path, timeout=180)
    assert r.returncode != 0 and "bad.jpg" in (r.stdout + r.stderr)
