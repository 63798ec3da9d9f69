"""CELoss behaviour that tests/test_loss_lr.py left open, found by mutation testing (bash tests/mutation.sh
loss/celoss.py): the bounds of epsilon, every reduction, the (logits, aux) tuple, float hard labels, the
labels' classes not covering all K, and the dtype and precision of the result."""
import numpy as np
import paddle
import pytest

from ppcls.loss.celoss import CELoss
from ppcls.utils.errors import ConfigError

K = 5


def batch(n=6, seed=1, dtype="float64"):
    rng = np.random.RandomState(seed)
    return rng.randn(n, K).astype(dtype), rng.randint(0, K, n)


def log_softmax(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def per_sample(x, target):
    return -(target * log_softmax(x.astype(np.float64))).sum(1)


def hard_target(y, eps=0.0, smoothing="uniform"):
    onehot = np.eye(K)[y]
    if smoothing == "uniform":
        return onehot * (1 - eps) + eps / K
    return onehot * (1 - eps) + (1 - onehot) * eps / (K - 1)


def test_epsilon_bounds_and_error_messages():
    assert CELoss(epsilon=0).epsilon == 0.0  # 0 is allowed: smoothing off
    assert CELoss(epsilon=0.999).epsilon == pytest.approx(0.999)
    for bad in (1, 1.0, -0.1):
        with pytest.raises(ConfigError, match=r"CELoss\.epsilon: must be in \[0, 1\)"):
            CELoss(epsilon=bad)
    with pytest.raises(ConfigError, match=r"CELoss\.smoothing: .*'gauss'"):
        CELoss(smoothing="gauss")
    with pytest.raises(ConfigError, match=r"CELoss\.reduction: .*'avg'"):
        CELoss(reduction="avg")


@pytest.mark.parametrize("epsilon,smoothing", [(None, "uniform"), (0.1, "uniform"), (0.1, "exclusive")])
def test_every_reduction_of_hard_labels(epsilon, smoothing):
    x, y = batch()
    ref = per_sample(x, hard_target(y, epsilon or 0.0, smoothing))
    xt, yt = paddle.to_tensor(x), paddle.to_tensor(y, dtype="int64")
    none = CELoss(epsilon, smoothing, reduction="none")(xt, yt)
    assert none.shape == [6]
    # Paddle's label_smoothing (the uniform path) loses float64 precision at ~5e-8
    np.testing.assert_allclose(none.numpy(), ref, rtol=1e-6)
    assert float(CELoss(epsilon, smoothing, reduction="sum")(xt, yt)) == pytest.approx(ref.sum(), rel=1e-6)
    assert float(CELoss(epsilon, smoothing, reduction="mean")(xt, yt)) == pytest.approx(ref.mean(), rel=1e-6)


def test_soft_targets_every_reduction_and_the_logits_dtype():
    x, _ = batch(dtype="float32")
    p = np.random.RandomState(2).dirichlet(np.ones(K), 6)  # float64 targets for float32 logits
    xt, pt = paddle.to_tensor(x), paddle.to_tensor(p)
    for eps in (None, 0.2):
        target = p if eps is None else p * (1 - eps) + eps / K
        none = CELoss(eps, reduction="none")(xt, pt)
        assert none.dtype == paddle.float32  # the targets follow the logits, not the other way round
        np.testing.assert_allclose(none.numpy(), per_sample(x, target), rtol=1e-5)
        assert float(CELoss(eps, reduction="sum")(xt, pt)) == pytest.approx(per_sample(x, target).sum(), rel=1e-5)


def test_a_logits_tuple_uses_its_first_element():
    x, y = batch()
    xt, yt = paddle.to_tensor(x), paddle.to_tensor(y, dtype="int64")
    aux = paddle.zeros_like(xt)
    plain = float(CELoss()(xt, yt))
    assert float(CELoss()((xt, aux), yt)) == pytest.approx(plain, rel=1e-12)
    assert float(CELoss()([xt, aux], yt)) == pytest.approx(plain, rel=1e-12)


def test_float_hard_labels_are_class_indices():
    x, y = batch()
    xt = paddle.to_tensor(x)
    ref = per_sample(x, hard_target(y)).mean()
    assert float(CELoss()(xt, paddle.to_tensor(y.astype("float32")))) == pytest.approx(ref, rel=1e-9)
    assert float(CELoss()(xt, paddle.to_tensor(y.astype("float32").reshape(-1, 1)))) == pytest.approx(ref, rel=1e-9)


def test_no_smoothing_keeps_float64_precision():
    # epsilon 0 must not go through Paddle's label_smoothing, which rounds float64 losses at ~5e-8
    x, y = batch()
    for eps in (None, 0, 0.0):
        out = CELoss(eps, reduction="none")(paddle.to_tensor(x), paddle.to_tensor(y, dtype="int64"))
        np.testing.assert_allclose(out.numpy(), per_sample(x, hard_target(y)), rtol=1e-12)


def test_exclusive_smoothing_with_labels_that_miss_the_last_classes():
    # the one-hot must have K columns even when the batch's labels stop short of K-1; the smoothing is
    # computed in the logits' float64, not in float32
    x, _ = batch(n=4)
    y = np.array([0, 1, 1, 0])
    out = CELoss(0.1, "exclusive", reduction="none")(paddle.to_tensor(x), paddle.to_tensor(y, dtype="int64"))
    np.testing.assert_allclose(out.numpy(), per_sample(x, hard_target(y, 0.1, "exclusive")), rtol=1e-12)
    single = CELoss(0.1, "exclusive")(paddle.to_tensor(x.astype("float32")), paddle.to_tensor(y, dtype="int64"))
    assert single.dtype == paddle.float32  # the one-hot targets take the logits' dtype, not float64
