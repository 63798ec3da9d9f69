"""Optimizer building that tests/test_loss_lr.py left open, found by mutation testing (bash tests/mutation.sh
optimizer/__init__.py): the Momentum default, regularizer checks and L1 vs L2, the no-decay options,
gradient clipping, AdamW's default decay, the optimizer's own options and the returned schedule."""
import numpy as np
import paddle
import pytest

from ppcls.optimizer import build_optimizer, validate_optimizer
from ppcls.utils.errors import ConfigError


class Scaled(paddle.nn.Layer):
    """y = (x @ weight) * scale: a 1-D parameter that is neither a bias nor a norm layer's."""

    def __init__(self):
        super().__init__()
        self.weight = self.create_parameter([2, 2])
        self.scale = self.create_parameter([2])

    def forward(self, x):
        return paddle.matmul(x, self.weight) * self.scale


def filled(model, value):
    for p in model.parameters():
        p.set_value(paddle.full(p.shape, value, p.dtype))
    return model


def step_without_gradient(opt, model):
    """One optimizer step with all-zero gradients: what changes is the weight decay alone."""
    model(paddle.zeros([1, 2])).sum().backward()
    for p in model.parameters():
        p.grad.set_value(paddle.zeros(p.shape, p.dtype))
    opt.step()
    return {n: p.numpy().copy() for n, p in model.named_parameters()}


@pytest.mark.parametrize("cfg,message", [
    (3, "Optimizer: expected a mapping, got 3"),
    ({"lr": 0.1, "regularizer": "L2"}, "Optimizer.regularizer: expected {name: L2|L1, coeff: float}, got 'L2'"),
    ({"lr": 0.1, "regularizer": {"name": "L3"}}, "Optimizer.regularizer: expected {name: L2|L1, coeff: float}, got {'name': 'L3'}"),
    ({"lr": 0.1, "regularizer": {"coeff": 0.1, "factor": 1}}, "Optimizer.regularizer.factor: unknown option (name, coeff)"),
])
def test_optimizer_config_errors(cfg, message):
    with pytest.raises(ConfigError) as e:
        validate_optimizer(cfg)
    assert str(e.value) == message


def test_accepted_regularizers_and_the_momentum_default():
    for reg in ({"coeff": 0.1}, {"name": "L1"}, {"name": "L2"}, {"name": "L1Decay"}, {"name": "L2Decay"}):
        validate_optimizer({"lr": 0.1, "regularizer": reg})
    validate_optimizer({"lr": 0.1, "momentum": 0.8})  # no name: Momentum, whose option momentum is
    opt, sched = build_optimizer({"lr": 0.1, "momentum": 0.5}, paddle.nn.Linear(2, 2), 1, 1)
    assert isinstance(opt, paddle.optimizer.Momentum) and opt._momentum == 0.5 and sched is None


@pytest.mark.parametrize("name,shrink", [(None, 0.5 * 2.0), ("L2", 0.5 * 2.0), ("L2Decay", 0.5 * 2.0),
                                         ("L1", 0.5), ("L1Decay", 0.5)])
def test_l2_decays_by_the_weight_and_l1_by_its_sign(name, shrink):
    model = filled(Scaled(), 2.0)
    reg = {"coeff": 0.5} if name is None else {"name": name, "coeff": 0.5}
    opt, _ = build_optimizer({"name": "SGD", "lr": 1.0, "regularizer": reg}, model, 1, 1)
    after = step_without_gradient(opt, model)
    np.testing.assert_allclose(after["weight"], 2.0 - shrink, rtol=1e-6)


@pytest.mark.parametrize("option", [{"no_weight_decay_bn_bias": True}, {"one_dim_param_no_weight_decay": True},
                                    {"no_weight_decay_name": "other scale"}])
def test_parameters_left_out_of_the_decay(option):
    model = filled(Scaled(), 2.0)
    opt, _ = build_optimizer(dict({"name": "SGD", "lr": 1.0, "regularizer": {"coeff": 0.5}}, **option), model, 1, 1)
    after = step_without_gradient(opt, model)
    np.testing.assert_allclose(after["weight"], 1.0, rtol=1e-6)  # decayed
    np.testing.assert_allclose(after["scale"], 2.0, rtol=1e-6)  # left alone


def test_gradient_clipping_options():
    model = paddle.nn.Linear(2, 2)
    opt, _ = build_optimizer({"name": "SGD", "lr": 0.1, "clip_norm": 2}, model, 1, 1)
    assert type(opt._grad_clip) is paddle.nn.ClipGradByNorm and opt._grad_clip.clip_norm == 2.0
    opt, _ = build_optimizer({"name": "SGD", "lr": 0.1, "clip_global_norm": 3}, model, 1, 1)
    assert type(opt._grad_clip) is paddle.nn.ClipGradByGlobalNorm and opt._grad_clip.clip_norm == 3.0
    opt, _ = build_optimizer({"name": "SGD", "lr": 0.1}, model, 1, 1)
    assert opt._grad_clip is None


def test_adamw_decays_by_0_01_without_a_regularizer():
    model = filled(Scaled(), 1.0)
    opt, _ = build_optimizer({"name": "AdamW", "lr": 0.1}, model, 1, 1)
    after = step_without_gradient(opt, model)
    np.testing.assert_allclose(after["weight"], 1.0 - 0.1 * 0.01, rtol=1e-6)


def test_a_schedule_is_returned_with_the_optimizer():
    opt, sched = build_optimizer({"name": "SGD", "lr": {"name": "Cosine", "learning_rate": 0.1}},
                                 paddle.nn.Linear(2, 2), 2, 3)
    assert isinstance(sched, paddle.optimizer.lr.LRScheduler) and opt._learning_rate is sched


def test_both_no_decay_switches_at_once():
    model = filled(Scaled(), 2.0)
    opt, _ = build_optimizer({"name": "SGD", "lr": 1.0, "regularizer": {"coeff": 0.5}, "no_weight_decay_bn_bias": True,
                              "one_dim_param_no_weight_decay": True}, model, 1, 1)
    after = step_without_gradient(opt, model)
    np.testing.assert_allclose(after["scale"], 2.0, rtol=1e-6)
