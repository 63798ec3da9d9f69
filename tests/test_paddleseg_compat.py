"""ppcls.seg.compat: each fix to PaddleSeg 2.8.0 on Paddle 3, shown breaking with PaddleSeg's own code and
working (with the right numbers) with the fix; the version check; `import ppcls` never imports PaddleSeg."""
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("paddleseg")

import paddle  # noqa: E402

import ppcls.seg  # noqa: E402,F401  (applies the fixes)
from ppcls.seg import compat  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _logits_labels(seed=0, classes=3):
    rs = np.random.RandomState(seed)
    logit = rs.randn(2, classes, 5, 6).astype("float32")
    label = rs.randint(0, classes, (2, 5, 6)).astype("int64")
    label[0, 0, :3] = 255
    return logit, label


def _numpy_ce(logit, label, weight=None, ignore=255):
    z = logit - logit.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    keep = label != ignore
    safe = np.where(keep, label, 0)
    nll = -np.take_along_axis(logp, safe[:, None], 1)[:, 0]
    w = np.ones_like(nll) if weight is None else np.asarray(weight, "float32")[safe]
    # PaddleSeg: mean of weighted per-pixel losses over all pixels / mean of the kept pixels' weights
    return (nll * w * keep).mean() / (w * keep).mean()


@pytest.mark.parametrize("weight", [None, [1.0, 2.0, 0.5]])
def test_cross_entropy_fix(weight):
    from paddleseg.models.losses import CrossEntropyLoss
    logit, label = _logits_labels()
    loss_fn = CrossEntropyLoss(weight=weight)
    got = float(loss_fn(paddle.to_tensor(logit), paddle.to_tensor(label)))
    np.testing.assert_allclose(got, _numpy_ce(logit, label, weight), rtol=1e-5)
    broken = compat.ORIGINALS["CrossEntropyLoss._post_process_loss"]
    with pytest.raises(TypeError, match="promotion"):
        broken(loss_fn, paddle.to_tensor(logit).transpose([0, 2, 3, 1]), paddle.to_tensor(label), None,
               paddle.ones([2, 5, 6]))


def test_mixed_loss_with_cross_entropy_trains():
    from paddleseg.models.losses import CrossEntropyLoss, DiceLoss, MixedLoss
    logit, label = _logits_labels(1)
    x = paddle.to_tensor(logit, stop_gradient=False)
    total = sum(MixedLoss([CrossEntropyLoss(), DiceLoss()], [1.0, 1.0])(x, paddle.to_tensor(label)))
    total.backward()
    assert np.isfinite(float(total)) and float(paddle.abs(x.grad).sum()) > 0


def test_calculate_area_fix():
    from paddleseg.utils import metrics
    rs = np.random.RandomState(2)
    pred = rs.randint(0, 4, (2, 1, 7, 9)).astype("int64")
    label = rs.randint(0, 4, (2, 1, 7, 9)).astype("int64")
    label[0, 0, 0] = 255
    inter, p_area, l_area = metrics.calculate_area(paddle.to_tensor(pred), paddle.to_tensor(label), 4, 255)
    keep = label != 255
    want_p = [int(((pred == c) & keep).sum()) for c in range(4)]
    want_l = [int((label == c).sum()) for c in range(4)]
    want_i = [int(((pred == c) & (label == c)).sum()) for c in range(4)]
    assert inter.numpy().tolist() == want_i and p_area.numpy().tolist() == want_p and l_area.numpy().tolist() == want_l
    with pytest.raises(ValueError, match="axis"):
        compat.ORIGINALS["metrics.calculate_area"](paddle.to_tensor(pred), paddle.to_tensor(label), 4, 255)


class _OneConv(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 2, 1)

    def forward(self, x):
        return [self.conv(x)]


class _TinySet(paddle.io.Dataset):
    num_classes, ignore_index = 2, 255

    def __getitem__(self, i):
        rs = np.random.RandomState(i)
        return {"img": rs.rand(3, 8, 8).astype("float32"), "label": (rs.rand(8, 8) > 0.5).astype("int64"),
                "trans_info": []}

    def __len__(self):
        return 4


def _run_train(train_fn, save_dir):
    from paddleseg.models.losses import CrossEntropyLoss
    model = _OneConv()
    opt = paddle.optimizer.SGD(0.1, parameters=model.parameters())
    train_fn(model, _TinySet(), optimizer=opt, save_dir=str(save_dir), iters=2, batch_size=2, save_interval=2,
             log_iters=1, losses={"types": [CrossEntropyLoss()], "coef": [1]})


def test_train_fix(tmp_path, capsys):
    from paddleseg.core import train
    _run_train(train, tmp_path / "fixed")
    assert os.path.isfile(tmp_path / "fixed" / "iter_2" / "model.pdparams")
    losses = [float(v) for v in re.findall(r"\[TRAIN\].*? loss: ([\d.]+)", capsys.readouterr().out)]
    assert len(losses) == 2 and all(0 < v < 5 for v in losses)  # one log line per step, a CE of 2 classes
    with pytest.raises(IndexError, match="0-dimensional"):
        _run_train(compat.original(train), tmp_path / "broken")


def test_train_fix_refuses_other_source():
    def not_paddleseg():
        return 1
    with pytest.raises(ConfigError, match="not the 2.8.0 source"):
        compat._edit_source(not_paddleseg, [("return 2", "return 3")])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoints_are_read_without_unpickling_code(tmp_path):
    from paddleseg.utils import load_pretrained_model, resume
    model = _OneConv()
    good = tmp_path / "good.pdparams"
    paddle.save({k: v * 0 + 3 for k, v in model.state_dict().items()}, str(good))
    load_pretrained_model(model, str(good))
    assert float(model.conv.weight.mean()) == 3.0
    ckpt = tmp_path / "iter_5"
    ckpt.mkdir()
    with open(ckpt / "model.pdparams", "wb") as f:
        pickle.dump({"conv.weight": _Evil()}, f)
    paddle.save({"lr": paddle.zeros([1])}, str(ckpt / "model.pdopt"))
    with pytest.raises(ConfigError, match="refusing"):
        resume(model, paddle.optimizer.SGD(0.1, parameters=model.parameters()), str(ckpt))


def test_version_check(monkeypatch):
    import ppcls.seg as seg
    monkeypatch.setattr(seg, "paddleseg_version", lambda: "2.9.0")
    with pytest.raises(ConfigError, match=r"2\.9\.0 is installed.*tools/install_extras\.sh seg"):
        seg.require_paddleseg()
    monkeypatch.setattr(seg, "paddleseg_version", lambda: None)
    with pytest.raises(ConfigError, match=r"not installed.*bash tools/install_extras\.sh seg"):
        seg.require_paddleseg()
    with pytest.raises(ConfigError, match="no compatibility fixes"):
        compat.apply_fixes("2.7.0")


def test_import_ppcls_never_imports_paddleseg():
    probe = ("import sys, ppcls; ppcls.list_models(); from ppcls.arch import build_model; "
             "print(sorted(m for m in sys.modules if m.startswith('paddleseg')))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def _numpy_dice(logit, label, ignore=255, smooth=1.0):
    z = np.exp(logit - logit.max(1, keepdims=True))
    prob = z / z.sum(1, keepdims=True)
    keep = (label != ignore).astype("float32")
    safe = np.where(label != ignore, label, 0)
    total = 0.0
    for c in range(logit.shape[1]):
        p = (prob[:, c] * keep).reshape(len(label), -1)
        t = ((safe == c) * keep).reshape(len(label), -1)
        total += (1 - (2 * (p * t).sum(1) + smooth) / ((p + t).sum(1) + smooth + 1e-8)).mean()
    return total / logit.shape[1]


def test_dice_loss_fix():
    from paddleseg.models.losses import CrossEntropyLoss, DiceLoss
    logit, label = _logits_labels(3)
    np.testing.assert_allclose(float(DiceLoss()(paddle.to_tensor(logit), paddle.to_tensor(label))),
                               _numpy_dice(logit, label), rtol=1e-5)

    def both(dice_forward):
        x = paddle.to_tensor(logit, stop_gradient=False)
        lab = paddle.to_tensor(label)
        dice = DiceLoss()
        total = CrossEntropyLoss()(x, lab) + dice_forward(dice, x, lab)
        total.backward()
        return lab
    assert (both(DiceLoss.forward).numpy() == label).all()  # the labels are left as they were
    with pytest.raises(RuntimeError, match="inplace"):
        both(compat.ORIGINALS["DiceLoss.forward"])
