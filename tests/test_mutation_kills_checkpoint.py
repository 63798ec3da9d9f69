"""ppcls.engine.checkpoint behaviour a user relies on, found open by mutation testing (bash tests/mutation.sh
engine/checkpoint.py), tested in-process on tiny models so the mutation tool has fast tests to run: a resumed
run continues exactly where the saved one was (weights, BN statistics, optimizer accumulators, LR schedule,
EMA) even when the fresh process generates other parameter names; a checkpoint of another model is refused
with the counts; only rank 0 writes; the ordering and completeness checks that pick the checkpoint a run
falls back to; what recover() removes, keeps and restores."""
import itertools
import logging
import os
import pickle
import shutil

import numpy as np
import paddle
import pytest

from ppcls.engine import checkpoint as ck
from ppcls.engine.ema import ModelEMA
from ppcls.utils.errors import ConfigError
from ppcls.utils.logger import logger

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
UNIQUE = itertools.count(1000 + os.getpid() % 1000 * 1000)


def tiny_model(seed=0):
    paddle.seed(seed)
    return paddle.nn.Sequential(paddle.nn.Linear(4, 6), paddle.nn.BatchNorm1D(6), paddle.nn.ReLU(),
                                paddle.nn.Linear(6, 3))


def tiny_optimizer(model):
    schedule = paddle.optimizer.lr.StepDecay(learning_rate=0.1, step_size=2, gamma=0.5)
    return paddle.optimizer.Momentum(learning_rate=schedule, momentum=0.9, parameters=model.parameters()), schedule


def batch(i):
    rng = np.random.RandomState(100 + i)
    return paddle.to_tensor(rng.rand(8, 4).astype("float32")), paddle.to_tensor(rng.randint(0, 3, [8, 1]))


def train_steps(model, opt, schedule, first, count, ema=None):
    model.train()
    for i in range(first, first + count):
        x, y = batch(i)
        loss = paddle.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        schedule.step()
        if ema is not None:
            ema.update(model)


def weights(layer):
    return {k: v.numpy().copy() for k, v in layer.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture
def info_messages():
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.setLevel(old)
    logger.removeHandler(handler)


def test_a_resumed_run_continues_exactly_where_the_saved_one_was(tmp_path, info_messages):
    out = str(tmp_path)
    model = tiny_model()
    opt, schedule = tiny_optimizer(model)
    ema = ModelEMA(model, 0.5)
    saver = ck.Checkpoints(out, model, opt, ema)
    train_steps(model, opt, schedule, 0, 3, ema)
    saver.save(["latest", "best_model", "epoch_1"], {"epoch": 1, "iter": 0, "best_metric": 0.5, "best_epoch": 1})
    for name in ("latest", "best_model", "epoch_1"):
        assert f"Already save model in {os.path.join(out, name)}" in info_messages
    train_steps(model, opt, schedule, 3, 3, ema)
    want, want_ema, want_lr = weights(model), weights(ema.model), opt.get_lr()

    # a fresh process builds other layers first: its generated parameter names differ from the saved ones
    paddle.nn.Linear(2, 2), paddle.nn.Linear(2, 2)
    fresh = tiny_model(seed=7)
    assert [p.name for p in fresh.parameters()] != [p.name for p in model.parameters()]
    fresh_opt, fresh_schedule = tiny_optimizer(fresh)
    fresh_ema = ModelEMA(fresh, 0.5)
    states = ck.Checkpoints(out, fresh, fresh_opt, fresh_ema).restore(os.path.join(out, "best_model"), "Tiny")
    assert states["loaded_from"] == os.path.join(out, "best_model")
    assert (states["epoch"], states["iter"], states["best_metric"], states["best_epoch"]) == (1, 0, 0.5, 1)
    assert states["names"] == ["latest", "best_model", "epoch_1"]
    train_steps(fresh, fresh_opt, fresh_schedule, 3, 3, fresh_ema)
    assert same(weights(fresh), want), "weights, BN statistics or momentum were not restored"
    assert same(weights(fresh_ema.model), want_ema), "EMA weights were not restored"
    assert fresh_opt.get_lr() == want_lr, "the LR schedule was not restored"


def test_a_run_without_ema_resumes_from_a_checkpoint_with_ema_and_vice_versa(tmp_path):
    out = str(tmp_path)
    model = tiny_model()
    opt, schedule = tiny_optimizer(model)
    ck.Checkpoints(out, model, opt, None).save("latest", {"epoch": 1})
    assert not os.path.exists(os.path.join(out, "latest.ema.pdparams"))
    fresh = tiny_model(seed=3)
    fresh_ema = ModelEMA(fresh, 0.5)
    before = weights(fresh_ema.model)
    ck.Checkpoints(out, fresh, tiny_optimizer(fresh)[0], fresh_ema).restore(os.path.join(out, "latest"), "Tiny")
    assert same(weights(fresh), weights(model)) and same(weights(fresh_ema.model), before)
    # a checkpoint with EMA weights into a run without EMA: the model's own weights are loaded
    ema = ModelEMA(model, 0.5)
    train_steps(model, opt, schedule, 0, 1, ema)
    ck.Checkpoints(out, model, opt, ema).save("latest", {"epoch": 2})
    assert os.path.exists(os.path.join(out, "latest.ema.pdparams"))
    other = tiny_model(seed=5)
    ck.Checkpoints(out, other, tiny_optimizer(other)[0]).restore(os.path.join(out, "latest"), "Tiny")
    assert same(weights(other), weights(model))


def test_only_rank_0_writes_or_repairs_the_run_directory(tmp_path):
    out = str(tmp_path)
    model = tiny_model()
    opt, _ = tiny_optimizer(model)
    leftover = os.path.join(out, ".tmp_latest.pdparams.abc123")
    open(leftover, "wb").close()
    worker = ck.Checkpoints(out, model, opt, rank=1)
    assert os.path.exists(leftover), "a worker rank repaired the directory rank 0 owns"
    worker.save(["latest", "epoch_1"], {"epoch": 1})
    assert os.listdir(out) == [".tmp_latest.pdparams.abc123"]
    ck.Checkpoints(out, model, opt, rank=0)
    assert os.listdir(out) == []


@pytest.mark.parametrize("other", ["wider", "fewer_layers", "renamed"])
def test_a_checkpoint_of_another_model_is_refused_with_the_counts(tmp_path, other):
    out = str(tmp_path)
    model = tiny_model()
    ck.Checkpoints(out, model, tiny_optimizer(model)[0]).save("latest", {"epoch": 1})
    if other == "wider":
        target = paddle.nn.Sequential(paddle.nn.Linear(4, 6), paddle.nn.BatchNorm1D(6), paddle.nn.ReLU(),
                                      paddle.nn.Linear(6, 5))
        counts = "8/8 keys match, 2 mis-shaped"
    elif other == "fewer_layers":  # its keys are a subset of the checkpoint's: extra saved keys are fine
        target = paddle.nn.Sequential(paddle.nn.Linear(4, 6))
        counts = None
    else:
        target = paddle.nn.Sequential(paddle.nn.Linear(4, 6), paddle.nn.BatchNorm1D(6), paddle.nn.ReLU(),
                                      paddle.nn.Linear(6, 3), paddle.nn.Linear(3, 3))
        counts = "8/10 keys match, 0 mis-shaped"
    saver = ck.Checkpoints(out, target, tiny_optimizer(target)[0])
    if counts is None:
        saver.restore(os.path.join(out, "latest"), "Tiny")
        assert np.array_equal(target[0].weight.numpy(), model[0].weight.numpy())
        return
    before = weights(target)
    with pytest.raises(ConfigError) as e:
        saver.restore(os.path.join(out, "latest"), "Tiny")
    assert str(e.value) == (f"{os.path.join(out, 'latest')}.pdparams is not a checkpoint of Tiny with this Arch "
                            f"config ({counts})")
    assert same(weights(target), before), "a refused checkpoint changed the model"


def test_a_checkpoint_with_no_key_of_the_model_is_refused(tmp_path):
    out = str(tmp_path)
    ck.save_checkpoint(os.path.join(out, "latest"), {"other.weight": np.zeros([2], "float32")}, {}, {"epoch": 1})
    model = tiny_model()
    with pytest.raises(ConfigError, match=r"latest\.pdparams is not a checkpoint of Tiny .*\(0/8 keys match"):
        ck.Checkpoints(out, model, tiny_optimizer(model)[0]).restore(os.path.join(out, "latest"), "Tiny")


def test_optimizer_state_is_keyed_by_structured_names_and_back():
    model = paddle.nn.Sequential(paddle.nn.Linear(2, 2), paddle.nn.Linear(2, 2))
    (w0, b0), (w1, b1) = [(m.weight.name, m.bias.name) for m in model]
    state = {f"{w0}_velocity_0": 1, f"{b1}_moment1_0": 2, "LR_Scheduler": {"last_epoch": 3},
             "master_weights": {w0: 4, "unknown.w_0": 5}, "global_step": 6}
    portable = ck.portable_optimizer_state(state, model)
    assert portable == {"0.weight@_velocity_0": 1, "1.bias@_moment1_0": 2, "LR_Scheduler": {"last_epoch": 3},
                        "master_weights": {"0.weight": 4, "unknown.w_0": 5}, "global_step": 6}
    fresh = paddle.nn.Sequential(paddle.nn.Linear(2, 2), paddle.nn.Linear(2, 2))
    fw0, fb1 = fresh[0].weight.name, fresh[1].bias.name
    assert fw0 != w0
    assert ck.restore_optimizer_state(portable, fresh) == {
        f"{fw0}_velocity_0": 1, f"{fb1}_moment1_0": 2, "LR_Scheduler": {"last_epoch": 3},
        "master_weights": {fw0: 4, "unknown.w_0": 5}, "global_step": 6}
    # a key naming no parameter of the model, and a master_weights that is not a dict, pass through
    odd = {"gone.weight@_velocity_0": 7, "master_weights": [1]}
    assert ck.restore_optimizer_state(odd, fresh) == odd
    assert ck.portable_optimizer_state({"master_weights": [1]}, fresh) == {"master_weights": [1]}


def test_a_parameter_name_that_prefixes_another_is_not_confused_with_it():
    base = f"fc_{next(UNIQUE)}.w_0"  # parameter names are global to the process: a fresh one per run

    class Named(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.a = self.create_parameter([1], attr=paddle.ParamAttr(name=base))
            self.b = self.create_parameter([1], attr=paddle.ParamAttr(name=base + "_moment"))
    model = Named()
    state = {base + "_moment_velocity_0": 1, base + "_velocity_0": 2}
    portable = ck.portable_optimizer_state(state, model)
    assert portable == {"b@_velocity_0": 1, "a@_velocity_0": 2}
    assert ck.restore_optimizer_state(portable, model) == state


def save(prefix, epoch, it=0, names=(), ema=True, value=None):
    value = float(epoch * 10 + it) if value is None else value
    model = {"w": np.full([4], value, "float32")}
    ck.save_checkpoint([prefix] + [os.path.join(os.path.dirname(prefix), n) for n in names], model,
                       {"w@v": np.full([4], -value, "float32")}, {"epoch": epoch, "iter": it},
                       {"w": model["w"] * 2} if ema else None)


def test_resume_order_puts_an_epoch_end_before_the_next_epochs_middle():
    assert ck._position({"epoch": 3}) == (4, 0)
    assert ck._position({"epoch": 3, "iter": 0}) == (4, 0)
    assert ck._position({"epoch": 3, "iter": None}) == (4, 0)
    assert ck._position({"epoch": 3, "iter": 5}) == (3, 5)
    assert ck._position({"epoch": "2", "iter": "7"}) == (2, 7)
    assert ck._position({"epoch": 1, "iter": 9}) < ck._position({"epoch": 1}) < ck._position({"epoch": 2, "iter": 1})


def test_the_newest_complete_checkpoint_wins_and_ties_go_to_the_preferred_name(tmp_path):
    d = str(tmp_path)
    assert ck.newest_complete(d) is None
    assert ck.newest_complete(os.path.join(d, "missing")) is None
    save(f"{d}/b_mid", 2, 4)
    save(f"{d}/a_end", 1)       # end of epoch 1: resumes at (2, 0), before b_mid's (2, 4)
    assert ck.newest_complete(d)[0] == f"{d}/b_mid"
    save(f"{d}/c_end", 2)
    save(f"{d}/d_end", 2)
    assert ck.newest_complete(d)[0] == f"{d}/c_end"  # equals: by name
    assert ck.newest_complete(d, prefer="d_end")[0] == f"{d}/d_end"
    prefix, states = ck.newest_complete(d, prefer="a_end")
    assert prefix == f"{d}/c_end" and states["epoch"] == 2 and states["iter"] == 0


def test_a_file_changed_in_place_at_its_recorded_size_is_not_taken_for_complete(tmp_path):
    d = str(tmp_path)
    save(f"{d}/epoch_1", 1)
    save(f"{d}/latest", 2)
    for suffix in (".pdparams", ".pdopt", ".ema.pdparams"):
        path = f"{d}/latest{suffix}"
        data = bytearray(open(path, "rb").read())
        original = bytes(data)
        data[-9] ^= 0xFF  # inside the last array's bytes: the size stays, the CRC does not
        open(path, "wb").write(bytes(data))
        _, _, states, _ = ck.load_checkpoint(f"{d}/latest")
        assert states["loaded_from"] == f"{d}/epoch_1", suffix
        open(path, "wb").write(original)
    assert ck.load_checkpoint(f"{d}/latest")[2]["loaded_from"] == f"{d}/latest"


@pytest.mark.parametrize("missing", [".pdparams", ".pdopt", ".pdstates", ".ema.pdparams"])
def test_a_checkpoint_missing_a_file_falls_back_naming_it(tmp_path, ppcls_warnings, missing):
    d = str(tmp_path)
    save(f"{d}/epoch_1", 1)
    save(f"{d}/latest", 2, 3)
    os.remove(f"{d}/latest{missing}")
    model, opt, states, ema = ck.load_checkpoint(f"{d}/latest")
    assert states["loaded_from"] == f"{d}/epoch_1" and states["epoch"] == 1
    assert np.array_equal(model["w"], np.full([4], 10.0)) and np.array_equal(opt["w@v"], np.full([4], -10.0))
    assert np.array_equal(ema["w"], np.full([4], 20.0))
    warning = [w for w in ppcls_warnings if "resuming from" in w]
    assert warning == [f"{d}/latest was not saved completely ({d}/latest{missing} not found); resuming from "
                       f"{d}/epoch_1 (epoch 1), the newest complete checkpoint of {d}"]


def test_the_warning_names_the_iteration_of_a_mid_epoch_fallback(tmp_path, ppcls_warnings):
    d = str(tmp_path)
    save(f"{d}/mid", 3, 5)
    open(f"{d}/latest.pdparams", "wb").close()
    assert ck.load_checkpoint(f"{d}/latest")[2]["loaded_from"] == f"{d}/mid"
    assert f"resuming from {d}/mid (epoch 3, iteration 5), the newest" in ppcls_warnings[-1]


def test_a_states_file_that_is_not_a_checkpoints_is_not_one(tmp_path):
    d = str(tmp_path)
    save(f"{d}/epoch_1", 1)
    for content in ([1, 2], {"iter": 3}, b"\x80\x04\x95"):  # a list, a dict without epoch, truncated
        save(f"{d}/latest", 2)
        path = f"{d}/latest.pdstates"
        os.remove(path)
        with open(path, "wb") as f:
            f.write(content if isinstance(content, bytes) else pickle.dumps(content, protocol=2))
        assert ck._read_states(f"{d}/latest") is None
        assert ck.load_checkpoint(f"{d}/latest")[2]["loaded_from"] == f"{d}/epoch_1", content
    assert ck._read_states(f"{d}/nothing") is None


def test_a_states_file_the_safe_loader_refuses_is_an_error_never_skipped(tmp_path):
    d = str(tmp_path)
    save(f"{d}/epoch_1", 1)
    save(f"{d}/latest", 2)

    class Evil:
        def __reduce__(self):
            return os.system, ("echo owned",)
    os.remove(f"{d}/latest.pdstates")
    with open(f"{d}/latest.pdstates", "wb") as f:
        f.write(pickle.dumps({"epoch": 2, "x": Evil()}, protocol=2))
    with pytest.raises(ConfigError, match=r"latest\.pdstates"):
        ck.load_checkpoint(f"{d}/latest")
    with pytest.raises(ConfigError, match=r"latest\.pdstates"):
        ck.recover(d)


@pytest.mark.parametrize("suffix", [".pdparams", ".pdopt", ".ema.pdparams", ".pdstates"])
def test_a_file_name_instead_of_a_prefix_is_refused(tmp_path, suffix):
    save(f"{tmp_path}/latest", 1)
    with pytest.raises(ConfigError) as e:
        ck.load_checkpoint(f"{tmp_path}/latest{suffix}")
    assert str(e.value) == (f"Global.checkpoints: {tmp_path}/latest{suffix} is a file; give the prefix without "
                            "suffix, e.g. output/DLA60/latest")


def test_no_complete_checkpoint_at_all_says_what_to_do(tmp_path):
    d = str(tmp_path)
    save(f"{d}/latest", 1)
    with open(f"{d}/latest.pdparams", "ab") as f:
        f.write(b"x")
    with pytest.raises(ConfigError) as e:
        ck.load_checkpoint(f"{d}/latest")
    assert str(e.value) == (f"Global.checkpoints: {d}/latest.pdparams does not belong to {d}/latest.pdstates (a save "
                            f"was interrupted?), and {d} holds no complete checkpoint (resume from another checkpoint "
                            "(e.g. epoch_N))")
    with pytest.raises(ConfigError) as e:
        ck.load_checkpoint(f"{d}/other")
    assert str(e.value) == (f"Global.checkpoints: {d}/other.pdparams not found, and {d} holds no complete checkpoint "
                            "(give the prefix without suffix, e.g. output/DLA60/latest)")


def test_a_checkpoint_without_recorded_files_loads_what_exists(tmp_path):
    """A checkpoint of an earlier version: its states list no files, so what exists is loaded."""
    d = str(tmp_path)
    paddle.save({"w": np.ones([2], "float32")}, f"{d}/old.pdparams")
    paddle.save({"w@v": np.zeros([2], "float32")}, f"{d}/old.pdopt")
    paddle.save({"epoch": 4}, f"{d}/old.pdstates")
    model, opt, states, ema = ck.load_checkpoint(f"{d}/old")
    assert ema is None and states["epoch"] == 4 and np.array_equal(model["w"], np.ones([2]))
    paddle.save({"w": np.full([2], 3, "float32")}, f"{d}/old.ema.pdparams")
    assert np.array_equal(ck.load_checkpoint(f"{d}/old")[3]["w"], np.full([2], 3.0))
    # saving over it (EMA now off) drops the EMA file it had
    save(f"{d}/old", 5, ema=False)
    assert not os.path.exists(f"{d}/old.ema.pdparams") and ck.load_checkpoint(f"{d}/old")[3] is None


def test_recover_removes_only_the_temp_files_of_checkpoint_saves(tmp_path, info_messages):
    d = str(tmp_path)
    assert ck.recover(os.path.join(d, "missing")) == (0, 0)
    save(f"{d}/latest", 1)
    temps = [".tmp_latest.pdparams.x1", ".tmp_latest.pdopt.x2", ".tmp_latest.pdstates.x3",
             ".tmp_latest.ema.pdparams.x4", ".tmp_epoch_1.pdparams.123.link"]
    kept = [".tmp_notes.txt", "notes.pdparams.txt", ".tmp_x.pdparams", "train.log"]
    for name in temps + kept:
        open(os.path.join(d, name), "wb").close()
    assert ck.recover(d) == (len(temps), 0)
    assert sorted(os.listdir(d)) == sorted(kept + [f"latest{s}" for s in (".pdparams", ".pdopt", ".ema.pdparams",
                                                                           ".pdstates")])
    assert f"removed {len(temps)} temp files of an interrupted checkpoint save in {d}" in info_messages
    assert ck.recover(d) == (0, 0)


def test_recover_finishes_the_names_a_kill_left_unlinked(tmp_path, ppcls_warnings):
    d = str(tmp_path)
    save(f"{d}/latest", 1, names=["best_model", "epoch_1"])
    save(f"{d}/latest", 2, 3)
    # killed after the step was complete under latest, before its other names were linked
    save(f"{d}/latest", 2, names=["best_model", "epoch_2"])
    for s in (".pdparams", ".pdopt", ".ema.pdparams", ".pdstates"):
        os.remove(f"{d}/epoch_2{s}")
    os.remove(f"{d}/best_model.pdstates")
    assert ck.recover(d) == (0, 2)
    for name in ("best_model", "epoch_2"):
        model, _, states, _ = ck.load_checkpoint(f"{d}/{name}")
        assert states["loaded_from"] == f"{d}/{name}" and states["epoch"] == 2 and model["w"][0] == 20
        assert os.stat(f"{d}/{name}.pdparams").st_ino == os.stat(f"{d}/latest.pdparams").st_ino
    assert ck.load_checkpoint(f"{d}/epoch_1")[2]["epoch"] == 1
    assert any(w == f"{d}/epoch_2 was not saved completely (the run was interrupted); restored it from "
                    f"{d}/latest (epoch 2)" for w in ppcls_warnings), ppcls_warnings
    assert ck.recover(d) == (0, 0)


def test_recover_never_rolls_a_name_back_and_keeps_an_equal_complete_one(tmp_path):
    d = str(tmp_path)
    save(f"{d}/latest", 2, names=["best_model", "z_copy"])
    save(f"{d}/best_model", 3)  # a newer step under best_model, torn below: not rolled back to latest's
    with open(f"{d}/best_model.pdopt", "ab") as f:
        f.write(b"torn")
    save(f"{d}/z_copy", 2, value=99)  # the same step saved apart, complete: kept as it is
    assert ck.newest_complete(d)[0] == f"{d}/latest"
    assert ck.recover(d) == (0, 0)
    assert ck._read_states(f"{d}/best_model")["epoch"] == 3
    assert ck.load_checkpoint(f"{d}/z_copy")[0]["w"][0] == 99
    with open(f"{d}/z_copy.pdparams", "ab") as f:  # the same step, torn: restored from latest
        f.write(b"torn")
    assert ck.recover(d) == (0, 1)
    assert ck.load_checkpoint(f"{d}/z_copy")[0]["w"][0] == 20


def test_a_backup_is_dropped_once_its_save_completed_and_used_when_not(tmp_path):
    d = str(tmp_path)
    save(f"{d}/latest", 1)
    # a leftover backup of an older step next to a complete newer latest: the save it guarded completed
    for s in (".pdparams", ".pdopt", ".ema.pdparams", ".pdstates"):
        os.link(f"{d}/latest{s}", f"{d}/old{s}")
    save(f"{d}/latest", 2)
    for s in (".pdparams", ".pdopt", ".ema.pdparams", ".pdstates"):
        os.replace(f"{d}/old{s}", f"{d}/latest.bak{s}")
    ck.recover(d)
    assert sorted(os.listdir(d)) == [f"latest{s}" for s in (".ema.pdparams", ".pdopt", ".pdparams", ".pdstates")]
    # pieces of a backup without its states file (cut short while made or removed) go too
    open(f"{d}/latest.bak.pdparams", "wb").close()
    open(f"{d}/latest.bak.ema.pdparams", "wb").close()
    open(f"{d}/other.bak.pdparams", "wb").close()  # no other: not a backup of anything here
    ck.recover(d)
    assert not os.path.exists(f"{d}/latest.bak.pdparams") and not os.path.exists(f"{d}/latest.bak.ema.pdparams")
    assert os.path.exists(f"{d}/other.bak.pdparams")
    # a backup whose save did not complete (latest's rewrite cut short) is what latest falls back to
    save(f"{d}/latest", 3)
    for s in (".pdparams", ".pdopt", ".ema.pdparams", ".pdstates"):
        shutil.copyfile(f"{d}/latest{s}", f"{d}/latest.bak{s}")
    with open(f"{d}/latest.pdparams", "ab") as f:
        f.write(b"torn")
    _, _, states, _ = ck.load_checkpoint(f"{d}/latest")
    assert states["loaded_from"] == f"{d}/latest.bak" and states["epoch"] == 3


def test_a_save_over_an_incomplete_checkpoint_keeps_the_earlier_backup(tmp_path):
    d = str(tmp_path)
    save(f"{d}/latest", 1)
    with open(f"{d}/latest.pdopt", "ab") as f:  # an earlier save of latest failed half-way
        f.write(b"torn")
    for s in (".pdparams", ".pdopt", ".ema.pdparams", ".pdstates"):
        open(f"{d}/latest.bak{s}", "wb").write(b"earlier backup")
    ck._SAVED.clear()
    save(f"{d}/latest", 2)
    assert ck.load_checkpoint(f"{d}/latest")[2]["epoch"] == 2
    assert not [f for f in os.listdir(d) if ".bak" in f]


def test_a_second_save_backs_up_the_first_until_it_is_complete(tmp_path, monkeypatch):
    d = str(tmp_path)
    save(f"{d}/latest", 1)
    seen = []
    real = ck.atomic_save

    def watching(obj, path):
        seen.append(sorted(f for f in os.listdir(d) if ".bak" in f))
        real(obj, path)
    monkeypatch.setattr(ck, "atomic_save", watching)
    for external in (False, True):
        seen.clear()
        if external:
            # files not written by this process (another run, a copy): the backup checks them first
            ck._SAVED.clear()
        save(f"{d}/latest", 2 + external)
        assert seen and all(s == [f"latest.bak{x}" for x in (".ema.pdparams", ".pdopt", ".pdparams", ".pdstates")]
                            for s in seen), seen
        assert not [f for f in os.listdir(d) if ".bak" in f]


@pytest.mark.parametrize("part,what", [(".pdparams", "checkpoint weights file"),
                                       (".pdopt", "checkpoint optimizer state file"),
                                       (".ema.pdparams", "checkpoint EMA weights file"),
                                       (".pdstates", "checkpoint states file")])
def test_a_hostile_part_is_refused_naming_the_file_and_what_it_is(tmp_path, part, what):
    """Every digest consistent (an attacker can rewrite .pdstates too): the safe loader refuses the part, and
    the one-line error says which file and what it was read as."""
    d = str(tmp_path)
    save(f"{d}/latest", 1)

    class Evil:
        def __reduce__(self):
            return os.system, ("echo owned",)
    path = f"{d}/latest{part}"
    os.remove(path)
    with open(path, "wb") as f:
        f.write(pickle.dumps({"epoch": 1, "w": Evil()}, protocol=2))
    if part != ".pdstates":
        states = ck._read_states(f"{d}/latest")
        states["files"][part] = list(ck._digest(path))
        os.remove(f"{d}/latest.pdstates")
        paddle.save(states, f"{d}/latest.pdstates")
    with pytest.raises(ConfigError) as e:
        ck.load_checkpoint(f"{d}/latest")
    assert str(e.value).startswith(f"{path}: refusing to load posix.system, which a {what} never holds"), str(e.value)


def test_a_change_anywhere_in_a_file_larger_than_one_read_is_seen(tmp_path):
    d = str(tmp_path)
    save(f"{d}/epoch_1", 1)
    big = {"w": np.arange(1_500_000, dtype="float32")}  # 6 MB: the CRC runs over two reads
    ck.save_checkpoint(f"{d}/latest", big, {}, {"epoch": 2})
    assert ck.load_checkpoint(f"{d}/latest")[2]["loaded_from"] == f"{d}/latest"
    with open(f"{d}/latest.pdparams", "rb+") as f:
        f.seek(1 << 20)
        byte = f.read(1)
        f.seek(1 << 20)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert ck.load_checkpoint(f"{d}/latest")[2]["loaded_from"] == f"{d}/epoch_1"


def test_only_the_files_a_step_saved_are_loaded_with_it(tmp_path):
    """An EMA file next to a checkpoint saved without EMA (copied there, or left by another tool) is not
    taken for that step's EMA weights."""
    d = str(tmp_path)
    save(f"{d}/latest", 1, ema=False)
    paddle.save({"w": np.full([4], 7, "float32")}, f"{d}/latest.ema.pdparams")
    assert ck.load_checkpoint(f"{d}/latest")[3] is None
    save(f"{d}/latest", 2, ema=False)  # and a later save drops it (the backup of latest took only its own files)
    assert not os.path.exists(f"{d}/latest.ema.pdparams")


def test_recover_relinks_a_name_whose_files_went_missing(tmp_path):
    d = str(tmp_path)
    save(f"{d}/latest", 1, names=["best_model"])
    os.remove(f"{d}/best_model.pdopt")  # its states (the same step as latest's) are still there
    assert ck.recover(d) == (0, 1)
    assert ck.load_checkpoint(f"{d}/best_model")[2]["loaded_from"] == f"{d}/best_model"


def test_recover_never_removes_a_checkpoint_that_is_not_a_backup(tmp_path):
    d = str(tmp_path)
    save(f"{d}/model_old", 1)   # a name that ends in 4 characters, like .bak, on another checkpoint's name
    save(f"{d}/model", 2)
    ck.recover(d)
    assert ck.load_checkpoint(f"{d}/model_old")[2]["loaded_from"] == f"{d}/model_old"
