"""PaddleDetection 2.6.0 on Paddle 3.x: the version check and the fixes to ppdet's own functions.

ppdet 2.6.0 was written for Paddle 2.x, where indexing a tensor with an integer gave a 1-element tensor
and ``paddle.shape(x)[0]`` had shape [1]. Paddle 3 returns 0-D tensors there, and ppdet's dygraph code
breaks where it relies on the old shapes (and, on the infer path, on NumPy 1's int() of 1-element arrays
and Pillow 9's ImageDraw.textsize).

Each fix replaces one ppdet function or method on its ppdet module or class, never anything of
``paddle``, NumPy or PIL: either a method rewritten here for 0-D tensors (``rpn_gen_proposal``,
``rcnn_box_call``), or ppdet's own function run with one global name bound to a stand-in that behaves as
the old library did, in a copy of that function's globals (``concat_of_0d``, ``int_of_1_element``,
``textsize_of_pillow9``). ``FIXES`` lists them with the ppdet version they were written against and the
problem each solves; ``apply_fixes`` installs them once, only on that version. Each has a test that runs
ppdet's original on the input that breaks it (tests/test_det.py).
"""
import contextlib
import importlib
import importlib.util
import io
import logging
import sys
import types

from ..utils.errors import ConfigError

REQUIRED_PPDET = "2.6.0"
INSTALL_HINT = "bash tools/install_extras.sh det"


def installed_ppdet_version():
    """The installed ppdet's version without importing it (None when it is missing)."""
    spec = importlib.util.find_spec("ppdet")
    if spec is None:
        return None
    from importlib import metadata
    try:
        return metadata.version("paddledet")
    except metadata.PackageNotFoundError:
        # a source checkout on sys.path: ppdet/version.py holds the version
        version_module = importlib.import_module("ppdet.version")
        return getattr(version_module, "full_version", "unknown")


def require_ppdet():
    """Import ppdet 2.6.0 (quietly: its tracking modules print about optional packages) or raise one line."""
    version = installed_ppdet_version()
    if version is None:
        raise ConfigError(f"detection needs PaddleDetection {REQUIRED_PPDET} (ppdet), which is not installed; "
                          f"install it with: {INSTALL_HINT}")
    if version != REQUIRED_PPDET:
        raise ConfigError(f"detection needs PaddleDetection {REQUIRED_PPDET}, found {version}; "
                          f"install the supported one with: {INSTALL_HINT}")
    hidden = io.StringIO()
    with contextlib.redirect_stdout(hidden):
        import ppdet  # noqa: F401
        import ppdet.engine  # noqa: F401  (imports the tracking modules that print)
    # ppdet's loggers made during that import hold the stream they saw: give them the real stdout
    for logger in logging.Logger.manager.loggerDict.values():
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and handler.stream is hidden:
                handler.setStream(sys.stdout)
    return version


class Fix:
    """One replacement: ``owner.attr`` (a ppdet module or class) becomes ``replacement``, or, with
    ``from_original``, ``replacement(ppdet's function)``. ``also`` names the ppdet modules that imported
    the function by name and are rebound too. ``original`` keeps ppdet's own version, so a test can show
    it failing on the input the fix is for."""

    def __init__(self, owner_path, attr, replacement, ppdet_version, problem, from_original=False, also=()):
        self.owner_path, self.attr, self.replacement = owner_path, attr, replacement
        self.ppdet_version, self.problem = ppdet_version, problem
        self.from_original, self.also = from_original, tuple(also)
        self.original = None
        self.installed = None

    @property
    def name(self):
        module_path, _, cls_name = self.owner_path.partition(":")
        return f"{cls_name or module_path.rpartition('.')[2]}.{self.attr}"

    def owner(self):
        module_path, _, cls_name = self.owner_path.partition(":")
        owner = importlib.import_module(module_path)
        return getattr(owner, cls_name) if cls_name else owner

    def apply(self):
        owner = self.owner()
        current = owner.__dict__[self.attr] if isinstance(owner, type) else getattr(owner, self.attr)
        if self.installed is not None and current is self.installed:
            return
        self.original = current
        self.installed = self.replacement(current) if self.from_original else self.replacement
        setattr(owner, self.attr, self.installed)
        for module_path in self.also:
            module = importlib.import_module(module_path)
            if getattr(module, self.attr, None) is current:
                setattr(module, self.attr, self.installed)


# -- the fixes -------------------------------------------------------------------------------------------
def _rois_count(rois):
    """The number of rows of ``rois`` as a 1-element int32 tensor (Paddle 2's ``paddle.shape(x)[0]``)."""
    import paddle
    return paddle.shape(rois)[0:1].astype("int32")


def rpn_gen_proposal(self, scores, bbox_deltas, anchors, inputs):
    """RPNHead._gen_proposal for Paddle 3: per image, the proposals of every FPN level, kept to the
    ``post_nms_top_n`` best; returns (list of [R_i, 4] rois, [B] int32 counts).

    ppdet loops ``range()`` over a 1-element tensor (Paddle 3 converts only 0-D tensors to an index) and
    concatenates the 0-D ``paddle.shape(x)[0]`` counts (Paddle 3 cannot concatenate 0-D tensors)."""
    import paddle
    if self.export_onnx:
        return FIX_BY_NAME["RPNHead._gen_proposal"].original(self, scores, bbox_deltas, anchors, inputs)
    proposal = self.train_proposal if self.training else self.test_proposal
    im_shape = inputs["im_shape"]
    rois_per_image, counts = [], []
    for i in range(im_shape.shape[0]):
        level_rois, level_probs = [], []
        for score, delta, anchor in zip(scores, bbox_deltas, anchors):
            rois, probs, _, top_n = proposal(scores=score[i:i + 1], bbox_deltas=delta[i:i + 1], anchors=anchor,
                                             im_shape=im_shape[i:i + 1])
            level_rois.append(rois)
            level_probs.append(probs)
        if len(level_rois) == 1:
            rois = level_rois[0]
        else:
            rois = paddle.concat(level_rois)
            probs = paddle.concat(level_probs).flatten()
            if probs.shape[0] > top_n:
                _, keep = paddle.topk(probs, top_n)
                rois = paddle.gather(rois, keep)
        rois_per_image.append(rois)
        counts.append(_rois_count(rois))
    return rois_per_image, paddle.concat(counts)


def rcnn_box_call(self, bbox_head_out, rois, im_shape, scale_factor):
    """RCNNBox.__call__ for Paddle 3: decodes the box deltas of every RoI and clips them to their image.

    When the RoIs come as one tensor (not a per-image list), ppdet loops ``range()`` over a 1-element
    tensor of the batch size, which Paddle 3 refuses; each RoI's image size is here ``repeat_interleave``
    of the image sizes by the RoI counts, for both forms."""
    import paddle
    from ppdet.modeling.bbox_utils import delta2bbox
    if self.export_onnx:
        return FIX_BY_NAME["RCNNBox.__call__"].original(self, bbox_head_out, rois, im_shape, scale_factor)
    bbox_pred, cls_prob = bbox_head_out[0], bbox_head_out[1]
    roi, rois_num = rois[0], rois[1]
    origin_shape = paddle.repeat_interleave(im_shape, rois_num.astype("int64"), axis=0)
    boxes = delta2bbox(bbox_pred, paddle.concat(roi) if isinstance(roi, (list, tuple)) else roi, self.prior_box_var)
    scores = cls_prob[:, :-1]
    boxes = paddle.expand(boxes, [boxes.shape[0], self.num_classes, boxes.shape[-1]])
    height = origin_shape[:, 0:1]
    width = origin_shape[:, 1:2]
    zero = paddle.zeros_like(height)
    x1 = paddle.maximum(paddle.minimum(boxes[:, :, 0], width), zero)
    y1 = paddle.maximum(paddle.minimum(boxes[:, :, 1], height), zero)
    x2 = paddle.maximum(paddle.minimum(boxes[:, :, 2], width), zero)
    y2 = paddle.maximum(paddle.minimum(boxes[:, :, 3], height), zero)
    return (paddle.stack([x1, y1, x2, y2], axis=-1), rois_num), scores


class _PaddleConcatOf0D:
    """``paddle`` as a function of ppdet sees it, except that ``concat`` takes 0-D tensors (``x[i]``,
    ``paddle.shape(x)[0]``) as the 1-element tensors Paddle 2 gave there."""

    def __getattr__(self, name):
        import paddle
        return getattr(paddle, name)

    @staticmethod
    def concat(x, axis=0, name=None):
        import paddle
        if isinstance(x, (list, tuple)):
            x = [_as_1d(t) if isinstance(t, paddle.Tensor) and t.ndim == 0 else t for t in x]
        return paddle.concat(x, axis=axis, name=name)


def _as_1d(t):
    """A 0-D tensor as Paddle 2 had it: shape [1]; int64 (Paddle 3's ``paddle.shape`` dtype) as int32, the
    dtype ppdet's RoI counts have everywhere else (fake counts, NMS outputs)."""
    import paddle
    return t.reshape([1]).astype("int32") if t.dtype == paddle.int64 else t.reshape([1])


def _rebound(fn, note, **names):
    """A copy of ppdet's function ``fn`` whose global ``names`` are replaced: its own copy of the globals,
    so ppdet's module, ``paddle`` and builtins stay as they are."""
    scope = dict(fn.__globals__)
    scope.update(names)
    fixed = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
    fixed.__kwdefaults__ = fn.__kwdefaults__
    fixed.__qualname__ = fn.__qualname__
    fixed.__doc__ = (fn.__doc__ or "") + f"\n(ppcls.det.compat: {note})"
    fixed.__wrapped_ppdet__ = fn
    return fixed


def concat_of_0d(fn):
    """``fn`` with ``_PaddleConcatOf0D`` as its ``paddle``."""
    return _rebound(fn, "paddle.concat of 0-D tensors as on Paddle 2", paddle=_PaddleConcatOf0D())


def _int_of_1_element(x):
    """``int()`` as NumPy 1 had it: a 1-element array converts (NumPy 2 converts only 0-D arrays)."""
    import numpy as np
    if isinstance(x, np.ndarray) and x.size == 1:
        x = x.reshape(())
    return int(x)


def int_of_1_element(fn):
    """``fn`` with ``_int_of_1_element`` as its ``int``."""
    return _rebound(fn, "int() of 1-element arrays as on NumPy 1", int=_int_of_1_element)


class _ImageDrawWithTextsize:
    """PIL's ``ImageDraw`` module as ppdet's drawing code sees it, with the ``textsize`` Pillow 10 removed
    (measured with ``textbbox``, its replacement)."""

    def __getattr__(self, name):
        from PIL import ImageDraw
        return getattr(ImageDraw, name)

    @staticmethod
    def Draw(im, mode=None):  # noqa: N802  (PIL's name)
        from PIL import ImageDraw

        class Draw(ImageDraw.ImageDraw):
            def textsize(self, text, font=None, *args, **kwargs):
                left, top, right, bottom = self.textbbox((0, 0), text, font=font)
                return right - left, bottom - top
        return Draw(im, mode)


def textsize_of_pillow9(fn):
    """``fn`` with ``_ImageDrawWithTextsize`` as its ``ImageDraw``."""
    return _rebound(fn, "ImageDraw.textsize as on Pillow 9", ImageDraw=_ImageDrawWithTextsize())


FIXES = [
    Fix("ppdet.modeling.proposal_generator.rpn_head:RPNHead", "_gen_proposal", rpn_gen_proposal, "2.6.0",
        "range() over a 1-element batch-size tensor; paddle.concat of 0-D paddle.shape(x)[0] counts"),
    Fix("ppdet.modeling.layers:RCNNBox", "__call__", rcnn_box_call, "2.6.0",
        "range() over a 1-element batch-size tensor"),
    Fix("ppdet.modeling.proposal_generator.target", "generate_proposal_target", concat_of_0d, "2.6.0",
        "paddle.concat of 0-D paddle.shape(x)[0] RoI counts", from_original=True,
        also=["ppdet.modeling.proposal_generator.target_layer"]),
    Fix("ppdet.modeling.proposal_generator.target", "generate_mask_target", concat_of_0d, "2.6.0",
        "paddle.concat of 0-D paddle.shape(x)[0] mask RoI counts", from_original=True,
        also=["ppdet.modeling.proposal_generator.target_layer"]),
    Fix("ppdet.modeling.post_process:BBoxPostProcess", "get_pred", concat_of_0d, "2.6.0",
        "paddle.concat of 0-D per-image box counts bbox_num[i] and scales scale_factor[i][0]",
        from_original=True),
    Fix("ppdet.engine.trainer:Trainer", "predict", int_of_1_element, "2.6.0",
        "int() of each 1-element im_id array (NumPy 2 converts only 0-D arrays)", from_original=True),
    Fix("ppdet.utils.visualizer", "draw_bbox", textsize_of_pillow9, "2.6.0",
        "ImageDraw.textsize, removed in Pillow 10", from_original=True),
]
FIX_BY_NAME = {f.name: f for f in FIXES}
_applied = False


def apply_fixes():
    """Install every fix written for the installed ppdet (once; ``require_ppdet`` has checked it)."""
    global _applied
    if _applied:
        return
    version = installed_ppdet_version()
    for fix in FIXES:
        if fix.ppdet_version == version:
            fix.apply()
    _applied = True
