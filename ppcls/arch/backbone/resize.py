"""Bilinear resizing written as two small matrix products (rows, then columns).

Paddle Inference with oneDNN cannot run Paddle 3's bilinear_interp op (its scale attribute fails to
convert, whatever the size/scale form), so the models that up-sample (Residual Attention mask
branches, ReXUNet) resize with this instead: the same bilinear weights, exported as constant
matrices and matmuls that every backend runs. Sizes must be static (always true in dygraph, and in
exported models with a fixed input size); otherwise it falls back to F.interpolate.
"""
import functools

import numpy as np
import paddle
import paddle.nn.functional as F


@functools.lru_cache(maxsize=256)
def _weights(src, dst, align_corners):
    """[dst, src] matrix of the 1-D bilinear weights (PyTorch / Paddle align_mode 0 semantics)."""
    m = np.zeros((dst, src), np.float32)
    for i in range(dst):
        if align_corners:
            pos = i * (src - 1) / (dst - 1) if dst > 1 else 0.0
        else:
            pos = max((i + 0.5) * src / dst - 0.5, 0.0)
        i0 = min(int(np.floor(pos)), src - 1)
        i1 = min(i0 + 1, src - 1)
        frac = pos - i0
        m[i, i0] += 1.0 - frac
        m[i, i1] += frac
    return m


def _static(v):
    return isinstance(v, int) and v > 0


def bilinear_resize(x, size, align_corners=False):
    """Resize NCHW ``x`` to ``size`` = [H, W] (ints) with bilinear weights."""
    h, w = x.shape[2], x.shape[3]
    H, W = size
    if not all(_static(v) for v in (h, w, H, W)):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    if (h, w) == (H, W):
        return x
    c = x.shape[1]
    rows_t = paddle.to_tensor(_weights(h, H, align_corners).T.copy(), dtype=x.dtype)  # [h, H]
    cols_t = paddle.to_tensor(_weights(w, W, align_corners).T.copy(), dtype=x.dtype)  # [w, W]
    # plain 2-D matmuls only: oneDNN's broadcasting matmul gives wrong results here
    y = paddle.matmul(x.reshape([-1, w]), cols_t).reshape([-1, c, h, W])
    y = paddle.matmul(y.transpose([0, 1, 3, 2]).reshape([-1, h]), rows_t).reshape([-1, c, W, H])
    return y.transpose([0, 1, 3, 2])
