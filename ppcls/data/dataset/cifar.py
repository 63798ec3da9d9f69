"""CIFAR-10 / CIFAR-100 from the standard python archive (cifar-10-python.tar.gz,
cifar-100-python.tar.gz) or its extracted folder, at a local path. Nothing is downloaded.

The batches are pickles; they are read with an unpickler that only admits the numpy array
reconstruction they need, so a hostile file cannot run code.
"""
import io
import os
import pickle
import tarfile

import numpy as np

from ...utils.errors import ConfigError
from .common import ImageDataset
from .registry import register_dataset

_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("__builtin__", "bytes"),
            ("builtins", "bytes")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(data, where):
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:
        raise ConfigError(f"{where}: not a CIFAR python batch ({type(e).__name__}: {e})") from None
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


def write_cifar_archive(path, images, labels, kind="cifar10", test_images=None, test_labels=None):
    """Write a CIFAR python archive in the real format (used by tests and demos)."""
    def batch(imgs, labs, key):
        data = np.ascontiguousarray(np.asarray(imgs, np.uint8).reshape(len(imgs), 32, 32, 3).transpose(0, 3, 1, 2).reshape(len(imgs), 3072))
        return pickle.dumps({b"data": data, key: list(map(int, labs))}, protocol=2)
    test_images = images if test_images is None else test_images
    test_labels = labels if test_labels is None else test_labels
    if kind == "cifar10":
        folder, key = "cifar-10-batches-py", b"labels"
        chunks = np.array_split(np.arange(len(images)), 5)
        members = [(f"data_batch_{i + 1}", batch(images[c], np.asarray(labels)[c], key)) for i, c in enumerate(chunks)]
        members.append(("test_batch", batch(test_images, test_labels, key)))
    else:
        folder, key = "cifar-100-python", b"fine_labels"
        members = [("train", batch(images, labels, key)), ("test", batch(test_images, test_labels, key))]
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path
