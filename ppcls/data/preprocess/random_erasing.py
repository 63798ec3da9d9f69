"""Random erasing (Zhong et al.), after NormalizeImage: a random rectangle of the normalised image is
replaced by per-pixel normal noise (``mode: pixel``), one normal value per channel (``rand``) or zeros
(``const``: ``mean`` per channel, zeros by default, as PaddleClas fills it). Works on HWC or CHW float images. Randomness: Python's ``random`` and numpy's global
generator (both seeded per sample by the dataset)."""
import math
import random

import numpy as np

from ...utils.errors import ConfigError
from .registry import register_op


@register_op
class RandomErasing:
    def __init__(self, EPSILON=0.5, sl=0.02, sh=0.4, r1=0.3, attempt=10, use_log_aspect=False, mode="const",
                 mean=None):
        if mode not in ("pixel", "rand", "const"):
            raise ConfigError(f"RandomErasing.mode: 'pixel', 'rand' or 'const', got {mode!r}")
        if not 0 <= EPSILON <= 1:
            raise ConfigError(f"RandomErasing.EPSILON: a probability in [0, 1], got {EPSILON}")
        self.p = float(EPSILON)
        self.sl, self.sh = float(sl), float(sh)
        self.ratio = (math.log(r1), math.log(1 / r1)) if use_log_aspect else (r1, 1 / r1)
        self.use_log = use_log_aspect
        self.attempt = int(attempt)
        self.mode = mode
        self.fill = None if mean is None else np.asarray(mean, dtype=np.float64).reshape(1, 1, -1)

    def __call__(self, img):
        if self.p <= 0 or random.random() >= self.p:
            return img
        chw = img.shape[0] <= 4 < img.shape[2]
        h, w, c = (img.shape[1], img.shape[2], img.shape[0]) if chw else img.shape
        area = h * w
        for _ in range(self.attempt):
            target = random.uniform(self.sl, self.sh) * area
            ar = random.uniform(*self.ratio)
            ar = math.exp(ar) if self.use_log else ar
            eh, ew = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
            if 0 < eh < h and 0 < ew < w:
                y, x = random.randint(0, h - eh), random.randint(0, w - ew)
                if self.mode == "pixel":
                    patch = np.random.normal(size=(eh, ew, c))
                elif self.mode == "rand":
                    patch = np.random.normal(size=(1, 1, c))
                else:
                    patch = np.zeros((1, 1, c)) if self.fill is None else np.broadcast_to(self.fill, (1, 1, c))
                img = img.copy()
                if chw:
                    img[:, y:y + eh, x:x + ew] = patch.transpose(2, 0, 1).astype(img.dtype)
                else:
                    img[y:y + eh, x:x + ew] = patch.astype(img.dtype)
                return img
        return img
