"""CIFAR-10 / CIFAR-100 from the standard python archive (cifar-10-python.tar.gz,
cifar-100-python.tar.gz) or its extracted folder, at a local path. Nothing is downloaded.

The batches are pickles; they are read with the project's safe loader, so a hostile file cannot run code.
"""
import os
import tarfile

import numpy as np

from ...utils import safe_pickle
from ...utils.errors import ConfigError
from .common import ImageDataset
from .registry import register_dataset


def _unpickle(data, where):
    obj = safe_pickle.loads(data, where, what="CIFAR python batch", encoding="bytes")
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: not a CIFAR python batch (no dict inside)")
    return obj


class _CifarBase(ImageDataset):
    label_key = b"labels"
    train_members = ()
    test_members = ()

    def __init__(self, data_file, mode="train", transform_ops=None, class_num=None,
                 skip_bad_images=True, max_bad_images=1000):
        super().__init__(transform_ops, skip_bad_images, max_bad_images)
        if mode not in ("train", "test", "eval", "val"):
            raise ConfigError(f"dataset.mode: 'train' or 'test', got {mode!r}")
        wanted = self.train_members if mode == "train" else self.test_members
        batches = self._read(data_file, wanted)
        images, labels = [], []
        for where, obj in batches:
            if b"data" not in obj or self.label_key not in obj:
                raise ConfigError(f"{where}: missing b'data' or {self.label_key!r}: not a {type(self).__name__} archive")
            data = np.asarray(obj[b"data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3072:
                raise ConfigError(f"{where}: data has shape {data.shape}, expected [N, 3072]")
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.extend(int(v) for v in obj[self.label_key])
        if class_num is not None and labels and not 0 <= min(labels) <= max(labels) < class_num:
            raise ConfigError(f"{data_file}: labels span {min(labels)}..{max(labels)}, outside 0..{class_num - 1} "
                              f"(Arch.class_num={class_num})")
        self.images = np.ascontiguousarray(np.concatenate(images))
        self.samples = [(f"{data_file}#{i}", l) for i, l in enumerate(labels)]
        if len(self.samples) != len(self.images):
            raise ConfigError(f"{data_file}: {len(self.images)} images but {len(labels)} labels")

    def _read(self, data_file, wanted):
        if data_file is None:
            raise ConfigError("dataset.data_file: required (path of the python archive or its folder)")
        found = {}
        if os.path.isdir(data_file):
            for root, _, files in os.walk(data_file):
                for name in files:
                    if name in wanted:
                        with open(os.path.join(root, name), "rb") as f:
                            found[name] = (os.path.join(root, name), f.read())
        elif os.path.isfile(data_file):
            try:
                with tarfile.open(data_file, "r:*") as tar:
                    for m in tar.getmembers():
                        base = os.path.basename(m.name)
                        if m.isfile() and base in wanted:
                            found[base] = (f"{data_file}:{m.name}", tar.extractfile(m).read())
            except (tarfile.TarError, EOFError, OSError) as e:
                raise ConfigError(f"dataset.data_file: {data_file} is not a CIFAR tar archive ({e})") from None
        else:
            raise ConfigError(f"dataset.data_file: not found: {data_file}")
        missing = [w for w in wanted if w not in found]
        if missing:
            raise ConfigError(f"dataset.data_file: {data_file} lacks {', '.join(missing)}: "
                              f"not a {type(self).__name__} python archive")
        return [(found[w][0], _unpickle(found[w][1], found[w][0])) for w in wanted]

    def _load(self, idx):
        return self.images[idx]

    def _describe(self, idx):
        return self.samples[idx][0]


@register_dataset
class Cifar10(_CifarBase):
    train_members = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_members = ("test_batch",)


@register_dataset
class Cifar100(_CifarBase):
    label_key = b"fine_labels"
    train_members = ("train",)
    test_members = ("test",)
