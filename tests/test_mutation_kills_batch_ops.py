"""Batch-op behaviour that tests/test_data.py left open, found by mutation testing (bash tests/mutation.sh
data/preprocess/batch_ops.py): label layouts, argument checks and their messages, the epoch and batch-size
edges, cutmix boxes at the image borders and on non-square images, and OpSampler's defaults and bounds."""
import numpy as np
import paddle
import pytest

from ppcls.data.preprocess import batch_ops
from ppcls.data.preprocess.batch_ops import CutmixOperator, MixupOperator, OpSampler, _one_hot, build_batch_ops
from ppcls.utils.errors import ConfigError

K = 3


def images(n=4, c=3, h=8, w=8, seed=0):
    return paddle.to_tensor(np.random.RandomState(seed).rand(n, c, h, w).astype("float32"))


def labels(n=4):
    return paddle.to_tensor(np.arange(n) % K, dtype="int64")


# -- _one_hot ----------------------------------------------------------------------------------------------
def test_soft_targets_pass_through_and_hard_labels_become_one_hot():
    soft = paddle.to_tensor(np.random.RandomState(0).dirichlet(np.ones(K), 5).astype("float32"))  # N=5 != K
    np.testing.assert_array_equal(_one_hot(soft, K).numpy(), soft.numpy())
    half = soft.astype("float16")
    assert _one_hot(half, K).dtype == paddle.float16  # float16 soft targets are kept as they are
    eye = np.eye(K, dtype="float32")
    for hard in (paddle.to_tensor([0, 1]), paddle.to_tensor([[0], [1]]), paddle.to_tensor([0.0, 1.0]),
                 paddle.to_tensor([0, 1], dtype="int32")):
        out = _one_hot(hard, K)  # the classes seen stop short of K - 1: still K columns
        assert out.dtype == paddle.float32
        np.testing.assert_array_equal(out.numpy(), eye[[0, 1]])
    square = paddle.to_tensor([[0, 1, 2], [2, 1, 0], [1, 1, 1]], dtype="int64")  # int [K, K]: not targets
    assert _one_hot(square, K).shape == [9, K]


# -- _BatchOp ----------------------------------------------------------------------------------------------
def test_defaults_and_argument_checks():
    op = MixupOperator(class_num=K)
    assert (op.class_num, op.alpha, op.prob, op.stop_epoch) == (K, 1.0, 1.0, None)
    assert MixupOperator(class_num=1).class_num == 1
    for bad in (None, 0, -2):
        with pytest.raises(ConfigError, match=r"^MixupOperator: class_num must be positive \(set Arch\.class_num\)"):
            MixupOperator(class_num=bad)
    with pytest.raises(ConfigError, match=r"^CutmixOperator\.alpha: must be > 0, got 0"):
        CutmixOperator(class_num=K, alpha=0)


def mixed(op, x, epoch=None):
    out, _ = op(x, labels(x.shape[0])) if epoch is None else op(x, labels(x.shape[0]), epoch)
    return not np.array_equal(out.numpy(), x.numpy())


def test_the_stop_epoch_is_the_last_epoch_mixed_and_the_default_epoch_is_1():
    np.random.seed(0)
    op = MixupOperator(class_num=K, stop_epoch=1)
    assert mixed(op, images()) and mixed(op, images(), epoch=1) and not mixed(op, images(), epoch=2)


def test_two_images_and_one_channel_are_mixed_one_image_is_not():
    np.random.seed(1)
    op = MixupOperator(class_num=K)
    assert mixed(op, images(n=2))
    assert mixed(op, images(n=4, c=1))
    assert not mixed(op, images(n=1))


# -- CutmixOperator.mix with a chosen box ------------------------------------------------------------------
def cutmix(monkeypatch, lam, cx, cy, h=8, w=8):
    """Cutmix of a 2-image batch (perm: swap) with the box centre drawn as (cx, cy)."""
    draws = iter([cx, cy])
    monkeypatch.setattr(batch_ops.np.random, "randint", lambda high: next(draws))
    x = images(n=2, c=1, h=h, w=w)
    t = _one_hot(paddle.to_tensor([0, 1]), K)
    out, targets = CutmixOperator(class_num=K).mix(x, t, lam, paddle.to_tensor([1, 0]))
    pasted = out.numpy() == x.numpy()[::-1]
    kept = out.numpy() == x.numpy()
    return pasted[0, 0], kept[0, 0], out, targets


def box(h, w, y1, y2, x1, x2):
    m = np.zeros((h, w), bool)
    m[y1:y2, x1:x2] = True
    return m


def test_cutmix_box_in_the_middle(monkeypatch):
    pasted, kept, out, targets = cutmix(monkeypatch, 0.75, 4, 4)  # cut 0.5: a 4x4 box around (4, 4)
    np.testing.assert_array_equal(pasted, box(8, 8, 2, 6, 2, 6))
    np.testing.assert_array_equal(kept, ~box(8, 8, 2, 6, 2, 6))
    assert out.dtype == paddle.float32  # the mask must not promote the batch to float64
    np.testing.assert_allclose(targets.numpy()[0], [0.75, 0.25, 0.0], rtol=1e-6)


def test_cutmix_box_clipped_at_the_top_left_border(monkeypatch):
    pasted, _, _, targets = cutmix(monkeypatch, 0.75, 1, 1)
    np.testing.assert_array_equal(pasted, box(8, 8, 0, 3, 0, 3))
    np.testing.assert_allclose(targets.numpy()[0], [1 - 9 / 64, 9 / 64, 0.0], rtol=1e-6)


def test_cutmix_on_a_non_square_image(monkeypatch):
    pasted, _, _, _ = cutmix(monkeypatch, 0.75, 6, 2, h=4, w=12)  # box 6 wide, 2 high
    np.testing.assert_array_equal(pasted, box(4, 12, 1, 3, 3, 9))


@pytest.mark.parametrize("h,w,cx,cy", [(64, 8, 0, 32), (8, 64, 32, 0)])
def test_a_box_less_than_one_pixel_wide_at_the_border_pastes_nothing(monkeypatch, h, w, cx, cy):
    lam = 1 - (1 / 8) ** 2  # cut 1/8: the short side's box is under 2 pixels, so half of it is 0
    _, kept, out, targets = cutmix(monkeypatch, lam, cx, cy, h=h, w=w)
    assert kept.all()
    np.testing.assert_array_equal(targets.numpy(), np.eye(K, dtype="float32")[[0, 1]])


# -- OpSampler and build_batch_ops -------------------------------------------------------------------------
def test_opsampler_defaults_and_errors():
    sampler = OpSampler(K, MixupOperator={}, CutmixOperator=None)
    assert sampler.probs == [0.5, 0.5]
    assert [type(op).__name__ for op in sampler.ops] == ["MixupOperator", "CutmixOperator"]
    assert OpSampler(K, MixupOperator={"prob": 1.0}, CutmixOperator={"prob": 1e-6}).probs == [1.0, 1e-6]
    with pytest.raises(ConfigError, match=r"^OpSampler: give at least one op, e\.g\. MixupOperator: "):
        OpSampler(K)
    with pytest.raises(ConfigError, match=r"^OpSampler: probabilities sum to 1\.5 > 1$"):
        OpSampler(K, MixupOperator={"prob": 0.5}, CutmixOperator={"prob": 1.0})
    with pytest.raises(ConfigError, match=r"^OpSampler: probabilities sum to 1\.0000\d* > 1$"):
        OpSampler(K, MixupOperator={"prob": 0.5}, CutmixOperator={"prob": 0.50001})
    with pytest.raises(ConfigError, match=r"^OpSampler: unknown batch op 'Bogus'"):
        OpSampler(K, Bogus={})
    with pytest.raises(ConfigError, match=r"^OpSampler\.MixupOperator\.bogus: unknown option"):
        OpSampler(K, MixupOperator={"bogus": 1})
    with pytest.raises(ConfigError, match=r"^batch_transform_ops\[0\]\.MixupOperator\.bogus: unknown option"):
        build_batch_ops([{"MixupOperator": {"bogus": 1}}], K)


def test_opsampler_draw_below_the_cumulative_probability_picks_the_op(monkeypatch):
    sampler = OpSampler(K, MixupOperator={"prob": 0.25}, CutmixOperator={"prob": 0.5})
    picked = []
    for op in sampler.ops:
        monkeypatch.setattr(op, "mix", lambda x, t, lam, perm, name=type(op).__name__: (picked.append(name), (x, t))[1])
    for r in (0.0, 0.25, 0.5, 0.75):
        monkeypatch.setattr(batch_ops.np.random, "rand", lambda: r)
        sampler(images(), labels())
    assert picked == ["MixupOperator", "CutmixOperator", "CutmixOperator"]  # [0, .25) mixup, [.25, .75) cutmix


def test_the_epoch_reaches_the_picked_op_and_defaults_to_1():
    np.random.seed(0)
    sampler = OpSampler(K, MixupOperator={"prob": 1.0, "stop_epoch": 1})
    assert mixed(sampler, images()) and mixed(sampler, images(), epoch=1) and not mixed(sampler, images(), epoch=2)
    ops = build_batch_ops([{"MixupOperator": {"stop_epoch": 1}}], K)
    x = images()
    assert not np.array_equal(ops(x, labels())[0].numpy(), x.numpy())
    assert np.array_equal(ops(x, labels(), 2)[0].numpy(), x.numpy())
