"""Learning-rate schedule behaviour that tests/test_loss_lr.py left open, found by mutation testing
(bash tests/mutation.sh optimizer/__init__.py): the ConstLR default, option type checks, by_epoch,
last_epoch, a warmup longer than the run, and Piecewise taking its warmup target from values[0]."""

import numpy as np
import pytest

from ppcls.optimizer import build_lr, validate_lr
from ppcls.utils.errors import ConfigError


def steps(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.get_lr())
        sched.step()
    return np.array(out)


def test_a_missing_lr_and_a_mapping_without_a_name():
    with pytest.raises(ConfigError, match=r"^Optimizer\.lr: required$"):
        validate_lr(None)
    sched = build_lr({"learning_rate": 0.3}, 2, 3)  # no name: ConstLR
    assert np.allclose(steps(sched, 6), 0.3)


@pytest.mark.parametrize("bad", [True, "0.1", None])
def test_numbers_must_be_numbers(bad):
    with pytest.raises(ConfigError, match=r"^Optimizer\.lr\.learning_rate: expected a number, got "):
        validate_lr({"name": "Cosine", "learning_rate": bad})


def test_by_epoch_steps_once_per_epoch():
    sched = build_lr({"name": "Step", "learning_rate": 1.0, "step_size": 2, "gamma": 0.5, "by_epoch": True}, 4, 10)
    assert sched.by_epoch is True
    assert np.allclose(steps(sched, 4), [1.0, 1.0, 0.5, 0.5])
    assert build_lr({"name": "Step", "learning_rate": 1.0, "step_size": 2}, 4, 10).by_epoch is False


def test_last_epoch_is_accepted_with_a_warning_and_ignored(ppcls_warnings):
    sched = build_lr({"name": "Step", "learning_rate": 1.0, "step_size": 1, "gamma": 0.5}, 3, 1)
    assert ppcls_warnings == []
    assert np.allclose(steps(sched, 3), [1.0, 0.5, 0.25])
    sched = build_lr({"name": "Step", "learning_rate": 1.0, "step_size": 1, "gamma": 0.5, "last_epoch": 2}, 3, 1)
    assert np.allclose(steps(sched, 3), [1.0, 0.5, 0.25])  # starts from the beginning all the same
    assert len(ppcls_warnings) == 1 and ppcls_warnings[0].startswith(
        "Optimizer.lr.last_epoch: accepted for compatibility; it has no effect")


def test_a_warmup_longer_than_the_run_is_clamped(ppcls_warnings):
    sched = build_lr({"name": "Cosine", "learning_rate": 0.1, "warmup_epoch": 5, "warmup_start_lr": 0.0}, 2, 2)
    assert np.allclose(steps(sched, 5), [0.0, 0.025, 0.05, 0.075, 0.1])
    assert ppcls_warnings == ["Optimizer.lr.warmup_epoch=5 >= epochs=2: clamped to 2"]


def test_piecewise_warms_up_to_its_first_value():
    sched = build_lr({"name": "Piecewise", "decay_epochs": [2], "values": [0.5, 0.05], "warmup_epoch": 1}, 3, 2)
    assert np.allclose(steps(sched, 7), [0.0, 0.25, 0.5, 0.5, 0.5, 0.5, 0.05])
