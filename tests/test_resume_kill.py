"""Crash-safe checkpoints: a kill at any point of any save (before, during and after every file, every
link, every backup removal; first saves and mid-epoch saves included) resumes to what an uninterrupted
run ends with; one copy on disk per step; an interrupted save falls back to the newest complete
checkpoint of the run directory, by recorded epoch and iteration."""
import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest

import kill_points
from engine_utils import ROOT, run_tool, tiny_config
from ppcls.engine import checkpoint as ck
from ppcls.utils.errors import ConfigError

# A run's saves as the engine makes them: (names, epoch, iteration); iteration > 0 is a mid-epoch save
STEPS = [
    (["latest"], 1, 2),
    (["latest", "best_model", "epoch_1"], 1, 0),
    (["latest"], 2, 2),
    (["latest", "epoch_2"], 2, 0),
    (["latest", "best_model", "epoch_3"], 3, 0),
]


def step_parts(i):
    rng = np.random.RandomState(i)
    model = {"w": rng.rand(3, 5).astype("float32"), "b": np.full([5], i, "float32")}
    opt = {"w@velocity": rng.rand(3, 5).astype("float32"), "LR_Scheduler": {"last_epoch": i}}
    ema = {"w": model["w"] * 0.5, "b": model["b"]}
    _, epoch, it = STEPS[i]
    return model, opt, dict(epoch=epoch, iter=it, metric=0.1 * i, best_epoch=epoch, global_step=i), ema


def run_steps(directory, first=0, record=None):
    for i in range(first, len(STEPS)):
        if record:
            with open(record, "a") as f:
                f.write(f"step {i}\n")
        model, opt, states, ema = step_parts(i)
        ck.save_checkpoint([os.path.join(directory, n) for n in STEPS[i][0]], model, opt, states, ema)


def step_index(states):
    return next(i for i, (_, e, it) in enumerate(STEPS) if (e, it) == (states["epoch"], states["iter"]))


def assert_holds_step(prefix, i):
    model, opt, states, ema = ck.load_checkpoint(prefix)
    assert states["loaded_from"] == prefix and step_index(states) == i
    want_model, want_opt, _, want_ema = step_parts(i)
    for got, want in ((model, want_model), (ema, want_ema)):
        assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    assert np.array_equal(opt["w@velocity"], want_opt["w@velocity"])


def in_child(fn):
    """Run ``fn`` in a forked process (kill_points ends it with os._exit); returns its exit code."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.fixture
def no_fsync(monkeypatch):
    # a kill is a process crash, not a power cut: what fsync guards against is not under test here
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.mark.parametrize("points_tried", [
    "first of each kind in each save",
    pytest.param("all", marks=pytest.mark.slow),  # about 190 points, 30 s
])
def test_kill_at_every_point_of_every_save_resumes_to_the_uninterrupted_result(tmp_path, no_fsync, points_tried):
    ref = str(tmp_path / "ref")
    os.makedirs(ref)
    record = str(tmp_path / "points.txt")
    assert in_child(lambda: (kill_points.install(None, ref, record), run_steps(ref, record=record))) == 0
    points, step = [], None
    for line in open(record).read().split("\n"):
        if line.startswith("step "):
            step = int(line.split()[1])
        elif line:
            points.append((line, step))
    # every kind of point of the protocol is reached
    kinds = {p.split("@")[0].split(":")[0] + ":" + p.split(":")[1] for p, _ in points}
    assert kinds == {"before:replace", "after:replace", "during:write", "during:link", "before:unlink",
                     "after:unlink"}, kinds
    assert len(points) > 80
    # one copy per step: the names of the last step share their files, nothing else is left
    names = sorted(os.listdir(ref))
    assert names == sorted(f"{n}{s}" for n in ("latest", "best_model", "epoch_1", "epoch_2", "epoch_3")
                           for s in (".pdparams", ".pdopt", ".ema.pdparams", ".pdstates"))
    for s in (".pdparams", ".pdopt", ".ema.pdparams", ".pdstates"):
        assert os.stat(f"{ref}/latest{s}").st_ino == os.stat(f"{ref}/epoch_3{s}").st_ino \
            == os.stat(f"{ref}/best_model{s}").st_ino
    commit = {}  # the point at which each step's save is complete under its first name
    for p, i in points:
        if p.startswith("after:replace:latest.pdstates"):
            commit.setdefault(i, p)

    kinds_seen = set()
    for n, (p, i) in enumerate(points):
        kind = (p.split("@")[0].split(":")[0] + ":" + p.split(":")[1], i)
        if points_tried != "all" and kind in kinds_seen:
            continue
        kinds_seen.add(kind)
        out = str(tmp_path / f"k{n}")
        os.makedirs(out)
        assert in_child(lambda: (kill_points.install(p, out), run_steps(out))) == kill_points.KILL_EXIT, p
        ck.recover(out)
        assert not [f for f in os.listdir(out) if f.startswith(".tmp_")], p
        done = [j for j, q in commit.items() if points.index((q, j)) <= n]
        expect = max(done) if done else -1  # the save cut short is lost, and only that one
        if expect < 0:
            with pytest.raises(ConfigError, match="holds no complete checkpoint"):
                ck.load_checkpoint(os.path.join(out, "latest"))
        else:
            assert_holds_step(os.path.join(out, "latest"), expect)
            for name in STEPS[expect][0]:  # recover() finished the links a kill cut short
                assert_holds_step(os.path.join(out, name), expect)
        run_steps(out, expect + 1)
        assert sorted(os.listdir(out)) == names, p
        for name in ("latest", "best_model", "epoch_1", "epoch_2", "epoch_3"):
            i_ref = step_index(ck.load_checkpoint(os.path.join(ref, name))[2])
            assert_holds_step(os.path.join(out, name), i_ref)
        shutil.rmtree(out)


def write(prefix, i, names=None, ema=True):
    model, opt, states, e = step_parts(i)
    ck.save_checkpoint([prefix] + [os.path.join(os.path.dirname(prefix), n) for n in names or []], model, opt,
                       states, e if ema else None)


def test_issue_first_save_killed_falls_back_to_epoch_1(tmp_path, monkeypatch):
    """The layout the issue met (written by the previous code, file by file): epoch_1 and best_model
    complete, latest.pdparams complete, latest.pdopt not (a 0-byte temp file), no latest.pdstates."""
    d = str(tmp_path)
    warnings = []
    monkeypatch.setattr(ck.logger, "warning", warnings.append)
    write(f"{d}/epoch_1", 1)
    write(f"{d}/best_model", 1)
    model, _, _, _ = step_parts(1)
    paddle.save(model, f"{d}/latest.pdparams")
    open(f"{d}/.tmp_latest.pdopt.x1y2z3", "wb").close()
    removed, _ = ck.recover(d)
    assert removed == 1 and not os.path.exists(f"{d}/.tmp_latest.pdopt.x1y2z3")
    _, _, states, _ = ck.load_checkpoint(f"{d}/latest")
    assert states["loaded_from"] == f"{d}/best_model" and step_index(states) == 1
    warning = [w for w in warnings if "resuming from" in w]
    assert warning and "latest.pdopt not found" in warning[0] and f"{d}/best_model (epoch 1)" in warning[0]
    os.remove(f"{d}/latest.pdparams")  # killed within half a second of epoch_1: latest did not exist yet
    assert ck.load_checkpoint(f"{d}/latest")[2]["epoch"] == 1


def test_fallback_takes_the_newest_by_recorded_epoch_and_iteration(tmp_path):
    d = str(tmp_path)
    write(f"{d}/epoch_1", 1)             # end of epoch 1
    write(f"{d}/zz_mid", 2)              # epoch 2, iteration 2: newer than epoch_1, whatever the names
    write(f"{d}/a_old", 0)               # epoch 1, iteration 2: older
    write(f"{d}/best_model", 3)          # end of epoch 2: the newest, but truncated below
    with open(f"{d}/best_model.pdopt", "rb+") as f:
        f.truncate(10)
    with open(f"{d}/latest.pdparams", "wb") as f:
        f.write(b"partial")
    _, _, states, _ = ck.load_checkpoint(f"{d}/latest")
    assert states["loaded_from"] == f"{d}/zz_mid"


def test_no_complete_checkpoint_names_the_file(tmp_path):
    d = str(tmp_path)
    with pytest.raises(ConfigError, match=r"latest\.pdparams not found, and .* holds no complete checkpoint "
                                          r"\(give the prefix without suffix"):
        ck.load_checkpoint(f"{d}/latest")
    write(f"{d}/latest", 1)
    with open(f"{d}/latest.pdparams", "rb+") as f:
        f.truncate(100)
    with pytest.raises(ConfigError, match=r"latest\.pdparams does not belong to .*latest\.pdstates"):
        ck.load_checkpoint(f"{d}/latest")
    with pytest.raises(ConfigError, match="give the prefix without suffix"):
        ck.load_checkpoint(f"{d}/latest.pdparams")


def test_copies_where_the_filesystem_has_no_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst, *a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_links)
    d = str(tmp_path)
    for i in range(len(STEPS)):
        write(f"{d}/latest", i, names=STEPS[i][0][1:])
    assert os.stat(f"{d}/latest.pdparams").st_ino != os.stat(f"{d}/epoch_3.pdparams").st_ino
    for name, i in (("latest", 4), ("epoch_3", 4), ("best_model", 4), ("epoch_1", 1), ("epoch_2", 3)):
        assert_holds_step(f"{d}/{name}", i)
    assert not [f for f in os.listdir(d) if ".bak" in f or f.startswith(".tmp_")]


def test_a_later_save_never_changes_a_linked_name(tmp_path):
    d = str(tmp_path)
    write(f"{d}/latest", 1, names=["epoch_1"])
    before = open(f"{d}/epoch_1.pdparams", "rb").read()
    write(f"{d}/latest", 2)
    assert open(f"{d}/epoch_1.pdparams", "rb").read() == before
    assert_holds_step(f"{d}/epoch_1", 1)
    assert_holds_step(f"{d}/latest", 2)
    write(f"{d}/latest", 3, ema=False)  # EMA turned off: its stale file goes, the states do not list it
    assert not os.path.exists(f"{d}/latest.ema.pdparams") and ck.load_checkpoint(f"{d}/latest")[3] is None


# -- real runs of tools/train.py killed at named points, resumed, compared bit for bit ----------------------
INJECT = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
import kill_points
kill_points.installed_from_env()
from ppcls.cli import run
run("train")
"""


def train_config(tmp_path):
    # 36 images, batches of 12: 3 iterations an epoch; a mid-epoch save of latest after iteration 2
    return tiny_config(tmp_path, epochs=2, per_class=12, extra={"Global": {"save_interval_iters": 2}})[0]


def files_equal(a, b):
    return open(a, "rb").read() == open(b, "rb").read()


@pytest.fixture(scope="module")
def reference(module_tmp):
    tmp = module_tmp("ref")
    path = train_config(tmp)
    out = os.path.join(str(tmp), "out")
    r = run_tool("train.py", "-c", path, "-o", f"Global.output_dir={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    return path, os.path.join(out, "ResNet18")


def kill_and_resume(tmp_path, path, point):
    out = os.path.join(str(tmp_path), "out")
    run_dir = os.path.join(out, "ResNet18")
    inject = os.path.join(str(tmp_path), "inject.py")
    with open(inject, "w") as f:
        f.write(INJECT.format(root=ROOT, tests=os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PPCLS_TEST_KILL_AT=point, PPCLS_TEST_KILL_DIR=run_dir)
    r = subprocess.run([sys.executable, inject, "-c", path, "-o", f"Global.output_dir={out}"], capture_output=True,
                       text=True, env=env, timeout=300, cwd=str(tmp_path))
    assert r.returncode == kill_points.KILL_EXIT, (point, r.stderr[-2000:])
    r = run_tool("train.py", "-c", path, "-o", f"Global.output_dir={out}",
                 "-o", f"Global.checkpoints={run_dir}/latest")
    assert r.returncode == 0, (point, r.stderr[-2000:])
    return run_dir, r.stdout


def assert_same_final(ref, run_dir):
    for name in ("latest", "best_model", "epoch_1", "epoch_2"):
        for suffix in (".pdparams", ".pdopt"):
            assert files_equal(os.path.join(ref, name + suffix), os.path.join(run_dir, name + suffix)), name + suffix
    assert not [f for f in os.listdir(run_dir) if f.startswith(".tmp_") or ".bak" in f]


@pytest.mark.slow
@pytest.mark.parametrize("point, says", [
    ("during:write:latest.pdopt@2", "restored it from"),       # epoch 1's save: latest half rewritten
    ("before:replace:epoch_1.pdopt@1", "restored it from"),    # between the links of epoch 1's save
    ("during:link:best_model.pdstates@1", "restored it from"),
    ("before:unlink:latest.bak.pdstates@2", "iteration 2"),   # complete, its backup not yet removed
    ("during:write:latest.pdparams@3", "resuming at epoch 2, best"),  # the mid-epoch save of epoch 2
    ("after:replace:latest.pdstates@4", "restored it from"),   # the last save complete, links not made
])
def test_train_killed_at_a_save_point_resumes_bit_exact(tmp_path, reference, point, says):
    path, ref = reference
    run_dir, log = kill_and_resume(tmp_path, path, point)
    assert says in log, log[-3000:]
    assert_same_final(ref, run_dir)
