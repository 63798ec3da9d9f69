"""Grad-CAM (Selvaraju et al. 2017) for every classifier of the zoo and Paddle's ResNets.

For a feature map A [N, C, h, w] and the logit y_k of class k (the predicted class, or a given one):
weights a_c = mean over (h, w) of dy_k/dA_c, CAM = ReLU(sum_c a_c A_c), resized bilinearly to the
input and divided by its per-image maximum (so values are in [0, 1]). The gradient is taken with
``paddle.grad`` of sum_n y_{n, k_n} with respect to A, for the whole batch at once (samples do not
interact in eval mode, so this is every sample's own gradient).

Where A comes from (``stage``):
- a stage of a zoo backbone (``model.feature_info``: its index, negative indices included, or its
  name such as ``level3``, ``stages.2``, ``features.13``, ``stage2``): the tensor that
  ``forward_features`` returns for that stage, with the logits from ``forward_head``;
- any sublayer name (``layer4`` of Paddle's ResNets, ``level5.tree2.root``...): the layer's output
  (the first tensor when it returns a tuple), read by a forward post-hook;
- ``None``: the last stage of a zoo backbone; for other models the last direct child whose output
  is a 4-D feature map and that is not a pooling layer (``layer4`` of a ResNet, ``features`` of
  MobileNetV2).
"""
import os
import re
from collections import namedtuple

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..arch.backbone.base import Backbone
from ..utils.errors import ConfigError
from .render import cam_figure, save_png

CamResult = namedtuple("CamResult", "cams class_ids scores probs target feature_size")
CamResult.__doc__ = """Grad-CAM of a batch: cams float32 [N, H, W] in [0, 1] at the input size;
class_ids int64 [N] (the explained classes); scores float32 [N] (their softmax probabilities);
probs float32 [N, K]; target: the feature map used, e.g. ``stage 5 (level5)`` or ``layer4``;
feature_size: its (h, w) (a 1x1 map gives a uniform CAM: choose an earlier stage)."""

_POOLS = (nn.AdaptiveAvgPool2D, nn.AdaptiveMaxPool2D, nn.AvgPool2D, nn.MaxPool2D)
_Target = namedtuple("_Target", "kind key label")


def _stage_names(model):
    return [d["name"] for d in getattr(model, "feature_info", None) or []]


def _is_zoo_backbone(model):
    return isinstance(model, Backbone) and bool(getattr(model, "feature_info", None))


def valid_stages(model):
    """A one-line description of what ``stage`` accepts for ``model``."""
    if _is_zoo_backbone(model):
        names = _stage_names(model)
        return f"0..{len(names) - 1} or -1 ({', '.join(names)}), or a sublayer name"
    children = [n for n, _ in model.named_children()]
    return "a sublayer name (" + ", ".join(children) + ", or a dotted path inside them)"


def resolve_stage(model, stage=None, model_name=None):
    """Where the Grad-CAM feature map comes from (see the module docstring); ConfigError naming the
    valid choices when ``stage`` does not exist (``model_name``, e.g. the Arch.name, for the message)."""
    zoo = _is_zoo_backbone(model)
    who = model_name or type(model).__name__
    if stage is None or (isinstance(stage, str) and stage.strip() == ""):
        if zoo:
            n = len(model.feature_info)
            return _Target("stage", n - 1, f"stage {n - 1} ({model.feature_info[-1]['name']})")
        return _Target("auto", None, None)
    text = str(stage).strip()
    if zoo:
        names = _stage_names(model)
        n = len(names)
        if re.fullmatch(r"-?\d+", text):
            i = int(text)
            if -n <= i < n:
                i %= n
                return _Target("stage", i, f"stage {i} ({names[i]})")
            raise ConfigError(f"stage {text}: {who} has no such stage; valid: {valid_stages(model)}")
        if text in names:
            i = names.index(text)
            return _Target("stage", i, f"stage {i} ({text})")
    layers = dict(model.named_sublayers())
    if text in layers:
        layer = layers[text]
        if isinstance(layer, (nn.LayerList, nn.LayerDict)):
            raise ConfigError(f"stage {text}: a container of layers that the forward pass never calls as a "
                              f"whole; name one of its layers ({text}.0, ...)")
        return _Target("layer", text, text)
    raise ConfigError(f"stage {text}: {who} has no such stage or sublayer; valid: {valid_stages(model)}")


def _first_tensor(output):
    if isinstance(output, paddle.Tensor):
        return output
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], paddle.Tensor):
        return output[0]
    return None


def _forward_with_activation(model, x, target):
    """(logits, activation, label)."""
    if target.kind == "stage":
        stages, head = model.forward_features(x)
        return model.forward_head(head), stages[target.key], target.label
    captured = []
    if target.kind == "layer":
        layer = dict(model.named_sublayers())[target.key]

        def hook(lyr, inputs, output):
            captured.append((target.key, lyr, _first_tensor(output)))
        handles = [layer.register_forward_post_hook(hook)]
    else:
        def hook_for(name):
            def hook(lyr, inputs, output):
                captured.append((name, lyr, _first_tensor(output)))
            return hook
        handles = [child.register_forward_post_hook(hook_for(name)) for name, child in model.named_children()]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    if target.kind == "layer":
        if not captured:
            raise ConfigError(f"stage {target.key}: this sublayer does not run in the forward pass")
        name, _, act = captured[-1]  # a layer called several times (a shared conv): its last call
        return logits, act, name
    maps = [(name, act) for name, lyr, act in captured
            if act is not None and act.ndim == 4 and not isinstance(lyr, _POOLS)]
    if not maps:
        raise ConfigError(f"{type(model).__name__}: no direct sublayer returns a feature map [N, C, H, W]; "
                          f"give the stage: {valid_stages(model)}")
    name, act = maps[-1]
    return logits, act, name


def _class_ids(class_id, preds, k):
    n = preds.shape[0]
    if class_id is None:
        return preds
    ids = np.asarray(class_id, dtype=np.int64).reshape(-1)
    if ids.size == 1:
        ids = np.full([n], int(ids[0]), dtype=np.int64)
    if ids.size != n:
        raise ConfigError(f"class id: one id or one per image ({n}), got {ids.size}")
    bad = ids[(ids < 0) | (ids >= k)]
    if bad.size:
        raise ConfigError(f"class id {int(bad[0])}: the model has classes 0..{k - 1}")
    return ids


def grad_cam(model, images, class_id=None, stage=None):
    """Grad-CAM of ``images`` ([N, 3, H, W] float32, preprocessed; array or tensor) for the predicted
    class (``class_id=None``), one class for all images (int) or one per image (sequence), at
    ``stage`` (see the module docstring). Returns a ``CamResult``."""
    target = resolve_stage(model, stage)
    class_num = getattr(model, "class_num", None)
    if isinstance(class_num, int) and class_num <= 0:
        raise ConfigError(f"{type(model).__name__} with class_num <= 0 returns features, not class scores: "
                          "Grad-CAM needs a classifier")
    x = images if isinstance(images, paddle.Tensor) else paddle.to_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim != 4:
        raise ValueError(f"images: a batch [N, C, H, W] expected, got shape {list(x.shape)}")
    x = x.detach()
    x.stop_gradient = False
    was_training = model.training
    model.eval()
    try:
        with paddle.set_grad_enabled(True):
            logits, act, label = _forward_with_activation(model, x, target)
            if isinstance(logits, (list, tuple)) or logits.ndim != 2:
                raise ConfigError(f"{type(model).__name__} does not return class scores [N, K] (a dense or "
                                  "multi-output model): Grad-CAM needs a classifier")
            if act is None or act.ndim != 4:
                shape = None if act is None else list(act.shape)
                raise ConfigError(f"stage {label}: its output {shape} is not a feature map [N, C, H, W]")
            k = int(logits.shape[1])
            preds = logits.argmax(axis=1).numpy().astype(np.int64)
            ids = _class_ids(class_id, preds, k)
            ids_t = paddle.to_tensor(ids)
            selected = (logits * F.one_hot(ids_t, k).astype(logits.dtype)).sum()
            grads = paddle.grad(selected, act, retain_graph=False, create_graph=False)[0]
        with paddle.no_grad():
            weights = grads.mean(axis=[2, 3], keepdim=True)
            cam = F.relu((weights * act.detach()).sum(axis=1, keepdim=True))
            size = [int(x.shape[2]), int(x.shape[3])]
            if list(cam.shape[2:]) != size:
                cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
            cam = F.relu(cam[:, 0])
            peak = cam.max(axis=[1, 2], keepdim=True)
            cam = paddle.where(peak > 0, cam / paddle.where(peak > 0, peak, paddle.ones_like(peak)),
                               paddle.zeros_like(cam))
            probs = F.softmax(logits.detach().astype("float32"), axis=1).numpy()
    finally:
        if was_training:
            model.train()
    scores = np.take_along_axis(probs, ids[:, None], axis=1)[:, 0]
    return CamResult(cam.numpy().astype(np.float32), ids, scores.astype(np.float32), probs.astype(np.float32), label,
                     (int(act.shape[2]), int(act.shape[3])))


def cam_title(class_id, score, target, class_names=None, predicted=True):
    name = ""
    if class_names is not None and 0 <= class_id < len(class_names) and class_names[class_id]:
        name = f" '{class_names[class_id]}'"
    how = "predicted" if predicted else "class"
    return f"Grad-CAM, {how} {class_id}{name} (p={score:.3f}), {target}"


def save_cam_overlays(display_images, result, out_dir, names=None, class_names=None, predicted=True,
                      prefix="gradcam"):
    """One PNG per image: the image and its Grad-CAM overlay, titled with the class, its probability
    and the feature map used. ``display_images``: HWC uint8 RGB at the input size (``result.cams``
    may be a list of per-image maps when the images differ in size). Returns
    ``[(name, path, HWC uint8 array)]``."""
    os.makedirs(out_dir, exist_ok=True)
    n = len(display_images)
    if len(result.cams) != n:
        raise ValueError(f"save_cam_overlays: {n} images for {len(result.cams)} CAMs")
    names = names or [f"{i:03d}" for i in range(n)]
    written = []
    for i in range(n):
        title = cam_title(int(result.class_ids[i]), float(result.scores[i]), result.target, class_names, predicted)
        arr = cam_figure(display_images[i], result.cams[i], title)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(names[i]))
        path = os.path.join(out_dir, f"{prefix}_{i:03d}_{safe}.png")
        written.append((names[i], save_png(arr, path), arr))
    return written
