"""Image/mask pairs for dense prediction (ReXUNet): a file list of ``image_path mask_path`` lines
(relative to ``image_root``), joint transforms that keep image and mask aligned, then image-only ops
(e.g. NormalizeImage). Items: (image [3, H, W] float32, mask [1, H, W] float32 in {0, 1})."""
import math
import os
import random

import cv2
import numpy as np

from ...utils.errors import ConfigError
from ...utils.registry import Registry
from ..preprocess import DecodeError
from .common import ImageDataset, check_dir, check_file
from .registry import register_dataset

JOINT_OPS = Registry("joint (image + mask) op")


@JOINT_OPS.register
class SegResize:
    """Resize both to ``size`` ([h, w] or int): the image bilinear, the mask nearest."""

    def __init__(self, size):
        self.h, self.w = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, img, mask):
        return (cv2.resize(img, (self.w, self.h), interpolation=cv2.INTER_LINEAR),
                cv2.resize(mask, (self.w, self.h), interpolation=cv2.INTER_NEAREST))


@JOINT_OPS.register
class SegRandFlip:
    """Horizontal flip of both with probability ``prob``."""

    def __init__(self, prob=0.5):
        self.prob = float(prob)

    def __call__(self, img, mask):
        if random.random() < self.prob:
            return img[:, ::-1], mask[:, ::-1]
        return img, mask


@JOINT_OPS.register
class SegRandResizedCrop:
    """The same random-resized crop box for both (area fraction in ``scale``, aspect in ``ratio``)."""

    def __init__(self, size, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)):
        self.h, self.w = (size, size) if isinstance(size, int) else tuple(size)
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def __call__(self, img, mask):
        H, W = img.shape[:2]
        for _ in range(10):
            area = H * W * random.uniform(*self.scale)
            ar = math.exp(random.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            w, h = int(round(math.sqrt(area * ar))), int(round(math.sqrt(area / ar)))
            if 0 < w <= W and 0 < h <= H:
                x, y = random.randint(0, W - w), random.randint(0, H - h)
                img, mask = img[y:y + h, x:x + w], mask[y:y + h, x:x + w]
                break
        return (cv2.resize(img, (self.w, self.h), interpolation=cv2.INTER_LINEAR),
                cv2.resize(np.ascontiguousarray(mask), (self.w, self.h), interpolation=cv2.INTER_NEAREST))


@register_dataset
class SegDataset(ImageDataset):
    def __init__(self, image_root, cls_label_path, joint_ops=None, transform_ops=None, mask_threshold=127,
                 skip_bad_images=True, max_bad_images=1000):
        super().__init__(transform_ops, skip_bad_images, max_bad_images)
        check_dir(image_root, "dataset.image_root")
        check_file(cls_label_path, "dataset.cls_label_path")
        self.joint = JOINT_OPS.build_entries(joint_ops, "dataset.joint_ops")
        self.mask_threshold = mask_threshold
        with open(cls_label_path, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                parts = text.split()
                if len(parts) != 2:
                    raise ConfigError(f"{cls_label_path}:{lineno}: expected 'image_path mask_path', got {text[:80]!r}")
                self.samples.append((os.path.join(image_root, parts[0]), os.path.join(image_root, parts[1])))
        if not self.samples:
            raise ConfigError(f"{cls_label_path}: the file list has no samples")

    def _load(self, idx):
        img_path, mask_path = self.samples[idx]
        img = cv2.imread(img_path, cv2.IMREAD_COLOR)
        if img is None:
            raise DecodeError(f"cannot read image {img_path}")
        mask = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise DecodeError(f"cannot read mask {mask_path}")
        if mask.shape != img.shape[:2]:
            raise DecodeError(f"mask {mask.shape} and image {img.shape[:2]} differ in size")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), mask

    def __getitem__(self, idx):
        saved = random.getstate(), np.random.get_state()
        try:
            s = (self.seed * 1000003 + self._epoch.value * 100003 + idx * 7) % (2 ** 32)
            random.seed(s)
            np.random.seed(s)
            try:
                img, mask = self._load(idx)
            except (OSError, DecodeError) as e:
                if not self.skip_bad_images:
                    raise ConfigError(f"unreadable sample {self.samples[idx][0]}: {e}") from None
                self._report_bad(idx, e)
                return self[(idx + 1) % len(self.samples)]
            for op in self.joint:
                img, mask = op(img, mask)
            image = self._transform(np.ascontiguousarray(img))
            target = (np.ascontiguousarray(mask) > self.mask_threshold).astype(np.float32)[None]
            return image, target
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
