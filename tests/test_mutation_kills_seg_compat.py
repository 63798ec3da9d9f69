"""The Paddle 3 fixes of PaddleSeg's functions (ppcls/seg/compat.py) on the settings the shipped configs do not
use (avg_non_ignore, top_k_percent_pixels, semantic weights, class weights of Dice, labels outside the classes),
checked against NumPy, and the fix machinery's errors. Written against the survivors of
`bash tests/mutation.sh seg/compat.py`."""
import numpy as np
import pytest

pytest.importorskip("paddleseg")

import paddle  # noqa: E402

import ppcls.seg  # noqa: E402,F401  (applies the fixes)
from ppcls.seg import compat  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402


def _logits_labels(seed=0, classes=3, ignored=3):
    rs = np.random.RandomState(seed)
    logit = rs.randn(2, classes, 4, 5).astype("float32")
    label = rs.randint(0, classes, (2, 4, 5)).astype("int64")
    label[0, 0, :ignored] = 255
    return logit, label


def _nll(logit, label, ignore=255):
    z = logit - logit.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    keep = label != ignore
    safe = np.where(keep, label, 0)
    return -np.take_along_axis(logp, safe[:, None], 1)[:, 0] * keep, keep


def _ce(logit, label, **kw):
    from paddleseg.models.losses import CrossEntropyLoss
    semantic = kw.pop("semantic_weights", None)
    loss_fn = CrossEntropyLoss(**kw)
    out = loss_fn(paddle.to_tensor(logit), paddle.to_tensor(label),
                  None if semantic is None else paddle.to_tensor(semantic))
    return float(out)


def test_mutation_kills_cross_entropy_over_every_pixel():
    """avg_non_ignore=False: the mean runs over all pixels, the ignored ones counting as zero loss."""
    logit, label = _logits_labels()
    nll, keep = _nll(logit, label)
    np.testing.assert_allclose(_ce(logit, label, avg_non_ignore=False), nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(_ce(logit, label), nll.sum() / keep.sum(), rtol=1e-5)


def test_mutation_kills_cross_entropy_of_the_hardest_pixels():
    logit, label = _logits_labels(1)
    nll, _ = _nll(logit, label)
    flat = np.sort(nll.reshape(-1))[::-1]
    k = int(0.3 * flat.size)
    np.testing.assert_allclose(_ce(logit, label, top_k_percent_pixels=0.3), flat[:k].mean(), rtol=1e-5)
    weight = np.array([1.0, 2.0, 0.5], "float32")
    safe = np.where(label != 255, label, 0)
    weighted = (nll * weight[safe]).reshape(-1)
    order = np.argsort(-weighted, kind="stable")[:k]
    want = weighted[order].mean() / weight[safe].reshape(-1)[order].mean()
    np.testing.assert_allclose(_ce(logit, label, top_k_percent_pixels=0.3, weight=list(weight)), want, rtol=1e-5)


def test_mutation_kills_cross_entropy_with_semantic_weights():
    logit, label = _logits_labels(2)
    nll, keep = _nll(logit, label)
    semantic = np.random.RandomState(5).rand(*label.shape).astype("float32")
    np.testing.assert_allclose(_ce(logit, label, semantic_weights=semantic), (nll * semantic).sum() / keep.sum(),
                               rtol=1e-5)


def test_mutation_kills_cross_entropy_of_a_loss_with_a_trailing_axis():
    """A [N, H, W, 1] per-pixel loss (soft-label cross entropy) is squeezed to the label's shape."""
    from paddleseg.models.losses import CrossEntropyLoss
    logit, label = _logits_labels(3)
    nll, keep = _nll(logit, label)
    fn = CrossEntropyLoss()
    got = compat._ce_post_process_loss(fn, paddle.to_tensor(logit).transpose([0, 2, 3, 1]), paddle.to_tensor(label),
                                       None, paddle.to_tensor(nll[..., None]))
    assert got.shape == [] or got.shape == [1]
    np.testing.assert_allclose(float(got), nll.sum() / keep.sum(), rtol=1e-5)


def _areas(pred, label, classes, ignore=255):
    keep = label != ignore
    return ([int(((pred == c) & (label == c)).sum()) for c in range(classes)],
            [int(((pred == c) & keep).sum()) for c in range(classes)],
            [int((label == c).sum()) for c in range(classes)])


def test_mutation_kills_area_of_3d_maps_and_labels_outside_the_classes():
    rs = np.random.RandomState(4)
    pred = rs.randint(0, 3, (2, 6, 7)).astype("int32")
    label = rs.randint(0, 3, (2, 6, 7)).astype("int64")
    label[0, 0, :2] = 255
    label[1, 0, :3] = 7  # outside the classes, and not the ignore index
    label[1, 1, :2] = -1
    pred[1, 0, 0] = 7 - 7  # a prediction of class 0 on an out-of-range label is no hit
    got = compat._calculate_area(paddle.to_tensor(pred), paddle.to_tensor(label), 3, 255)
    assert [g.dtype for g in got] == [paddle.int64] * 3
    assert tuple(g.numpy().tolist() for g in got) == _areas(pred, label, 3)
    got = compat._calculate_area(paddle.to_tensor(pred[:, None]), paddle.to_tensor(label), 3, ignore_index=7)
    assert tuple(g.numpy().tolist() for g in got) == _areas(pred, label, 3, ignore=7)


def test_mutation_kills_area_of_maps_of_other_shapes_is_an_error():
    with pytest.raises(ValueError) as e:
        compat._calculate_area(paddle.zeros([1, 4, 5], "int64"), paddle.zeros([1, 1, 4, 6], "int64"), 2)
    msg = str(e.value)
    assert msg.startswith("Shape of `pred` and `label should be equal, but there are ")  # PaddleSeg's message
    assert msg.index("[1, 4, 5]") < msg.index("[1, 4, 6]")


def _dice(logit, label, weight=None, smooth=1.0, ignore=255):
    z = np.exp(logit - logit.max(1, keepdims=True))
    prob = z / z.sum(1, keepdims=True)
    keep = label != ignore
    safe = np.where(keep, label, 0)
    total = 0.0
    for c in range(logit.shape[1]):
        p = (prob[:, c] * keep).reshape(len(label), -1)
        t = ((safe == c) * keep).reshape(len(label), -1)
        loss = (1 - (2 * (p * t).sum(1) + smooth) / ((p + t).sum(1) + smooth + 1e-8)).mean()
        total += loss * (1.0 if weight is None else weight[c])
    return total / logit.shape[1]


def test_mutation_kills_dice_with_class_weights_and_smoothing():
    from paddleseg.models.losses import DiceLoss
    logit, label = _logits_labels(6, ignored=5)
    got = DiceLoss(weight=[0.2, 1.0, 3.0], smooth=0.5, ignore_index=255)(paddle.to_tensor(logit),
                                                                           paddle.to_tensor(label))
    np.testing.assert_allclose(float(got), _dice(logit, label, [0.2, 1.0, 3.0], 0.5), rtol=1e-5)
    label[label == 255] = 1
    label[1, 1, :] = 2
    got = DiceLoss(ignore_index=2)(paddle.to_tensor(logit), paddle.to_tensor(label))
    np.testing.assert_allclose(float(got), _dice(logit, label, ignore=2), rtol=1e-5)
    with pytest.raises(ValueError) as e:
        DiceLoss(weight=[1.0, 2.0])(paddle.to_tensor(logit), paddle.to_tensor(label))
    assert str(e.value) == "DiceLoss.weight: 2 weights for 3 classes"


# -- the machinery ----------------------------------------------------------------------------------------------
def test_mutation_kills_fixes_apply_once_per_known_version():
    applied = compat.apply_fixes("2.8.0")
    assert applied == compat.FIXES["2.8.0"] and compat.apply_fixes("2.8.0") == applied
    assert applied is not compat._applied  # a copy: the caller cannot change what is recorded
    with pytest.raises(ConfigError) as e:
        compat.apply_fixes("2.9.1")
    assert str(e.value) == ("PaddleSeg 2.9.1: no compatibility fixes are known for it (supported: 2.8.0); install "
                            "the supported one with `bash tools/install_extras.sh seg`")


def _sample(x):
    y = x + 1
    return y * 2


def test_mutation_kills_source_edits_keep_the_function_and_name_a_mismatch(monkeypatch):
    import types
    func = types.FunctionType(_sample.__code__, _sample.__globals__, "_sample")
    func.__qualname__ = "_sample"
    compat._edit_source(func, [("y * 2", "_helper(y)")], helpers={"_helper": lambda v: v * 10})
    assert func(1) == 20 and compat.original(func)(1) == 4 and func.__ppcls_fixed__ is True
    compat._edit_source(func, [("never there", "x")])  # already fixed: left alone
    assert func(1) == 20
    del globals()["_helper"]
    plain = types.FunctionType(_sample.__code__, _sample.__globals__, "_sample")
    plain.__qualname__ = "_sample"
    assert compat.original(plain)(2) == 6  # a function never edited is its own original
    with pytest.raises(ConfigError) as e:
        compat._edit_source(plain, [("x + 1", "x + 2"), ("y", "z")])
    assert str(e.value) == (f"PaddleSeg's {__name__}._sample is not the 2.8.0 source this fix was written for "
                            f"('y' found 2 times); reinstall with `bash tools/install_extras.sh seg`")
    assert plain(1) == 4  # nothing half-applied


def test_mutation_kills_flops_are_skipped_and_checkpoints_named(tmp_path):
    assert compat._skip_flops(object(), [1, 3, 8, 8], print_detail=True) is None
    bad = tmp_path / "model.pdparams"
    bad.write_bytes(b"garbage")
    with pytest.raises(ConfigError) as e:
        compat._safe_load(str(bad))
    assert str(e.value) == f"{bad}: unreadable or truncated PaddleSeg checkpoint file (pickle data was truncated)"
    good = tmp_path / "good.pdparams"
    paddle.save({"w": paddle.ones([2])}, str(good))
    np.testing.assert_array_equal(compat._safe_load(str(good))["w"], [1.0, 1.0])


def test_mutation_kills_area_defaults_and_single_images():
    pred = np.array([[[0, 1, 1], [0, 0, 1]]], "int64")  # [1, 2, 3]: one image
    label = np.array([[[0, 1, 255], [0, 1, 1]]], "int64")
    want = ([2, 2, 0], [3, 2, 0], [2, 3, 0])  # class 2 is in neither map
    got = compat._calculate_area(paddle.to_tensor(pred[:, None]), paddle.to_tensor(label), 3)  # ignore_index 255
    assert tuple(g.numpy().tolist() for g in got) == want
    got = compat._calculate_area(paddle.to_tensor(pred), paddle.to_tensor(label[:, None]), 3)
    assert tuple(g.numpy().tolist() for g in got) == want


def test_mutation_kills_dice_keeps_the_logits_dtype():
    from paddleseg.models.losses import DiceLoss
    logit, label = _logits_labels(7)
    assert DiceLoss()(paddle.to_tensor(logit), paddle.to_tensor(label)).dtype == paddle.float32


def test_mutation_kills_modules_are_imported_by_path():
    import paddleseg.core.train  # noqa: F401
    module = compat._module("paddleseg.core.train")
    assert isinstance(module, type(compat)) and callable(module.train)  # the module, not its train function


# -- each fix on a fresh copy of PaddleSeg's object --------------------------------------------------------------
def _fresh_function(func):
    """PaddleSeg's unfixed ``func`` as a new function object, as it is before the fixes."""
    import types
    fresh = types.FunctionType(compat.original(func).__code__, func.__globals__, func.__name__, func.__defaults__,
                               func.__closure__)
    fresh.__qualname__, fresh.__module__ = func.__qualname__, func.__module__
    return fresh


def test_mutation_kills_the_train_fix_on_paddleseg_s_train(monkeypatch, tmp_path, capsys):
    import types
    from paddleseg.core import train as fixed_train
    from paddleseg.models.losses import CrossEntropyLoss
    fresh = _fresh_function(fixed_train)
    monkeypatch.setattr(compat, "_module", lambda name: types.SimpleNamespace(train=fresh) if name ==
                        "paddleseg.core.train" else None)
    compat._fix_train()
    assert fresh.__ppcls_fixed__ is True

    class OneConv(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 2, 1)

        def forward(self, x):
            return [self.conv(x)]

    class TinySet(paddle.io.Dataset):
        num_classes, ignore_index = 2, 255

        def __getitem__(self, i):
            rs = np.random.RandomState(i)
            return {"img": rs.rand(3, 8, 8).astype("float32"), "label": (rs.rand(8, 8) > 0.5).astype("int64"),
                    "trans_info": []}

        def __len__(self):
            return 4
    model = OneConv()
    fresh(model, TinySet(), optimizer=paddle.optimizer.SGD(0.1, parameters=model.parameters()),
          save_dir=str(tmp_path), iters=4, batch_size=2, save_interval=4, log_iters=2,
          losses={"types": [CrossEntropyLoss()], "coef": [1]})
    out = capsys.readouterr().out
    import re
    losses = [float(v) for v in re.findall(r"\[TRAIN\].*? loss: ([\d.]+)", out)]
    assert len(losses) == 2 and all(0 < v < 5 for v in losses)  # averaged over two steps at each log step
    assert (tmp_path / "iter_4" / "model.pdparams").is_file()


def test_mutation_kills_the_loading_fix_on_paddleseg_s_loaders(monkeypatch, tmp_path):
    import pickle
    import types
    from paddleseg.utils import utils as seg_utils
    load, resume = _fresh_function(seg_utils.load_pretrained_model), _fresh_function(seg_utils.resume)
    # as before the first fix: PaddleSeg's module does not have the safe loader yet
    monkeypatch.delitem(vars(seg_utils), "_ppcls_safe_load")
    monkeypatch.setattr(compat, "_module", lambda name: types.SimpleNamespace(load_pretrained_model=load,
                                                                                resume=resume))
    compat._fix_loading()
    model = paddle.nn.Linear(2, 2)
    good = tmp_path / "good.pdparams"
    paddle.save({k: v * 0 + 3 for k, v in model.state_dict().items()}, str(good))
    load(model, str(good))
    assert float(model.weight.mean()) == 3.0

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    ckpt = tmp_path / "iter_3"
    ckpt.mkdir()
    with open(ckpt / "model.pdparams", "wb") as f:
        pickle.dump({"weight": Evil()}, f)
    with pytest.raises(ConfigError, match="refusing"):
        load(model, str(ckpt / "model.pdparams"))
    with pytest.raises(ConfigError, match="refusing"):
        resume(model, paddle.optimizer.SGD(0.1, parameters=model.parameters()), str(ckpt))
    paddle.save(model.state_dict(), str(ckpt / "model.pdparams"))
    with open(ckpt / "model.pdopt", "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(ConfigError, match="refusing"):
        resume(model, paddle.optimizer.SGD(0.1, parameters=model.parameters()), str(ckpt))


@pytest.mark.parametrize("fix, module, attr, key, replacement", [
    ("_fix_cross_entropy", "paddleseg.models.losses.cross_entropy_loss", "CrossEntropyLoss._post_process_loss",
     "CrossEntropyLoss._post_process_loss", "_ce_post_process_loss"),
    ("_fix_dice", "paddleseg.models.losses.dice_loss", "DiceLoss.forward", "DiceLoss.forward", "_dice_forward"),
    ("_fix_calculate_area", "paddleseg.utils.metrics", "calculate_area", "metrics.calculate_area",
     "_calculate_area"),
])
def test_mutation_kills_replacements_keep_paddleseg_s_original(monkeypatch, fix, module, attr, key, replacement):
    import types

    def paddleseg_own(*args):
        return "original"
    owner_name, _, name = attr.rpartition(".")
    namespace = types.SimpleNamespace()
    if owner_name:
        owner = type(owner_name, (), {name: paddleseg_own})
        setattr(namespace, owner_name, owner)
    else:
        owner = namespace
        setattr(namespace, name, paddleseg_own)
    monkeypatch.setattr(compat, "_module", lambda asked: namespace if asked == module else None)
    monkeypatch.setattr(compat, "ORIGINALS", {})
    getattr(compat, fix)()
    assert compat.ORIGINALS == {key: paddleseg_own}
    assert getattr(owner, name) is getattr(compat, replacement)


def test_mutation_kills_areas_have_one_count_per_class_when_the_last_classes_are_absent():
    pred = np.array([[[0, 1], [1, 0]]], "int64")
    label = np.array([[[0, 1], [0, 0]]], "int64")  # only classes 0 and 1 of 4, nothing out of range
    got = compat._calculate_area(paddle.to_tensor(pred), paddle.to_tensor(label), 4)
    assert tuple(g.numpy().tolist() for g in got) == ([2, 1, 0, 0], [2, 2, 0, 0], [3, 1, 0, 0])
