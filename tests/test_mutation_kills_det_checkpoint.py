"""Detector checkpoints (ppcls/det/checkpoint.py) read with the safe loader: whole-detector weights, ppdet's
suffix-matched pretrain weights and resuming a training run (model, optimizer, epoch, EMA) from the files
ppdet's own save_model writes. Tiny layers stand in for a detector: the loaders only use its state_dict.
Written against the survivors of `bash tests/mutation.sh det/checkpoint.py`."""
import types

import numpy as np
import pytest

pytest.importorskip("ppdet")

import paddle  # noqa: E402

import ppcls.det  # noqa: E402,F401
from ppcls.det import checkpoint  # noqa: E402
from ppcls.det.checkpoint import load_detector_weights, load_pretrain_weights, resume  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402
from ppcls.utils.save_load import atomic_save  # noqa: E402


@pytest.fixture
def ppcls_infos():
    """The messages the ppcls logger logs at INFO and above during the test."""
    import logging
    from ppcls.utils.logger import logger
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level or logging.INFO, logging.INFO))
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


class Detector(paddle.nn.Layer):
    def __init__(self, width=3):
        super().__init__()
        self.backbone = paddle.nn.Sequential(paddle.nn.Linear(2, width), paddle.nn.BatchNorm1D(width))
        self.head = paddle.nn.Linear(width, 1)

    def forward(self, x):
        return self.head(self.backbone(x))


def _state(model, value):
    return {k: np.full(v.shape, value, "float32") for k, v in model.state_dict().items()}


def _np(value):
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _values(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _same(model, state):
    got = _values(model)
    assert set(got) == set(state)
    for k in state:
        np.testing.assert_array_equal(got[k], np.asarray(state[k], got[k].dtype))


# -- whole-detector weights -----------------------------------------------------------------------------------
@pytest.mark.parametrize("given", ["prefix", "prefix.pdparams", "prefix.pdopt"])
def test_mutation_kills_weights_by_prefix_or_file_name(tmp_path, given):
    model = Detector()
    want = _state(model, 0.5)
    want["backbone.1._mean"] = np.arange(3, dtype="float64")  # another dtype: cast to the model's
    atomic_save(want, str(tmp_path / "prefix.pdparams"))
    assert load_detector_weights(model, str(tmp_path / given)) == str(tmp_path / "prefix")
    _same(model, want)
    assert model.state_dict()["backbone.1._mean"].dtype == paddle.float32


def test_mutation_kills_weights_that_do_not_fit_are_named(tmp_path):
    model = Detector()
    state = _state(model, 1.0)
    del state["head.bias"]
    for key in ("backbone.0.weight", "backbone.0.bias", "backbone.1.weight", "backbone.1.bias"):
        state[key] = np.zeros([7], "float32")
    atomic_save(state, str(tmp_path / "w.pdparams"))
    before = _values(model)
    with pytest.raises(ConfigError) as e:
        load_detector_weights(model, str(tmp_path / "w"), what="weights")
    assert str(e.value) == (
        f"weights: {tmp_path / 'w.pdparams'} does not fit the detector of this config: 1 missing, 4 "
        f"shape-mismatched keys (head.bias missing; backbone.0.weight [7] vs [2, 3]; backbone.0.bias [7] vs [3]; "
        f"backbone.1.weight [7] vs [3])")
    for k, v in before.items():  # nothing loaded
        np.testing.assert_array_equal(model.state_dict()[k].numpy(), v)
    with pytest.raises(ConfigError) as e:
        load_detector_weights(model, str(tmp_path / "none"), what="eval weights")
    assert str(e.value) == f"eval weights: {tmp_path / 'none.pdparams'} not found"


def test_mutation_kills_extra_keys_are_ignored(tmp_path):
    model = Detector()
    state = dict(_state(model, 2.0), unused=np.ones([5], "float32"))
    atomic_save(state, str(tmp_path / "w.pdparams"))
    load_detector_weights(model, tmp_path / "w.pdparams")  # a path-like too
    _same(model, {k: v for k, v in state.items() if k != "unused"})


def test_mutation_kills_a_url_is_downloaded_first(tmp_path, monkeypatch):
    import ppcls.arch.weights as weights
    model = Detector()
    want = _state(model, 3.0)
    atomic_save(want, str(tmp_path / "cached.pdparams"))
    asked = []
    monkeypatch.setattr(weights, "fetch_url", lambda url: asked.append(url) or str(tmp_path / "cached.pdparams"))
    assert load_detector_weights(model, "https://host/model.pdparams") == str(tmp_path / "cached")
    assert asked == ["https://host/model.pdparams"]
    _same(model, want)


# -- pretrain weights -----------------------------------------------------------------------------------------
def test_mutation_kills_pretrain_weights_match_by_suffix(tmp_path, ppcls_infos):
    model = Detector()
    before = _values(model)
    # an ImageNet-style backbone checkpoint: keys without the detector's "backbone." prefix
    state = {"0.weight": np.full([2, 3], 4.0, "float32"), "0.bias": np.full([3], 5.0, "float64"),
             "fc.weight": np.ones([9], "float32")}
    atomic_save(state, str(tmp_path / "imagenet.pdparams"))
    load_pretrain_weights(model, str(tmp_path / "imagenet"))
    got = _values(model)
    np.testing.assert_array_equal(got["backbone.0.weight"], state["0.weight"])
    np.testing.assert_array_equal(got["backbone.0.bias"], state["0.bias"].astype("float32"))
    for k in ("head.weight", "head.bias", "backbone.1.weight"):  # left as initialised
        np.testing.assert_array_equal(got[k], before[k])
    assert f"loaded pretrain_weights {tmp_path / 'imagenet.pdparams'}: 2 of 8 tensors" in ppcls_infos


def test_mutation_kills_pretrain_weights_that_fit_nothing(tmp_path):
    atomic_save({"other.weight": np.ones([4], "float32"), "x": np.ones([1], "float32")},
                str(tmp_path / "p.pdparams"))
    with pytest.raises(ConfigError) as e:
        load_pretrain_weights(Detector(), str(tmp_path / "p.pdparams"))
    assert str(e.value) == f"pretrain_weights: none of the 2 keys of {tmp_path / 'p.pdparams'} fit the detector"
    with pytest.raises(ConfigError) as e:
        load_pretrain_weights(Detector(), str(tmp_path / "q"))
    assert str(e.value) == f"pretrain_weights: {tmp_path / 'q.pdparams'} not found"


# -- resume ---------------------------------------------------------------------------------------------------
def _trained(tmp_path, steps=3, ema_decay=None, epoch=2):
    """A model trained a few steps with momentum and a step LR schedule, saved by ppdet's save_model."""
    from ppdet.optimizer.ema import ModelEMA
    from ppdet.utils.checkpoint import save_model
    paddle.seed(0)
    model = Detector()
    sched = paddle.optimizer.lr.StepDecay(0.1, step_size=2, gamma=0.5)
    opt = paddle.optimizer.Momentum(sched, parameters=model.parameters())
    ema = ModelEMA(model, decay=ema_decay) if ema_decay else None
    x = paddle.rand([4, 2])
    for _ in range(steps):
        model(x).mean().backward()
        opt.step()
        opt.clear_grad()
        sched.step()
        if ema:
            ema.update()
    raw = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    averaged = {k: v.numpy().copy() for k, v in ema.apply().items()} if ema else None
    save_model(model.state_dict(), opt, str(tmp_path), "model_final", epoch,
               ema_model=ema.apply() if ema else None)
    return raw, averaged, opt.state_dict()


def _fresh(use_ema, decay=0.9):
    from ppdet.optimizer.ema import ModelEMA
    paddle.seed(1)
    model = Detector()
    sched = paddle.optimizer.lr.StepDecay(0.1, step_size=2, gamma=0.5)
    opt = paddle.optimizer.Momentum(sched, parameters=model.parameters())
    return types.SimpleNamespace(model=model, optimizer=opt, use_ema=use_ema,
                                 ema=ModelEMA(model, decay=decay) if use_ema else None, start_epoch=0)


def test_mutation_kills_resume_restores_model_optimizer_and_epoch(tmp_path):
    raw, _, opt_state = _trained(tmp_path, epoch=5)
    trainer = _fresh(use_ema=False)
    assert resume(trainer, str(tmp_path / "model_final")) == 5 and trainer.start_epoch == 5
    _same(trainer.model, raw)
    got = trainer.optimizer.state_dict()
    assert got["LR_Scheduler"]["last_epoch"] == 3 and trainer.optimizer.get_lr() == pytest.approx(0.05)
    velocity = [k for k in opt_state if "velocity" in k]
    assert velocity
    for k in velocity:
        np.testing.assert_allclose(_np(got[k]), _np(opt_state[k]))


def test_mutation_kills_resume_with_ema_takes_each_file_as_ppdet_writes_it(tmp_path):
    raw, averaged, _ = _trained(tmp_path, steps=3, ema_decay=0.9, epoch=1)
    assert not np.allclose(raw["head.weight"], averaged["head.weight"])
    trainer = _fresh(use_ema=True)
    assert resume(trainer, str(tmp_path / "model_final.pdparams")) == 1
    _same(trainer.model, raw)  # the trained weights, not the average
    assert trainer.ema.step == 3  # steps (the LR schedule's count), for the EMA's decay warm-up
    # what ppdet's own load_weight resumes the EMA to: the saved average
    for k, v in trainer.ema.state_dict.items():
        assert isinstance(v, paddle.Tensor)
        np.testing.assert_allclose(v.numpy(), averaged[k], rtol=1e-6)
    # an EMA run resumed from a checkpoint written without EMA: the weights are the model's, the EMA starts over
    (tmp_path / "model_final.pdema").unlink()
    trainer = _fresh(use_ema=True)
    resume(trainer, str(tmp_path / "model_final"))
    _same(trainer.model, averaged)
    assert trainer.ema.step == 0


def test_mutation_kills_resume_without_optimizer_state(tmp_path):
    raw, _, _ = _trained(tmp_path)
    (tmp_path / "model_final.pdopt").unlink()
    trainer = _fresh(use_ema=False)
    before = _values(trainer.model)
    with pytest.raises(ConfigError) as e:
        resume(trainer, str(tmp_path / "model_final"))
    assert str(e.value) == (f"resume: {tmp_path / 'model_final.pdopt'} not found (a checkpoint is a .pdparams "
                            f"and a .pdopt)")
    for k, v in before.items():  # nothing loaded
        np.testing.assert_array_equal(trainer.model.state_dict()[k].numpy(), v)
    with pytest.raises(ConfigError) as e:
        resume(trainer, str(tmp_path / "other"))
    assert str(e.value) == f"resume: {tmp_path / 'other.pdparams'} not found"


def test_mutation_kills_resume_of_an_optimizer_state_without_epoch(tmp_path):
    model = Detector()
    atomic_save(_state(model, 1.0), str(tmp_path / "c.pdparams"))
    sched = paddle.optimizer.lr.StepDecay(0.1, step_size=2, gamma=0.5)
    atomic_save({"LR_Scheduler": sched.state_dict()}, str(tmp_path / "c.pdopt"))
    trainer = _fresh(use_ema=False)
    trainer.start_epoch = 9
    assert resume(trainer, str(tmp_path / "c")) == 0 and trainer.start_epoch == 0


def test_mutation_kills_prefix_strips_only_checkpoint_suffixes():
    assert checkpoint._prefix("a/b.pdparams") == "a/b" and checkpoint._prefix("a/b.pdopt") == "a/b"
    assert checkpoint._prefix("a/b.pdema") == "a/b.pdema" and checkpoint._prefix("a.pdparams/b") == "a.pdparams/b"


# -- what an unreadable file is called in the error ------------------------------------------------------------
def _garbage(path):
    path.write_bytes(b"garbage")
    return str(path)


def test_mutation_kills_unreadable_files_are_named_by_their_role(tmp_path):
    model = Detector()
    with pytest.raises(ConfigError) as e:
        load_detector_weights(model, _garbage(tmp_path / "w.pdparams"))
    assert str(e.value) == f"{tmp_path / 'w.pdparams'}: unreadable or truncated weights file (pickle data was truncated)"
    with pytest.raises(ConfigError) as e:
        load_pretrain_weights(model, str(tmp_path / "w"))
    assert str(e.value) == (f"{tmp_path / 'w.pdparams'}: unreadable or truncated pretrain_weights file (pickle data "
                            f"was truncated)")
    atomic_save(_state(model, 1.0), str(tmp_path / "w.pdparams"))
    _garbage(tmp_path / "w.pdopt")
    with pytest.raises(ConfigError) as e:
        resume(_fresh(use_ema=False), str(tmp_path / "w"))
    assert str(e.value) == (f"{tmp_path / 'w.pdopt'}: unreadable or truncated optimizer state file (pickle data "
                            f"was truncated)")
    _, _, _ = _trained(tmp_path, ema_decay=0.9)
    _garbage(tmp_path / "model_final.pdema")
    with pytest.raises(ConfigError) as e:
        resume(_fresh(use_ema=True), str(tmp_path / "model_final"))
    assert str(e.value) == (f"{tmp_path / 'model_final.pdema'}: unreadable or truncated resume file (pickle data "
                            f"was truncated)")
    _trained(tmp_path, ema_decay=0.9)
    _garbage(tmp_path / "model_final.pdparams")
    with pytest.raises(ConfigError) as e:
        resume(_fresh(use_ema=True), str(tmp_path / "model_final"))
    assert str(e.value) == (f"{tmp_path / 'model_final.pdparams'}: unreadable or truncated EMA weights file (pickle "
                            f"data was truncated)")


def test_mutation_kills_at_most_three_culprits_of_each_kind_are_listed(tmp_path):
    model = Detector()
    atomic_save({"head.weight": np.zeros([3, 1], "float32")}, str(tmp_path / "w.pdparams"))
    with pytest.raises(ConfigError) as e:
        load_detector_weights(model, str(tmp_path / "w"))
    assert str(e.value) == (
        f"weights: {tmp_path / 'w.pdparams'} does not fit the detector of this config: 7 missing, 0 shape-mismatched "
        f"keys (backbone.0.weight missing; backbone.0.bias missing; backbone.1.weight missing)")


def test_mutation_kills_ema_resume_with_a_constant_learning_rate(tmp_path):
    """No LR schedule, so no step count in the optimizer state: the EMA restarts its warm-up from step 0."""
    from ppdet.optimizer.ema import ModelEMA
    from ppdet.utils.checkpoint import save_model
    model = Detector()
    opt = paddle.optimizer.SGD(0.1, parameters=model.parameters())
    ema = ModelEMA(model, decay=0.9)
    ema.update()
    save_model(model.state_dict(), opt, str(tmp_path), "c", 4, ema_model=ema.apply())
    trainer = _fresh(use_ema=True)
    trainer.optimizer = paddle.optimizer.SGD(0.1, parameters=trainer.model.parameters())
    assert resume(trainer, str(tmp_path / "c")) == 4
    assert trainer.ema.step == 0
