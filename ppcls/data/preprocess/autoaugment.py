"""RandAugment (timm semantics, e.g. rand-m9-mstd0.5) and AutoAugment (the ImageNet policy).

Images are HWC uint8 RGB numpy arrays; the operations run through PIL's C implementations.
Randomness comes from Python's ``random`` module (seeded per sample by the dataset).
"""
import random

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from ...utils.errors import ConfigError
from .registry import register_op

MAX_LEVEL = 10.0
FILL = (128, 128, 128)


def _signed(v):
    return -v if random.random() < 0.5 else v


def _affine(img, matrix):
    return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=FILL)


def _rotate(img, m):
    return img.rotate(_signed(m / MAX_LEVEL * 30.0), resample=Image.BILINEAR, fillcolor=FILL)


def _shear_x(img, m):
    return _affine(img, (1, _signed(m / MAX_LEVEL * 0.3), 0, 0, 1, 0))


def _shear_y(img, m):
    return _affine(img, (1, 0, 0, _signed(m / MAX_LEVEL * 0.3), 1, 0))


def _translate_x(img, m):
    return _affine(img, (1, 0, _signed(m / MAX_LEVEL * 0.45) * img.size[0], 0, 1, 0))


def _translate_y(img, m):
    return _affine(img, (1, 0, 0, 0, 1, _signed(m / MAX_LEVEL * 0.45) * img.size[1]))


def _enhance(cls):
    def op(img, m):
        return cls(img).enhance(_signed(m / MAX_LEVEL * 0.9) + 1.0)  # factor in [0.1, 1.9]
    return op


def _posterize(img, m):
    return ImageOps.posterize(img, max(1, min(8, int(m / MAX_LEVEL * 4) + 4)))


def _solarize(img, m):
    return ImageOps.solarize(img, 256 - int(m / MAX_LEVEL * 256))


def _solarize_add(img, m):
    add = int(m / MAX_LEVEL * 110)
    a = np.asarray(img).astype(np.int16)
    a = np.where(a < 128, np.minimum(a + add, 255), a).astype(np.uint8)
    return Image.fromarray(a)


OPS_BY_NAME = {
    "AutoContrast": lambda img, m: ImageOps.autocontrast(img),
    "Equalize": lambda img, m: ImageOps.equalize(img),
    "Invert": lambda img, m: ImageOps.invert(img),
    "Rotate": _rotate,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "SolarizeAdd": _solarize_add,
    "Color": _enhance(ImageEnhance.Color),
    "Contrast": _enhance(ImageEnhance.Contrast),
    "Brightness": _enhance(ImageEnhance.Brightness),
    "Sharpness": _enhance(ImageEnhance.Sharpness),
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "TranslateXRel": _translate_x,
    "TranslateYRel": _translate_y,
}
RAND_OPS = list(OPS_BY_NAME)


def _to_pil(img):
    if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8):
        raise ConfigError("RandAugment / AutoAugment expect HWC uint8 RGB images: place them before NormalizeImage")
    return Image.fromarray(img)


@register_op
class RandAugment:
    """``num_layers`` ops drawn uniformly from the timm set, each applied with probability ``prob``
    at magnitude ``magnitude`` (0-10); ``magnitude_std`` > 0 draws the magnitude per op from
    N(magnitude, magnitude_std), clipped to [0, 10]."""

    def __init__(self, num_layers=2, magnitude=5, magnitude_std=0.0, prob=0.5, ops=None):
        if not 0 <= magnitude <= MAX_LEVEL:
            raise ConfigError(f"RandAugment.magnitude: 0..10, got {magnitude}")
        self.ops = list(ops) if ops else RAND_OPS
        for name in self.ops:
            if name not in OPS_BY_NAME:
                from ...utils.errors import unknown_name_error
                raise unknown_name_error("RandAugment op", name, OPS_BY_NAME, where="RandAugment.ops")
        self.num_layers = int(num_layers)
        self.magnitude = float(magnitude)
        self.magnitude_std = float(magnitude_std)
        self.prob = float(prob)

    def __call__(self, img):
        if self.num_layers == 0 or self.prob <= 0:
            return img
        pil = _to_pil(img)
        for name in random.choices(self.ops, k=self.num_layers):
            if random.random() >= self.prob:
                continue
            m = self.magnitude
            if self.magnitude_std > 0:
                m = min(MAX_LEVEL, max(0.0, random.gauss(m, self.magnitude_std)))
            pil = OPS_BY_NAME[name](pil, m)
        return np.asarray(pil, dtype=np.uint8)


# The ImageNet policy of the AutoAugment paper: 25 sub-policies of two (op, probability, magnitude 0-9).
IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)), (("Equalize", 0.4, 0), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 0)), (("Posterize", 0.8, 5), ("Equalize", 1.0, 0)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, 0), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, 0)),
    (("Equalize", 0.0, 0), ("Equalize", 0.8, 0)), (("Invert", 0.6, 0), ("Equalize", 1.0, 0)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, 0)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 0)), (("Color", 0.4, 0), ("Equalize", 0.6, 0)),
    (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
    (("Invert", 0.6, 0), ("Equalize", 1.0, 0)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)),
)


@register_op
class AutoAugment:
    """One random sub-policy of the ImageNet AutoAugment policy per image."""

    def __init__(self, policy="imagenet"):
        if policy != "imagenet":
            raise ConfigError(f"AutoAugment.policy: only 'imagenet' is available, got {policy!r}")
        self.policy = IMAGENET_POLICY

    def __call__(self, img):
        pil = _to_pil(img)
        for name, p, level in random.choice(self.policy):
            if random.random() < p:
                pil = OPS_BY_NAME[name](pil, level * MAX_LEVEL / 9.0)
        return np.asarray(pil, dtype=np.uint8)
