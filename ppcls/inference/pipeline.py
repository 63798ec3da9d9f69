"""Image loading, preprocessing and top-k post-processing shared by tools/infer.py and the deployed
predictor, so both see exactly what evaluation sees."""
import os

import cv2
import numpy as np

from ..data.preprocess import create_operators
from ..data.preprocess.ops import DecodeError, NormalizeImage, ToCHWImage
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


def decode_rgb(data, max_pixels=None, raise_errors=False):
    """Encoded image bytes (or a uint8 array of them) -> HWC uint8 RGB, or None when they do not decode.
    With ``raise_errors`` a ``DecodeError`` says why instead; its ``kind`` is "empty", "format",
    "pixels", "truncated" or "corrupt".

    Nothing is decoded before two checks: the pixel count read from the header (JPEG and PNG parsed
    here, other formats through PIL's lazy open) must not exceed ``max_pixels`` (None: PIL's
    ``Image.MAX_IMAGE_PIXELS``, 89.5 MP by default; 0: no limit), so a decompression bomb is refused
    at the cost of reading its header; and a JPEG must reach its end-of-image marker (walked segment
    by segment, so data appended after it, such as a motion photo's video, is fine), because OpenCV
    4.x decodes a truncated baseline JPEG partially, grey below the cut, without an error."""
    import io

    from PIL import Image

    def fail(kind, message):
        if not raise_errors:
            return None
        err = DecodeError(message)
        err.kind = kind
        raise err

    if isinstance(data, np.ndarray):
        raw = data.tobytes()
    elif isinstance(data, (bytearray, memoryview)):
        raw = bytes(data)
    else:
        raw = data
    n = len(raw)
    if n == 0:
        return fail("empty", "empty image data")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    fmt, size, complete = None, None, True
    if raw[:3] == b"\xff\xd8\xff":
        fmt, complete, pos = "JPEG", False, 2
        while pos < n:
            if raw[pos] != 0xFF:  # extraneous bytes before a marker: skipped, as libjpeg does
                pos = raw.find(b"\xff", pos)
                if pos < 0:
                    break
            while pos < n and raw[pos] == 0xFF:  # fill bytes
                pos += 1
            if pos >= n:
                break
            marker = raw[pos]
            pos += 1
            if marker == 0xD9:  # end of image
                complete = True
                break
            if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
                continue
            if pos + 2 > n:
                break
            end = pos + ((raw[pos] << 8) | raw[pos + 1])
            if end < pos + 2:
                return fail("corrupt", f"corrupt JPEG: segment of negative length at byte {pos}")
            if end > n:
                break
            if size is None and 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and end - pos >= 7:
                size = ((raw[pos + 5] << 8) | raw[pos + 6], (raw[pos + 3] << 8) | raw[pos + 4])  # SOFn: W, H
            pos = end
            if marker == 0xDA:  # start of scan: entropy-coded data runs to the next real marker
                while True:
                    j = raw.find(b"\xff", pos)
                    if j < 0 or j + 1 >= n:
                        pos = n
                        break
                    nxt = raw[j + 1]
                    if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:  # stuffed 0xFF or restart marker
                        pos = j + 2
                    elif nxt == 0xFF:
                        pos = j + 1
                    else:
                        pos = j
                        break
    elif raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR" and n >= 24:
        fmt, size = "PNG", (int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big"))
    else:
        try:
            with Image.open(io.BytesIO(raw)) as im:
                fmt, size = im.format, im.size
        except Image.DecompressionBombError:
            return fail("pixels", f"image has more than {2 * Image.MAX_IMAGE_PIXELS} pixels (PIL's bomb limit)")
        except Exception:
            return fail("format", f"not a decodable image (unrecognised format, first bytes {raw[:8]!r})")
    if size is not None and limit and size[0] * size[1] > limit:
        return fail("pixels", f"{fmt} image of {size[0]}x{size[1]} = {size[0] * size[1]} pixels is over the "
                              f"limit of {limit} pixels")
    if not complete:
        return fail("truncated", f"truncated JPEG: the data ({n} bytes) ends before the end-of-image marker")
    img = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return fail("corrupt", f"not a decodable {fmt} image" if fmt else "not a decodable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_rgb(path):
    """HWC uint8 RGB, or None when the file cannot be decoded."""
    return decode_rgb(np.fromfile(path, dtype=np.uint8))


class Preprocess:
    """The given ops (without DecodeImage); the result is laid out CHW float32."""

    def __init__(self, transform_ops):
        self.ops = create_operators([op for op in transform_ops if "DecodeImage" not in op], "PreProcess.transform_ops")
        # the ops say whether they end channel-first, as in the datasets: from the shape alone an HWC image
        # 3 or 4 pixels high cannot be told from a CHW one
        self.chw = any(isinstance(op, ToCHWImage) or (isinstance(op, NormalizeImage) and op.chw) for op in self.ops)

    def __call__(self, img):
        for op in self.ops:
            img = op(img)
        if not self.chw and img.ndim == 3:
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


class SavePreLabel:
    """PostProcess.SavePreLabel of PaddleClas's deploy config: each image is copied into
    ``save_dir/<top-1 class id>/``, pre-sorting a folder for labelling."""

    def __init__(self, save_dir=None):
        if not save_dir:
            raise ConfigError("PostProcess.SavePreLabel.save_dir: required (the folder to sort the images into)")
        self.save_dir = save_dir

    def __call__(self, results):
        import shutil
        for r in results:
            folder = os.path.join(self.save_dir, str(r["class_ids"][0]))
            os.makedirs(folder, exist_ok=True)
            shutil.copy(r["file_name"], folder)


def result_savers(post_cfg):
    """The deploy config's PostProcess entries that act after Topk (SavePreLabel); the others PaddleClas
    has (attribute and multi-label outputs) do not apply to the single-label classifiers here."""
    savers = []
    for name, kwargs in (post_cfg or {}).items():
        if name in ("main_indicator", "Topk"):
            continue
        if name == "SavePreLabel":
            savers.append(SavePreLabel(**(kwargs or {})))
        else:
            from ..utils.logger import logger
            logger.warning(f"PostProcess.{name}: not applicable to the single-label classifiers here; "
                           "only Topk and SavePreLabel run")
    delimiter = ((post_cfg or {}).get("Topk") or {}).get("delimiter")
    if delimiter not in (None, " "):
        raise ConfigError(f"PostProcess.Topk.delimiter: {delimiter!r}: label files are read as 'id name' lines "
                          "split at the first space")
    return savers


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
