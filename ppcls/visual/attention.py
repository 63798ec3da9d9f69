"""Soft attention masks of Residual Attention Networks.

Every attention module computes ``(1 + mask) * trunk`` with ``mask = mask_branch(x)`` in (0, 1)
(a Sigmoid). The masks are read by forward post-hooks on the mask branches (the model is not
changed), averaged over channels and resized bilinearly to the network input, one array per module
in the order the forward pass runs them (stage 1 first).
"""
import os
import re
from collections import namedtuple

import numpy as np
import paddle
import paddle.nn.functional as F

from ..arch.backbone.residual_attention import MaskBranch
from ..utils.errors import ConfigError
from .render import heatmap_panel, save_png

AttentionMask = namedtuple("AttentionMask", "name layer stage mask native_shape")
AttentionMask.__doc__ = """One attention module's soft mask for a batch.

name: ``stage<s>.module<k>`` (k counts from 1 within the stage); layer: the mask branch's sublayer
name (e.g. ``features.3.mask_branch``); stage: 1..3; mask: float32 [N, H, W] at the input size, the
mean over channels, values in [0, 1]; native_shape: the branch output's (C, h, w)."""


def mask_branches(model):
    """``[(stage, sublayer name, MaskBranch)]`` in module order (empty for other models)."""
    return [(layer.levels[0], name, layer) for name, layer in model.named_sublayers() if isinstance(layer, MaskBranch)]


def _as_tensor(images):
    if isinstance(images, paddle.Tensor):
        return images
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"images: a batch [N, C, H, W] expected, got shape {arr.shape}")
    return paddle.to_tensor(arr)


def attention_masks(model, images):
    """The soft mask of every attention module of ``model`` for ``images`` ([N, 3, H, W], preprocessed),
    as a list of ``AttentionMask`` in stage order. Raises ConfigError when the model has no attention
    modules."""
    branches = mask_branches(model)
    if not branches:
        raise ConfigError(f"{type(model).__name__} has no attention modules (mask branches): attention masks "
                          "need a Residual Attention network (AttentionNet*)")
    x = _as_tensor(images)
    captured = {}

    def hook_for(name):
        def hook(layer, inputs, output):
            captured[name] = output.detach()
        return hook

    handles = [layer.register_forward_post_hook(hook_for(name)) for _, name, layer in branches]
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        if was_training:
            model.train()
    size = [int(x.shape[2]), int(x.shape[3])]
    out, count = [], {}
    for stage, name, _ in branches:
        if name not in captured:
            raise ConfigError(f"attention module {name} did not run in the forward pass")
        m = captured[name]
        mean = m.mean(axis=1, keepdim=True)
        if list(mean.shape[2:]) != size:
            mean = F.interpolate(mean, size=size, mode="bilinear", align_corners=False)
        count[stage] = count.get(stage, 0) + 1
        arr = np.clip(mean[:, 0].numpy().astype(np.float32), 0.0, 1.0)
        out.append(AttentionMask(f"stage{stage}.module{count[stage]}", name, stage, arr, tuple(m.shape[1:])))
    return out


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def attention_panel(display_images, mask, captions=None):
    """One module's panel: the images and its mask over them, titled with the module name.
    ``display_images``: HWC uint8 RGB images at the input size, one per mask (``mask.mask``: [N, H, W],
    or a list of per-image maps when the images differ in size). Returns HWC uint8 RGB."""
    n = len(display_images)
    if len(mask.mask) != n:
        raise ValueError(f"attention_panel: {n} images for masks of {len(mask.mask)}")
    heats = list(mask.mask)
    title = f"{mask.name}  ({mask.layer}, {mask.native_shape[1]}x{mask.native_shape[2]}, mean of {mask.native_shape[0]} channels)"
    return heatmap_panel(display_images, heats, title, captions, colorbar_label="soft mask")


def save_attention_panels(display_images, masks, out_dir, captions=None, prefix="attention"):
    """Write one PNG panel per attention module (``<prefix>_<k>_<name>.png``); returns
    ``[(module name, path, HWC uint8 array)]``."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for k, m in enumerate(masks):
        arr = attention_panel(display_images, m, captions)
        path = os.path.join(out_dir, f"{prefix}_{k:02d}_{_safe(m.name)}.png")
        written.append((m.name, save_png(arr, path), arr))
    return written
