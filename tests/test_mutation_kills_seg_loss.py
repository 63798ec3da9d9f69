"""MultiScaleSegLoss behaviour that tests/test_seg.py left open, found by mutation testing (bash
tests/mutation.sh loss/seg_loss.py): the default weights and a single output, saturated probabilities, the
per-sample Dice, and the error messages."""
import numpy as np
import paddle
import pytest

from ppcls.loss.seg_loss import MultiScaleSegLoss
from ppcls.utils.errors import ConfigError

EPS = 1e-6


def reference(p, t, dice_weight):
    p = np.clip(p.astype(np.float64), EPS, 1 - EPS)
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
    inter = (p * t).sum(axis=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum(axis=(1, 2, 3)) + t.sum(axis=(1, 2, 3)) + 1)
    return bce + dice_weight * dice.mean()


def batch():
    rng = np.random.RandomState(0)
    p = rng.rand(2, 1, 4, 4).astype("float32")
    p[0, 0, 0, :2] = [0.0, 1.0]  # saturated: the clip keeps the logs finite
    t = np.zeros((2, 1, 4, 4), "float32")
    t[0, :, :2, :2] = 1  # the two samples differ in size: Dice is per sample, then averaged
    t[1, :, :, :3] = 1
    return p, t


@pytest.mark.parametrize("dice_weight", [0.0, 0.5])
def test_a_single_output_with_the_default_weight(dice_weight):
    p, t = batch()
    loss = MultiScaleSegLoss(dice_weight=dice_weight)(paddle.to_tensor(p), paddle.to_tensor(t))
    assert np.isfinite(float(loss))
    assert float(loss) == pytest.approx(reference(p, t, dice_weight), rel=1e-5)


def test_default_weights_are_one_per_output():
    p, t = batch()
    loss = MultiScaleSegLoss()([paddle.to_tensor(p), paddle.to_tensor(p)], paddle.to_tensor(t))
    assert float(loss) == pytest.approx(2 * reference(p, t, 0.0), rel=1e-5)


def test_errors_name_the_option():
    with pytest.raises(ConfigError, match=r"^MultiScaleSegLoss\.dice_weight: must be >= 0, got -1$"):
        MultiScaleSegLoss(dice_weight=-1)
    p, t = batch()
    with pytest.raises(ConfigError, match=r"^MultiScaleSegLoss\.weights: 1 weights for 2 outputs$"):
        MultiScaleSegLoss(weights=[1])([paddle.to_tensor(p)] * 2, paddle.to_tensor(t))
