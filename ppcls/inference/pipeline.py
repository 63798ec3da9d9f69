"""Image loading, preprocessing and top-k post-processing shared by tools/infer.py and the deployed
predictor, so both see exactly what evaluation sees."""
import os

import cv2
import numpy as np

from ..data.preprocess import create_operators
from ..data.preprocess.ops import DecodeError
from ..utils.errors import ConfigError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(path, limit=0):
    if not path:
        raise ConfigError("infer_imgs: required (an image file or a folder)")
    if os.path.isfile(path):
        files = [path]
    elif os.path.isdir(path):
        files = []
        for root, _, names in sorted(os.walk(path)):
            files += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(IMAGE_EXTS)]
    else:
        raise ConfigError(f"infer_imgs: not found: {path}")
    if not files:
        raise ConfigError(f"infer_imgs: no images in {path}")
    return files[:limit] if limit else files


def decode_rgb(data):
    """Encoded image bytes (or a uint8 array of them) -> HWC uint8 RGB, or None when they do not decode."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.size == 0:
        return None
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_rgb(path):
    """HWC uint8 RGB, or None when the file cannot be decoded."""
    return decode_rgb(np.fromfile(path, dtype=np.uint8))


class Preprocess:
    """The given ops (without DecodeImage); the result is laid out CHW float32."""

    def __init__(self, transform_ops):
        self.ops = create_operators([op for op in transform_ops if "DecodeImage" not in op], "PreProcess.transform_ops")

    def __call__(self, img):
        for op in self.ops:
            img = op(img)
        if img.ndim == 3 and img.shape[2] in (1, 3, 4) and img.shape[0] not in (1, 3, 4):
            img = img.transpose(2, 0, 1)
        return np.ascontiguousarray(img, dtype=np.float32)


class Topk:
    def __init__(self, topk=5, label_list=None, apply_softmax=False):
        self.topk = int(topk)
        self.labels = label_list
        self.softmax = apply_softmax

    def __call__(self, probs, files):
        if self.softmax:
            e = np.exp(probs - probs.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
        out = []
        k = min(self.topk, probs.shape[1])
        for p, f in zip(probs, files):
            idx = np.argsort(-p, kind="stable")[:k]
            out.append({"class_ids": [int(i) for i in idx], "scores": [round(float(p[i]), 5) for i in idx],
                        "file_name": f,
                        "label_names": [self.labels[i] if self.labels and i < len(self.labels) else "" for i in idx]})
        return out


def format_result(r):
    scores = ", ".join(f"{s:.2f}" for s in r["scores"])
    return (f"{r['file_name']}:\tclass id(s): {r['class_ids']}, score(s): [{scores}], "
            f"label_name(s): {r['label_names']}")


def load_batches(files, preprocess, batch_size, on_skip):
    """Yields (array [N, C, H, W], file names); unreadable files are reported through on_skip."""
    batch, names = [], []
    for f in files:
        img = read_rgb(f)
        if img is None:
            on_skip(f, "not a decodable image")
            continue
        try:
            batch.append(preprocess(img))
        except DecodeError as e:
            on_skip(f, str(e))
            continue
        names.append(f)
        if len(batch) == batch_size:
            yield np.stack(batch), names
            batch, names = [], []
    if batch:
        yield np.stack(batch), names
