"""The PaddleDetection version check and fix machinery (ppcls/det/compat.py): how the version is found, what
require_ppdet does with ppdet's import-time prints, how a Fix installs (once, on its owner and on the modules
that imported the function by name), the rebound copies of ppdet's functions, and the ONNX-export paths that
keep ppdet's originals. Written against the survivors of `bash tests/mutation.sh det/compat.py`."""
import contextlib
import io
import logging
import sys
import types

import numpy as np
import pytest

pytest.importorskip("ppdet")

import paddle  # noqa: E402

import ppcls.det  # noqa: E402,F401
from ppcls.det import compat  # noqa: E402


# -- the version -----------------------------------------------------------------------------------------------
def test_mutation_kills_the_installed_distribution_s_version_comes_first(monkeypatch):
    monkeypatch.setitem(sys.modules, "ppdet.version", types.SimpleNamespace(full_version="0.0-checkout"))
    assert compat.installed_ppdet_version() == "2.6.0"


@pytest.mark.parametrize("module, found", [(types.SimpleNamespace(full_version="2.6.1.dev"), "2.6.1.dev"),
                                           (types.SimpleNamespace(), "unknown")])
def test_mutation_kills_a_source_checkout_s_version_file(monkeypatch, module, found):
    from importlib import metadata

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(metadata, "version", not_installed)
    monkeypatch.setitem(sys.modules, "ppdet.version", module)
    assert compat.installed_ppdet_version() == found


def test_mutation_kills_ppdet_s_import_prints_are_hidden_and_its_loggers_keep_stdout(monkeypatch):
    """ppdet prints about optional packages while importing, and makes loggers then: the prints go, the loggers
    made during the import write to the real stdout afterwards."""
    seen = {}
    made = logging.getLogger("ppcls.test.ppdet_like")

    @contextlib.contextmanager
    def redirect_stdout(stream):
        seen["stream"] = stream
        with contextlib.redirect_stdout(stream):
            print("Warning: Unable to use a tracker")  # what ppdet's import prints
            seen["handler"] = logging.StreamHandler(sys.stdout)  # a logger ppdet makes while importing
            made.addHandler(seen["handler"])
            yield
    other = logging.StreamHandler(io.StringIO())
    made.addHandler(other)
    monkeypatch.setattr(compat, "contextlib", types.SimpleNamespace(redirect_stdout=redirect_stdout))
    try:
        assert compat.require_ppdet() == "2.6.0"
        assert isinstance(seen["stream"], io.StringIO) and "tracker" in seen["stream"].getvalue()
        assert seen["handler"].stream is sys.stdout
        assert other.stream is not sys.stdout  # handlers of other streams are left alone
    finally:
        made.removeHandler(seen.get("handler"))
        made.removeHandler(other)


# -- Fix ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def fake_ppdet(monkeypatch):
    """A module with a function and a class, and a second module that imported the function by name."""
    owner = types.ModuleType("fake_ppdet_owner")

    def helper(x):
        return x + 1
    owner.helper = helper

    class Head:
        def call(self):
            return "original"
    owner.Head = Head

    class SubHead(Head):
        pass
    owner.SubHead = SubHead
    user = types.ModuleType("fake_ppdet_user")
    user.helper = helper
    unrelated = types.ModuleType("fake_ppdet_unrelated")
    unrelated.helper = lambda x: x
    for module in (owner, user, unrelated):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return owner, user, unrelated


def test_mutation_kills_a_fix_of_a_function_from_the_original(fake_ppdet):
    owner, user, unrelated = fake_ppdet
    original, kept = owner.helper, unrelated.helper
    fix = compat.Fix("fake_ppdet_owner", "helper", lambda fn: (lambda x: fn(x) * 10), "2.6.0", "a problem",
                     from_original=True, also=["fake_ppdet_user", "fake_ppdet_unrelated"])
    assert fix.name == "fake_ppdet_owner.helper" and fix.problem == "a problem" and fix.ppdet_version == "2.6.0"
    assert fix.original is None and fix.installed is None and fix.also == ("fake_ppdet_user", "fake_ppdet_unrelated")
    assert fix.owner() is owner
    fix.apply()
    assert fix.original is original and owner.helper is fix.installed and owner.helper(1) == 20
    assert user.helper is fix.installed  # imported by name: rebound
    assert unrelated.helper is kept  # another function of that name: left alone
    installed = fix.installed
    fix.apply()  # again: nothing changes, the original is still ppdet's
    assert fix.installed is installed and fix.original is original and owner.helper(1) == 20


def test_mutation_kills_a_fix_of_a_method(fake_ppdet):
    owner, _, _ = fake_ppdet

    def call(self):
        return "fixed"
    fix = compat.Fix("fake_ppdet_owner:Head", "call", call, "2.6.0", "p")
    assert fix.name == "Head.call" and fix.owner() is owner.Head
    fix.apply()
    assert owner.Head().call() == "fixed" and fix.original(owner.Head()) == "original" and fix.installed is call
    # a subclass inherits the fix; its own entry (none) is not what is replaced
    sub = compat.Fix("fake_ppdet_owner:SubHead", "call", call, "2.6.0", "p")
    with pytest.raises(KeyError):
        sub.apply()


def test_mutation_kills_every_fix_is_named_after_what_it_replaces():
    assert sorted(compat.FIX_BY_NAME) == sorted([
        "RPNHead._gen_proposal", "RCNNBox.__call__", "target.generate_proposal_target",
        "target.generate_mask_target", "BBoxPostProcess.get_pred", "Trainer.predict", "visualizer.draw_bbox"])


# -- the rebound copies --------------------------------------------------------------------------------------------
def _uses_globals(x, scale=2, *, shift=1):
    """A function of 'ppdet'."""
    return int(np.asarray(x).sum()) * scale + shift + len(paddle.__name__)


def test_mutation_kills_rebound_copies_change_only_the_named_globals():
    fixed = compat._rebound(_uses_globals, "a note", int=lambda v: 100)
    assert fixed([1, 2]) == 100 * 2 + 1 + 6 and _uses_globals([1, 2]) == 3 * 2 + 1 + 6
    assert fixed([1], 3, shift=0) == 306  # defaults, keyword defaults and arguments as the original's
    assert fixed.__name__ == "_uses_globals" and fixed.__qualname__ == _uses_globals.__qualname__
    assert fixed.__doc__ == "A function of 'ppdet'.\n(ppcls.det.compat: a note)"
    assert fixed.__wrapped_ppdet__ is _uses_globals and fixed.__globals__ is not _uses_globals.__globals__
    assert "int" not in _uses_globals.__globals__  # the module's own globals are untouched


def test_mutation_kills_each_kind_of_rebinding():
    concat = compat.concat_of_0d(_uses_globals)
    assert isinstance(concat.__globals__["paddle"], compat._PaddleConcatOf0D)
    assert concat.__doc__.endswith("(ppcls.det.compat: paddle.concat of 0-D tensors as on Paddle 2)")
    assert concat([1]) == _uses_globals([1])
    ints = compat.int_of_1_element(_uses_globals)
    assert ints.__globals__["int"] is compat._int_of_1_element
    assert ints.__doc__.endswith("(ppcls.det.compat: int() of 1-element arrays as on NumPy 1)")
    draw = compat.textsize_of_pillow9(_uses_globals)
    assert isinstance(draw.__globals__["ImageDraw"], compat._ImageDrawWithTextsize)
    assert draw.__doc__.endswith("(ppcls.det.compat: ImageDraw.textsize as on Pillow 9)")
    assert draw.__wrapped_ppdet__ is _uses_globals


def test_mutation_kills_int_of_one_element_arrays():
    f = compat._int_of_1_element
    assert f(np.array([[7]])) == 7 and f(np.array(5)) == 5 and f("12") == 12 and f(3.9) == 3
    with pytest.raises(TypeError):
        f(np.array([1, 2]))


def test_mutation_kills_concat_of_0d_tensors():
    p = compat._PaddleConcatOf0D()
    assert p.to_tensor is paddle.to_tensor  # everything else is paddle's
    counts = p.concat([paddle.shape(paddle.zeros([3, 2]))[0], paddle.to_tensor([4], dtype="int32")])
    assert counts.dtype == paddle.int32 and counts.numpy().tolist() == [3, 4]
    floats = p.concat((paddle.to_tensor(1.5), paddle.to_tensor([2.5, 3.5])))
    assert floats.dtype == paddle.float32 and floats.numpy().tolist() == [1.5, 2.5, 3.5]
    rows = p.concat([paddle.ones([1, 2]), paddle.zeros([1, 2])], axis=1)
    assert rows.shape == [1, 4]


def test_mutation_kills_textsize_is_the_text_s_box():
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (80, 40))
    draw = compat._ImageDrawWithTextsize().Draw(im)
    left, top, right, bottom = ImageDraw.Draw(im).textbbox((0, 0), "ppcls 42")
    assert draw.textsize("ppcls 42") == (right - left, bottom - top)
    assert left > 0 or draw.textsize("ppcls 42")[0] == right  # measured from the box, whatever its origin
    assert draw.mode == "RGB" and compat._ImageDrawWithTextsize().Draw(im, "RGBA").mode == "RGBA"
    assert compat._ImageDrawWithTextsize().Image is ImageDraw.Image


# -- ONNX export keeps ppdet's originals ---------------------------------------------------------------------------
def test_mutation_kills_export_paths_call_ppdet_s_originals(monkeypatch):
    calls = []
    for name in ("RPNHead._gen_proposal", "RCNNBox.__call__"):
        monkeypatch.setattr(compat.FIX_BY_NAME[name], "original", lambda *args, n=name: calls.append((n, args)) or n)
    head = types.SimpleNamespace(export_onnx=True)
    assert compat.rpn_gen_proposal(head, "scores", "deltas", "anchors", "inputs") == "RPNHead._gen_proposal"
    assert compat.rcnn_box_call(head, "out", "rois", "im_shape", "scale") == "RCNNBox.__call__"
    assert calls == [("RPNHead._gen_proposal", (head, "scores", "deltas", "anchors", "inputs")),
                     ("RCNNBox.__call__", (head, "out", "rois", "im_shape", "scale"))]


# -- RPN proposals per image -------------------------------------------------------------------------------------
def _rpn(batch_shapes, post_nms_top_n=6):
    from ppdet.modeling.proposal_generator.rpn_head import RPNHead
    paddle.seed(0)
    head = RPNHead(anchor_generator={"aspect_ratios": [1.0], "anchor_sizes": [[16], [32]], "strides": [8, 16]},
                   test_proposal={"min_size": 0.0, "nms_thresh": 0.7, "pre_nms_top_n": 40,
                                  "post_nms_top_n": post_nms_top_n}, in_channel=4)
    head.eval()
    feats = [paddle.rand([len(batch_shapes), 4, 8, 8]), paddle.rand([len(batch_shapes), 4, 4, 4])]
    scores = [head.rpn_rois_score(f) for f in head.rpn_feat(feats)]
    deltas = [head.rpn_rois_delta(f) for f in head.rpn_feat(feats)]
    anchors = head.anchor_generator(feats)
    return head, scores, deltas, anchors, {"im_shape": paddle.to_tensor(batch_shapes, dtype="float32")}


def test_mutation_kills_each_image_s_proposals_are_its_own_and_the_best_of_every_level():
    head, scores, deltas, anchors, inputs = _rpn([[64.0, 64.0], [20.0, 28.0]])
    rois, counts = head._gen_proposal(scores, deltas, anchors, inputs)
    for i, size in enumerate(([64.0, 64.0], [20.0, 28.0])):
        # the image alone gives the same proposals, clipped to its own size
        alone, n = head._gen_proposal([s[i:i + 1] for s in scores], [d[i:i + 1] for d in deltas], anchors,
                                      {"im_shape": paddle.to_tensor([size])})
        np.testing.assert_allclose(rois[i].numpy(), alone[0].numpy(), rtol=1e-6)
        assert int(counts[i]) == int(n[0]) == rois[i].shape[0]
        assert rois[i].numpy()[:, 2].max() <= size[1] and rois[i].numpy()[:, 3].max() <= size[0]
        # the post_nms_top_n best by score over both levels
        level = [head.test_proposal(scores=s[i:i + 1], bbox_deltas=d[i:i + 1], anchors=a,
                                    im_shape=inputs["im_shape"][i:i + 1]) for s, d, a in zip(scores, deltas, anchors)]
        all_rois = np.concatenate([lv[0].numpy() for lv in level])
        all_probs = np.concatenate([lv[1].numpy().reshape(-1) for lv in level])
        best = all_rois[np.argsort(-all_probs, kind="stable")[:6]]
        assert len(all_rois) > 6 and rois[i].shape[0] == 6
        np.testing.assert_allclose(np.sort(rois[i].numpy(), axis=0), np.sort(best, axis=0), rtol=1e-6)


def test_mutation_kills_rcnn_boxes_decode_real_deltas_in_both_forms():
    from ppdet.modeling.layers import RCNNBox
    box = RCNNBox(num_classes=3)
    rs = np.random.RandomState(0)
    rois = paddle.to_tensor(np.array([[0, 0, 10, 10], [5, 5, 40, 30], [1, 2, 13, 14]], "float32"))
    rois_num = paddle.to_tensor([2, 1], dtype="int32")
    pred = (paddle.to_tensor(rs.randn(3, 12).astype("float32")), paddle.full([3, 4], 0.25))
    im_shape = paddle.to_tensor([[64.0, 64.0], [32.0, 48.0]])
    scale = paddle.to_tensor([[1.0, 1.0], [1.0, 1.0]])
    original = compat.FIX_BY_NAME["RCNNBox.__call__"].original
    (want, _), want_scores = original(box, pred, ([rois[:2], rois[2:]], rois_num), im_shape, scale)
    for form in (rois, [rois[:2], rois[2:]]):
        (boxes, num), scores = box(pred, (form, rois_num), im_shape, scale)
        np.testing.assert_allclose(boxes.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(scores.numpy(), want_scores.numpy())
        assert num.numpy().tolist() == [2, 1]
