"""Shared behaviour of the image datasets: transforms, CHW layout, and bad-image handling.

An image that is missing, empty or undecodable does not kill a long run: it is replaced in the
batch by the next readable sample, counted (across loader worker processes) and reported with its
path. ``skip_bad_images=False`` makes it an error instead; ``max_bad_images`` bounds how many may be
skipped before the run stops (a dataset that is mostly broken is an error, not a silent skip).
"""
import multiprocessing
import os
import random

import numpy as np
from paddle.io import Dataset

from ...utils.errors import ConfigError
from ...utils.logger import logger
from ..preprocess import DecodeError, create_operators
from ..preprocess.ops import DecodeImage, NormalizeImage, ToCHWImage


class BadImageError(ConfigError):
    pass


def _final_layout_chw(ops):
    chw = False
    for op in ops:
        if isinstance(op, ToCHWImage) or (isinstance(op, NormalizeImage) and op.chw) or \
                (isinstance(op, DecodeImage) and op.channel_first):
            chw = True
    return chw


class ImageDataset(Dataset):
    """Base class: subclasses fill ``self.samples`` (list of (path, label)) or override ``_load``."""

    def __init__(self, transform_ops=None, skip_bad_images=True, max_bad_images=1000):
        self.ops = create_operators(transform_ops)
        self.chw = _final_layout_chw(self.ops)
        if not self.chw and self.ops and isinstance(self.ops[-1], NormalizeImage):
            self.ops[-1].chw = True  # fuse the layout change into normalisation
            self.chw = True
        self.skip_bad_images = skip_bad_images
        self.max_bad_images = max_bad_images
        self._bad = multiprocessing.Value("i", 0)  # shared with forked loader workers
        self._epoch = multiprocessing.Value("i", 0)
        self.seed = int.from_bytes(os.urandom(4), "little")
        self.samples = []

    def set_seed(self, seed):
        if seed is not None:
            self.seed = int(seed)

    def set_epoch(self, epoch):
        self._epoch.value = int(epoch)

    # subclasses may override: raw input of sample idx (bytes or an HWC uint8 array)
    def _load(self, idx):
        path = self.samples[idx][0]
        with open(path, "rb") as f:
            return f.read()

    def _describe(self, idx):
        return self.samples[idx][0]

    def _transform(self, data):
        for op in self.ops:
            data = op(data)
        if not self.chw and isinstance(data, np.ndarray) and data.ndim == 3:
            data = np.ascontiguousarray(data.transpose((2, 0, 1)))
        return data

    def __getitem__(self, idx):
        # Every sample draws its augmentation from its own stream, seeded by (seed, epoch, index):
        # the result does not depend on worker count, prefetching or where a resumed run restarts,
        # and the caller's random state is left as it was.
        saved = random.getstate(), np.random.get_state()
        try:
            n = len(self.samples)
            for attempt in range(min(n, 32)):
                j = (idx + attempt) % n
                s = (self.seed * 1000003 + self._epoch.value * 100003 + j * 7 + attempt) % (2 ** 32)
                random.seed(s)
                np.random.seed(s)
                try:
                    img = self._transform(self._load(j))
                    return img, np.int64(self.samples[j][1])
                except (OSError, DecodeError) as e:
                    self._report_bad(j, e)
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
        raise BadImageError(f"{min(n, 32)} consecutive unreadable images from index {idx} "
                            f"(first: {self._describe(idx)}); is the image_root right?")

    def _report_bad(self, idx, err):
        path = self._describe(idx)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        if not self.skip_bad_images:
            raise BadImageError(f"unreadable image {path}: {reason} "
                                "(Global.skip_bad_images=True skips such images)")
        with self._bad.get_lock():
            self._bad.value += 1
            count = self._bad.value
        logger.warning(f"skipped unreadable image {path}: {reason} (skipped so far: {count})")
        if count > self.max_bad_images:
            raise BadImageError(f"more than {self.max_bad_images} unreadable images (last: {path}); "
                                "stopping (raise Global.max_bad_images to allow more)")

    @property
    def bad_count(self):
        return self._bad.value

    def __len__(self):
        return len(self.samples)

    @property
    def labels(self):
        return [s[1] for s in self.samples]


def check_file(path, key):
    if path is None:
        raise ConfigError(f"{key}: required")
    if not os.path.isfile(path):
        raise ConfigError(f"{key}: file not found: {path}")


def check_dir(path, key):
    if path is None:
        raise ConfigError(f"{key}: required")
    if not os.path.isdir(path):
        raise ConfigError(f"{key}: directory not found: {path}")
