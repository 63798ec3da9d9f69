"""RandAugment, AutoAugment and RandomErasing: determinism under a seed, shapes/dtypes/ranges,
probability 0 is the identity."""
import random

import numpy as np
import pytest

from ppcls.data.preprocess import OPS
from ppcls.data.preprocess.autoaugment import OPS_BY_NAME
from ppcls.utils.errors import ConfigError


def image(h=48, w=64, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)


def seeded(op, x, seed):
    random.seed(seed)
    np.random.seed(seed)
    return op(x)


@pytest.mark.parametrize("name,kwargs", [("RandAugment", {"num_layers": 2, "magnitude": 9, "magnitude_std": 0.5}),
                                         ("AutoAugment", {})])
def test_policy_ops_deterministic_shape_dtype(name, kwargs):
    op = OPS[name](**kwargs)
    x = image()
    outs = [seeded(op, x, s) for s in range(12)]
    assert all(o.shape == x.shape and o.dtype == np.uint8 for o in outs)
    assert np.array_equal(seeded(op, x, 3), outs[3])
    assert any(not np.array_equal(o, x) for o in outs)  # it does change images
    assert seeded(op, image(5, 7), 1).shape == (5, 7, 3)  # tiny, non-square


def test_randaugment_identity_cases_and_errors():
    x = image()
    assert OPS["RandAugment"](num_layers=2, magnitude=9, prob=0.0)(x) is x
    assert OPS["RandAugment"](num_layers=0)(x) is x
    with pytest.raises(ConfigError):
        OPS["RandAugment"](magnitude=11)
    with pytest.raises(ConfigError, match="did you mean 'Rotate'"):
        OPS["RandAugment"](ops=["Rotat"])
    with pytest.raises(ConfigError, match="before NormalizeImage"):
        OPS["RandAugment"](prob=1.0)(x.astype(np.float32))


@pytest.mark.parametrize("name", sorted(OPS_BY_NAME))
def test_every_basic_op(name):
    from PIL import Image
    random.seed(0)
    out = np.asarray(OPS_BY_NAME[name](Image.fromarray(image()), 9.0))
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("mode", ["pixel", "rand", "const"])
def test_random_erasing(mode):
    x = np.random.RandomState(0).randn(32, 40, 3).astype(np.float32)
    op = OPS["RandomErasing"](EPSILON=1.0, mode=mode, sl=0.1, sh=0.3)
    a, b = seeded(op, x, 5), seeded(op, x, 5)
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.shape == x.shape
    changed = (a != x).any(axis=2)
    ys, xs = np.nonzero(changed)
    frac = changed.mean()
    assert 0.05 < frac <= 0.35  # one rectangle of the requested area
    assert changed[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()
    if mode == "const":
        assert (a[changed] == 0).all()
    chw = np.ascontiguousarray(x.transpose(2, 0, 1))
    out = seeded(op, chw, 5)
    assert out.shape == chw.shape and np.array_equal(out.transpose(1, 2, 0), a)
    assert OPS["RandomErasing"](EPSILON=0.0)(x) is x
    with pytest.raises(ConfigError):
        OPS["RandomErasing"](mode="noise")
