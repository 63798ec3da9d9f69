"""Datasets the tests make for themselves: small generated images in PaddleClas's list format,
CIFAR python archives in the real format, and real-size JPEG photograph stand-ins."""
import io
import os
import pickle
import struct
import tarfile

import cv2
import numpy as np

from tools.make_demo_dataset import make_photos_dataset as make_jpeg_list  # noqa: F401  (the benchmark's photos)
from tools.make_demo_dataset import make_shapes_dataset  # noqa: F401


def _write_split(root, name, items):
    with open(os.path.join(root, f"{name}_list.txt"), "w", encoding="utf-8") as f:
        for rel, label in items:
            f.write(f"{rel} {label}\n")


def make_synthetic_dataset(root, num_classes=3, per_class=8, size=32, val_per_class=4, seed=0, ext="jpg"):
    """Class c is a noisy image with a bright square in a class-specific position: learnable in a few
    steps. Writes train_list.txt / val_list.txt under ``root``."""
    rng = np.random.RandomState(seed)
    out = {}
    for split, n in (("train", per_class), ("val", val_per_class)):
        items = []
        os.makedirs(os.path.join(root, split), exist_ok=True)
        for c in range(num_classes):
            for j in range(n):
                img = rng.randint(0, 60, (size, size, 3)).astype(np.uint8)
                s = size // 3
                x = (c * s) % (size - s + 1)
                y = ((c * 7) // 3 * s) % (size - s + 1)
                img[y:y + s, x:x + s] = (200 + 50 * (c % 2), 80 * (c % 3), 255 - 40 * c % 256)
                rel = f"{split}/c{c}_{j}.{ext}"
                cv2.imwrite(os.path.join(root, rel), img)
                items.append((rel, c))
        _write_split(root, split, items)
        out[split] = items
    return out


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


# -- MXNet NDArray-list files (mx.nd.save / Gluon save_parameters), written without mxnet --------
_V1, _V2, _V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
MX_FLAGS = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2, np.dtype(np.uint8): 3,
            np.dtype(np.int32): 4, np.dtype(np.int8): 5, np.dtype(np.int64): 6, np.dtype(np.bool_): 7}


def mx_record(array, version="v2", storage=0, flag=None):
    """One NDArray as MXNet's NDArray::Save writes it (legacy: ndim and uint32 dims, no magic)."""
    dims = array.shape
    if version == "legacy":
        head = struct.pack(f"<I{len(dims)}I", len(dims), *dims)
    elif version == "v1":
        head = struct.pack(f"<Ii{len(dims)}q", _V1, len(dims), *dims)
    else:
        head = struct.pack(f"<Iii{len(dims)}q", _V2 if version == "v2" else _V3, storage, len(dims), *dims)
    flag = MX_FLAGS[array.dtype] if flag is None else flag
    return head + struct.pack("<iii", 1, 0, flag) + array.tobytes()


def write_mx_params(path, records, names):
    encoded = [n.encode("utf-8") if isinstance(n, str) else n for n in names]
    body = struct.pack("<QQQ", 0x112, 0, len(records)) + b"".join(records)
    body += struct.pack("<Q", len(encoded)) + b"".join(struct.pack("<Q", len(n)) + n for n in encoded)
    with open(path, "wb") as f:
        f.write(body)
    return str(path)
