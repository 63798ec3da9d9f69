"""Fixes to PaddleSeg's own functions for Paddle 3.x and numpy 2, keyed by PaddleSeg version.

PaddleSeg 2.8.0 was written for Paddle 2.4, where reductions returned shape-[1] tensors and mixed
int/float arithmetic was promoted silently. On Paddle 3.3 with numpy 2 several of its functions raise on
the paths ``ppcls seg`` runs (train, evaluate, predict, export, the losses of the shipped configs).
Each fix below replaces one PaddleSeg function or method (never anything of ``paddle``) and names the
break it repairs; ``tests/test_paddleseg_compat.py`` shows each break with the original function.

Two kinds of fix:
- a replacement method / module function, written here (the loss and the metric);
- an edit of a long function's own source (``_edit_source``): the exact original lines are asserted
  and replaced, and the function object keeps its identity (its ``__code__`` is swapped), so every
  name PaddleSeg bound to it (``paddleseg.core.train``, ``from paddleseg.utils import resume``) runs
  the fixed code. A PaddleSeg whose source differs fails loudly instead of being half-patched.

The same mechanism routes PaddleSeg's ``paddle.load`` of checkpoints and weights through the project's
safe loader (``ppcls.utils.save_load.load_state_file``): a weights file never runs code.
"""
import importlib
import inspect
import textwrap
from dataclasses import dataclass

import paddle
import paddle.nn.functional as F

from ..utils.errors import ConfigError
from ..utils.save_load import load_state_file


@dataclass(frozen=True)
class Fix:
    name: str        # what is replaced, as PaddleSeg spells it
    breaks: str      # what goes wrong without the fix
    apply: object    # () -> None


def _module(name):
    # importlib, not attribute access: ``paddleseg.core.train`` is shadowed by the function of that name
    return importlib.import_module(name)


def _edit_source(func, replacements, helpers=None):
    """Recompile ``func`` from its own source with each (old, new) replaced (``old`` must occur exactly
    once) and put the new code into the same function object. ``helpers`` are added to the function's
    module globals, where the new code looks them up."""
    if getattr(func, "__ppcls_fixed__", False):
        return
    lines, first = inspect.getsourcelines(func)
    src = textwrap.dedent("".join(lines))
    for old, new in replacements:
        if src.count(old) != 1:
            raise ConfigError(f"PaddleSeg's {func.__module__}.{func.__qualname__} is not the 2.8.0 source this fix "
                              f"was written for ({old!r} found {src.count(old)} times); reinstall with "
                              f"`bash tools/install_extras.sh seg`")
        src = src.replace(old, new)
    module = inspect.getmodule(func)
    module.__dict__.update(helpers or {})
    namespace = dict(module.__dict__)
    # blank lines in front keep tracebacks pointing at the installed file's line numbers
    exec(compile("\n" * (first - 1) + src, inspect.getsourcefile(func), "exec"), namespace)
    func.__ppcls_original_code__ = func.__code__
    func.__code__ = namespace[func.__name__].__code__
    func.__ppcls_fixed__ = True


def original(func):
    """A function object running PaddleSeg's unfixed code of ``func`` (for tests that show the break)."""
    import types
    code = getattr(func, "__ppcls_original_code__", func.__code__)
    return types.FunctionType(code, func.__globals__, func.__name__, func.__defaults__, func.__closure__)


ORIGINALS = {}  # replaced attributes: "module.Class.attr" -> PaddleSeg's own object


# -- 1. CrossEntropyLoss: float mask times an int64 coefficient ---------------------------------------
def _ce_post_process_loss(self, logit, label, semantic_weights, loss):
    """PaddleSeg's averaging of the per-pixel loss over the non-ignored pixels (each weighted by its
    class weight when ``weight`` is set), with the mask, the label and the coefficient in one dtype:
    Paddle 3 refuses float32 * int64 (``paddle.ones_like(label)`` and ``label * mask`` in 2.8.0)."""
    if self.avg_non_ignore:
        mask = paddle.cast(label != self.ignore_index, dtype="float32")
    else:
        mask = paddle.ones(label.shape, dtype="float32")
    mask.stop_gradient = True
    label.stop_gradient = True
    if loss.ndim > mask.ndim:
        loss = paddle.squeeze(loss, axis=-1)
    loss = loss * mask
    if semantic_weights is not None:
        loss = loss * semantic_weights
    if self.weight is not None:
        # ignored pixels become class 0 for the lookup; the mask zeroes them afterwards
        kept_label = label * mask.astype(label.dtype)
        coef = paddle.sum(F.one_hot(kept_label, logit.shape[-1]) * self.weight, axis=-1)
    else:
        coef = paddle.ones(label.shape, dtype="float32")
    if self.top_k_percent_pixels == 1.0:
        return paddle.mean(loss) / (paddle.mean(mask * coef) + self.EPS)
    loss = loss.reshape((-1,))
    top_k_pixels = int(self.top_k_percent_pixels * loss.numel())
    loss, indices = paddle.topk(loss, top_k_pixels)
    coef = paddle.gather(coef.reshape((-1,)), indices).astype("float32")
    coef.stop_gradient = True
    return loss.mean() / (paddle.mean(coef) + self.EPS)


def _fix_cross_entropy():
    cls = _module("paddleseg.models.losses.cross_entropy_loss").CrossEntropyLoss
    ORIGINALS.setdefault("CrossEntropyLoss._post_process_loss", cls.__dict__["_post_process_loss"])
    cls._post_process_loss = _ce_post_process_loss


# -- 2. calculate_area: concat of 0-d sums -----------------------------------------------------------
def _calculate_area(pred, label, num_classes, ignore_index=255):
    """Per-class intersection, prediction and label pixel counts (int64 [num_classes] each), pixels
    labelled ``ignore_index`` left out of the prediction area. 2.8.0 concatenates ``paddle.sum``
    results, which are 0-d on Paddle 3 and cannot be concatenated; one bincount does it all."""
    if len(pred.shape) == 4:
        pred = paddle.squeeze(pred, axis=1)
    if len(label.shape) == 4:
        label = paddle.squeeze(label, axis=1)
    if pred.shape != label.shape:
        raise ValueError(f"Shape of `pred` and `label should be equal, but there are {pred.shape} and {label.shape}.")
    pred = pred.astype("int64").flatten()
    label = label.astype("int64").flatten()
    kept = label != ignore_index
    pred_kept = paddle.where(kept, pred, paddle.full_like(pred, num_classes))  # an out-of-range bin
    pred_area = paddle.bincount(pred_kept, minlength=num_classes + 1)[:num_classes]
    label_in = paddle.where((label >= 0) & (label < num_classes), label, paddle.full_like(label, num_classes))
    label_area = paddle.bincount(label_in, minlength=num_classes + 1)[:num_classes]
    hit = paddle.where(pred_kept == label_in, label_in, paddle.full_like(label, num_classes))
    intersect_area = paddle.bincount(hit, minlength=num_classes + 1)[:num_classes]
    return intersect_area, pred_area, label_area


def _fix_calculate_area():
    metrics = _module("paddleseg.utils.metrics")
    ORIGINALS.setdefault("metrics.calculate_area", metrics.calculate_area)
    metrics.calculate_area = _calculate_area


# -- 2b. DiceLoss: in-place edits of tensors that the backward pass still needs -----------------------
def _dice_forward(self, logits, labels):
    """PaddleSeg's soft Dice over classes (softmax scores vs one-hot labels, ignored pixels masked out,
    optional class weights, averaged over classes) without 2.8.0's in-place writes: it zeroes the ignored
    labels in place (``labels[labels == ignore_index] = 0``) and multiplies the softmax in place by the
    mask, and Paddle 3's version check then stops the backward pass of any other loss (a MixedLoss's
    CrossEntropyLoss) that holds the same label tensor."""
    num_class = logits.shape[1]
    if self.weight is not None and num_class != len(self.weight):
        raise ValueError(f"DiceLoss.weight: {len(self.weight)} weights for {num_class} classes")
    kept = labels != self.ignore_index
    mask = paddle.cast(kept, "float32").reshape([labels.shape[0], -1])
    labels = paddle.where(kept, labels, paddle.zeros_like(labels))
    one_hot = F.one_hot(labels, num_class).reshape([labels.shape[0], -1, num_class])
    probs = F.softmax(logits, axis=1).transpose([0, 2, 3, 1]).reshape([labels.shape[0], -1, num_class])
    total = 0.0
    for i in range(num_class):
        p = probs[:, :, i] * mask
        t = one_hot[:, :, i] * mask
        inter = paddle.sum(p * t, axis=1)
        card = paddle.sum(p + t, axis=1)
        loss_i = (1 - (2 * inter + self.smooth) / (card + self.smooth + self.eps)).mean()
        if self.weight is not None:
            loss_i = loss_i * self.weight[i]
        total = total + loss_i
    return total / num_class


def _fix_dice():
    cls = _module("paddleseg.models.losses.dice_loss").DiceLoss
    ORIGINALS.setdefault("DiceLoss.forward", cls.__dict__["forward"])
    cls.forward = _dice_forward


# -- 3. train: 0-d losses at the log step, paddle.flops at the end --------------------------------------
def _skip_flops(*args, **kwargs):
    """paddle.flops ends in int() of a shape-[1] tensor, which numpy 2 refuses; the count was only logged."""
    return None


def _fix_train():
    train = _module("paddleseg.core.train").train
    _edit_source(train, [
        # the summed losses are 0-d on Paddle 3: l[0] raises IndexError
        ("avg_loss_list = [l[0] / log_iters for l in avg_loss_list]",
         "avg_loss_list = [float(l.reshape([-1])[0]) / log_iters for l in avg_loss_list]"),
        ("_ = paddle.flops(", "_ = _ppcls_skip_flops("),
        # the project's rule, not a break: the losses stay on the device between log steps (2.8.0 copies
        # them to the host after every step, which waits for the step to finish on a GPU)
        ("avg_loss += float(loss)", "avg_loss = avg_loss + loss.detach()"),
        ("avg_loss_list = [l.numpy() for l in loss_list]", "avg_loss_list = [l.detach() for l in loss_list]"),
        ("avg_loss_list[i] += loss_list[i].numpy()", "avg_loss_list[i] = avg_loss_list[i] + loss_list[i].detach()"),
        ("avg_loss /= log_iters", "avg_loss = float(avg_loss) / log_iters"),
    ], helpers={"_ppcls_skip_flops": _skip_flops})


# -- 4. checkpoints and weights read without unpickling code --------------------------------------------
def _safe_load(path):
    return load_state_file(path, "PaddleSeg checkpoint")


def _fix_loading():
    utils = _module("paddleseg.utils.utils")
    helpers = {"_ppcls_safe_load": _safe_load}
    _edit_source(utils.load_pretrained_model, [("paddle.load(pretrained_model)", "_ppcls_safe_load(pretrained_model)")],
                 helpers)
    _edit_source(utils.resume, [("para_state_dict = paddle.load(ckpt_path)", "para_state_dict = _ppcls_safe_load(ckpt_path)"),
                                ("opti_state_dict = paddle.load(ckpt_path)", "opti_state_dict = _ppcls_safe_load(ckpt_path)")],
                 helpers)


FIXES = {
    "2.8.0": [
        Fix("paddleseg.models.losses.cross_entropy_loss.CrossEntropyLoss._post_process_loss",
            "TypeError: type promotion float32 * int64 (every CrossEntropyLoss and MixedLoss holding one)",
            _fix_cross_entropy),
        Fix("paddleseg.models.losses.dice_loss.DiceLoss.forward",
            "RuntimeError: tensor modified by an inplace operation (DiceLoss beside another loss of the same label)",
            _fix_dice),
        Fix("paddleseg.utils.metrics.calculate_area",
            "ValueError: concat of 0-d tensors (every evaluation)", _fix_calculate_area),
        Fix("paddleseg.core.train.train",
            "IndexError at the first log step (0-d loss arrays); TypeError from paddle.flops after the last step "
            "(and a host copy of the loss after every step, against the project's rule)",
            _fix_train),
        Fix("paddleseg.utils.utils.load_pretrained_model / resume",
            "paddle.load unpickles checkpoints (not a Paddle 3 break: the project's safe-loading rule)", _fix_loading),
    ],
}

_applied = []


def apply_fixes(version):
    """Apply the fixes of PaddleSeg ``version`` once; returns the list of applied fixes."""
    if version not in FIXES:
        raise ConfigError(f"PaddleSeg {version}: no compatibility fixes are known for it (supported: "
                          f"{', '.join(FIXES)}); install the supported one with `bash tools/install_extras.sh seg`")
    if not _applied:
        for fix in FIXES[version]:
            fix.apply()
            _applied.append(fix)
    return list(_applied)
