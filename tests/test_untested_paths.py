"""Code paths no other test ran: preprocessing without ToCHWImage, LR schedules stepped per epoch
(``by_epoch``), ``-o`` values containing ``=``."""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hypothesis_home  # noqa: F401  (before any strategy runs)
from engine_utils import tiny_config

NORM = {"NormalizeImage": {"scale": 1 / 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                           "order": "hwc"}}


# -- preprocessing without ToCHWImage -------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(8, 6), (3, 7), (4, 5), (7, 3), (3, 3), (1, 9), (4, 4)])
def test_preprocess_without_tochw_gives_the_same_input(h, w):
    """The predictor lays out HWC as CHW when no op does; an image 1, 3 or 4 pixels high was left HWC."""
    from ppcls.inference.pipeline import Preprocess
    img = np.random.RandomState(h * 10 + w).randint(0, 256, (h, w, 3)).astype(np.uint8)
    ref = Preprocess([NORM, {"ToCHWImage": None}])(img)
    assert ref.shape == (3, h, w)
    for ops in ([NORM], [dict(NORM, NormalizeImage=dict(NORM["NormalizeImage"], order="chw"))],
                [{"NormalizeImage": dict(NORM["NormalizeImage"], order="")}]):
        np.testing.assert_allclose(Preprocess(ops)(img), ref, rtol=1e-6)
    np.testing.assert_array_equal(Preprocess([])(img), img.transpose(2, 0, 1).astype(np.float32))


@pytest.mark.parametrize("h,w", [(8, 6), (3, 7)])
def test_dataset_without_tochw_gives_the_same_sample(tmp_path, h, w):
    """The training datasets fuse the layout into NormalizeImage when there is no ToCHWImage."""
    import cv2
    from ppcls.data.dataset.imagenet import ImageNetDataset
    img = np.random.RandomState(1).randint(0, 256, (h, w, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    (tmp_path / "list.txt").write_text("a.png 0\n")
    decode = {"DecodeImage": {"to_rgb": True}}

    def sample(ops):
        return ImageNetDataset(str(tmp_path), str(tmp_path / "list.txt"), transform_ops=[decode] + ops)[0][0]
    ref = sample([NORM, {"ToCHWImage": None}])
    assert ref.shape == (3, h, w)
    np.testing.assert_allclose(sample([NORM]), ref, rtol=1e-6)
    np.testing.assert_allclose(sample([]), img[:, :, ::-1].transpose(2, 0, 1), rtol=1e-6)


# -- LR schedules per epoch -------------------------------------------------------------------------------------
SCHEDULES = st.one_of(
    st.fixed_dictionaries({"name": st.just("Piecewise"), "decay_epochs": st.lists(st.integers(1, 9), min_size=1,
                                                                                   max_size=3, unique=True).map(sorted)}),
    st.fixed_dictionaries({"name": st.just("MultiStepDecay"),
                           "milestones": st.lists(st.integers(1, 9), min_size=1, max_size=3, unique=True).map(sorted)}),
    st.fixed_dictionaries({"name": st.just("Cosine")}, optional={"eta_min": st.floats(0, 0.01)}),
    st.fixed_dictionaries({"name": st.just("Step"), "step_size": st.integers(1, 5)}),
    st.fixed_dictionaries({"name": st.just("Linear")}, optional={"end_lr": st.floats(0, 0.01)}),
    st.just({"name": "ConstLR"}))


@settings(max_examples=60, deadline=None, database=None, derandomize=not os.environ.get("HYPOTHESIS_EXPLORE"))
@given(sched=SCHEDULES, warmup=st.integers(0, 3), epochs=st.integers(4, 10), iters=st.integers(1, 7),
       start=st.floats(0, 0.05))
def test_by_epoch_schedule_is_the_per_iteration_one_at_epoch_starts(sched, warmup, epochs, iters, start):
    """Guards ``by_epoch``: stepped once an epoch it gives, at every epoch, the rate the per-iteration schedule
    has at that epoch's first iteration (the warm-up, the decay epochs and the cosine span in epochs)."""
    from ppcls.optimizer import build_lr
    cfg = dict(sched, learning_rate=0.1, warmup_epoch=warmup, warmup_start_lr=start)
    per_epoch = build_lr(dict(cfg, by_epoch=True), epochs, iters)
    per_iter = build_lr(cfg, epochs, iters)
    assert per_epoch.by_epoch is True and per_iter.by_epoch is False
    at_iters = []
    for step in range(epochs * iters):
        at_iters.append(per_iter.last_lr)  # get_lr() would apply Cosine's recursive update once more
        per_iter.step()
    for epoch in range(epochs):
        assert per_epoch.last_lr == pytest.approx(at_iters[epoch * iters], rel=1e-6, abs=1e-12), epoch
        per_epoch.step()


def test_engine_steps_a_by_epoch_schedule_once_an_epoch(tmp_path):
    """The training loop steps a ``by_epoch`` schedule at the end of each epoch, not after each iteration."""
    from ppcls.engine import Engine
    from ppcls.schema import get_config
    path, _ = tiny_config(tmp_path, epochs=3, per_class=4, batch_size=4, extra={
        "Global": {"eval_during_train": False},
        "Optimizer": {"lr": {"name": "Piecewise", "values": [0.02, 0.002, 0.0002], "decay_epochs": [1, 2],
                             "by_epoch": True, "warmup_epoch": 0}}})
    eng = Engine(get_config(path), "train")
    rates, loss = [], eng.train_loss

    def recording(out, targets):
        rates.append(eng.optimizer.get_lr())
        return loss(out, targets)
    eng.train_loss = recording
    eng.train()
    n = len(eng.train_loader)
    assert n == 3 and len(rates) == 3 * n
    np.testing.assert_allclose(rates, [0.02] * n + [0.002] * n + [0.0002] * n, rtol=1e-6)


# -- -o values containing '=' ---------------------------------------------------------------------------------
def test_override_values_with_equals_reach_the_config(tmp_path):
    """Only the first ``=`` of ``-o`` separates the key: URLs with queries and ``a=b`` strings arrive whole,
    in the modern schema and in a release/2.0 file alike."""
    from ppcls.schema import get_config
    from ppcls.utils.config import load_config
    path, _ = tiny_config(tmp_path)
    url = "https://host:8080/weights.pdparams?sig=a=b&x=1"
    cfg = get_config(path, [f"Global.pretrained_model={url}", "Global.output_dir=out=1/x:y"])
    assert cfg["Global"]["pretrained_model"] == url and cfg["Global"]["output_dir"] == "out=1/x:y"
    legacy = tmp_path / "legacy.yaml"
    legacy.write_text("mode: train\nARCHITECTURE:\n  name: ResNet18\nepochs: 1\ntopk: 5\nclasses_num: 3\n"
                      "TRAIN:\n  batch_size: 2\n  num_workers: 0\n  file_list: a.txt\n  data_dir: d\n")
    cfg = load_config(str(legacy), [f"pretrained_model={url}", "TRAIN.file_list=list=1.txt"])
    assert cfg["Global"]["pretrained_model"] == url
    assert cfg["DataLoader"]["Train"]["dataset"]["cls_label_path"] == "list=1.txt"
