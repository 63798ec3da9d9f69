import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from ppcls.loss import CombinedLoss
from ppcls.loss.celoss import CELoss
from ppcls.metric.topk import TopkAcc
from ppcls.optimizer import build_lr, build_optimizer
from ppcls.utils.errors import ConfigError


def logits_labels(n=6, k=5, seed=0):
    rng = np.random.RandomState(seed)
    return paddle.to_tensor(rng.randn(n, k).astype("float32")), paddle.to_tensor(rng.randint(0, k, n), dtype="int64")


def log_softmax(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def test_celoss_hard_labels_with_and_without_smoothing():
    x, y = logits_labels()
    ls = log_softmax(x.numpy().astype(np.float64))
    k = 5
    ref = -ls[np.arange(6), y.numpy()].mean()
    assert float(CELoss()(x, y)) == pytest.approx(ref, rel=1e-5)
    eps = 0.1
    onehot = np.eye(k)[y.numpy()]
    uni = onehot * (1 - eps) + eps / k
    assert float(CELoss(epsilon=eps)(x, y)) == pytest.approx(-(uni * ls).sum(1).mean(), rel=1e-5)
    exc = onehot * (1 - eps) + (1 - onehot) * eps / (k - 1)
    assert float(CELoss(epsilon=eps, smoothing="exclusive")(x, y)) == pytest.approx(-(exc * ls).sum(1).mean(), rel=1e-5)
    assert float(CELoss()(x, y.reshape([-1, 1]))) == pytest.approx(ref, rel=1e-5)  # [N, 1] labels too


def test_celoss_soft_targets_are_not_softmaxed():
    x, _ = logits_labels()
    ls = log_softmax(x.numpy().astype(np.float64))
    p = np.zeros((6, 5), np.float32)
    p[:, 0], p[:, 1] = 0.7, 0.3
    t = paddle.to_tensor(p)
    assert float(CELoss()(x, t)) == pytest.approx(-(p * ls).sum(1).mean(), rel=1e-5)
    eps = 0.2
    sm = p * (1 - eps) + eps / 5
    assert float(CELoss(epsilon=eps)(x, t)) == pytest.approx(-(sm * ls).sum(1).mean(), rel=1e-5)


def test_combined_loss_weights_and_errors():
    x, y = logits_labels()
    out = CombinedLoss([{"CELoss": {"weight": 0.5}}, {"CELoss": {"weight": 2.0, "epsilon": 0.1}}])(x, y)
    a, b = float(CELoss()(x, y)), float(CELoss(epsilon=0.1)(x, y))
    assert float(out["loss"]) == pytest.approx(0.5 * a + 2.0 * b, rel=1e-5)
    with pytest.raises(ConfigError):
        CELoss(epsilon=1.5)


def test_topk_acc_accumulates_on_device():
    m = TopkAcc(topk=[1, 2])
    x = paddle.to_tensor([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    m.update(x, paddle.to_tensor([0, 1, 1]))
    m.update(x[:1], paddle.to_tensor([2]))
    assert m.compute() == {"top1": pytest.approx(1 / 4), "top2": pytest.approx(3 / 4)}


def steps(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.get_lr() if hasattr(sched, "get_lr") else sched.last_lr)
        sched.step()
    return np.array(out)


def test_piecewise_boundaries_per_iteration():
    lr = steps(build_lr({"name": "Piecewise", "decay_epochs": [2, 3], "values": [0.1, 0.01, 0.001]}, 4, 5), 20)
    assert np.allclose(lr[:10], 0.1) and np.allclose(lr[10:15], 0.01) and np.allclose(lr[15:], 0.001)
    lr = steps(build_lr({"name": "Piecewise", "decay_epochs": [1], "learning_rate": 0.4, "gamma": 0.5}, 2, 2), 4)
    assert np.allclose(lr, [0.4, 0.4, 0.2, 0.2])


def test_cosine_with_warmup_values():
    # 2 warmup epochs of 2 iterations from 0.01, then cosine over the remaining 2 epochs (4 iterations)
    lr = steps(build_lr({"name": "Cosine", "learning_rate": 0.1, "warmup_epoch": 2, "warmup_start_lr": 0.01}, 4, 2), 9)
    assert lr[0] == pytest.approx(0.01)
    assert lr[2] == pytest.approx(0.01 + 0.09 * 2 / 4)
    assert lr[4] == pytest.approx(0.1)
    assert lr[6] == pytest.approx(0.05)
    assert lr[8] == pytest.approx(0.0, abs=1e-12)


def test_multistep_and_step():
    lr = steps(build_lr({"name": "MultiStepDecay", "learning_rate": 1.0, "milestones": [1, 3], "gamma": 0.1}, 4, 2), 8)
    assert np.allclose(lr, [1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01])
    lr = steps(build_lr({"name": "Step", "learning_rate": 1.0, "step_size": 2, "gamma": 0.5, "warmup_epoch": 1}, 5, 1), 5)
    assert np.allclose(lr, [0.0, 1.0, 1.0, 0.5, 0.5])


def test_no_weight_decay_for_bn_and_bias():
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3, bias_attr=True), paddle.nn.BatchNorm2D(4))
    for p in model.parameters():
        p.set_value(paddle.ones(p.shape))
    opt, _ = build_optimizer({"name": "SGD", "lr": 0.0 + 1.0, "regularizer": {"name": "L2", "coeff": 0.5},
                              "no_weight_decay_bn_bias": True}, model, 1, 1)
    for p in model.parameters():
        p.clear_gradient()
    model(paddle.zeros([1, 3, 5, 5])).sum().backward()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    opt.step()
    params = dict(model.named_parameters())
    # the conv weight decays (1 - lr*(grad + coeff*1)), bias and BN params only follow their gradient
    np.testing.assert_allclose(params["0.weight"].numpy(), 1 - (grads["0.weight"] + 0.5), rtol=1e-5)
    np.testing.assert_allclose(params["0.bias"].numpy(), 1 - grads["0.bias"], rtol=1e-5)
    np.testing.assert_allclose(params["1.weight"].numpy(), 1 - grads["1.weight"], rtol=1e-5)


@pytest.mark.parametrize("name,extra", [("Momentum", {"momentum": 0.9, "use_nesterov": True}), ("SGD", {}),
                                        ("AdamW", {}), ("RMSProp", {})])
def test_each_optimizer_steps(name, extra):
    model = paddle.nn.Linear(3, 2)
    opt, sched = build_optimizer(dict(name=name, lr={"name": "Cosine", "learning_rate": 0.1}, **extra), model, 2, 3)
    before = model.weight.numpy().copy()
    model(paddle.ones([2, 3])).sum().backward()
    opt.step()
    assert not np.allclose(before, model.weight.numpy())
