"""Per-image operators with PaddleClas's names and arguments.

Images travel as HWC uint8 RGB numpy arrays until ``NormalizeImage``; randomness comes from Python's
``random`` module and numpy's global generator, both seeded per worker by the data loader.
"""
import math
import random

import cv2
import numpy as np

from ...utils.errors import ConfigError
from .registry import register_op

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "linear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4, "random": None,
}


def interpolation_flag(value, where):
    """cv2 flag from a name ('bicubic') or a cv2 integer code (release/2.0 configs use 2 = bicubic)."""
    if value is None:
        return cv2.INTER_LINEAR
    if isinstance(value, bool):
        raise ConfigError(f"{where}.interpolation: expected a name or a cv2 code, got {value!r}")
    if isinstance(value, int):
        if value not in (0, 1, 2, 3, 4):
            raise ConfigError(f"{where}.interpolation: cv2 code must be 0..4, got {value}")
        return value
    key = str(value).lower()
    if key not in INTERPOLATIONS:
        from ...utils.errors import nearest
        hint = nearest(key, INTERPOLATIONS)
        raise ConfigError(f"{where}.interpolation: unknown '{value}'" + (f" (did you mean '{hint}'?)" if hint else ""))
    return INTERPOLATIONS[key]


BACKENDS = ("cv2", "pil")


def check_backend(backend, where):
    if backend not in BACKENDS:
        raise ConfigError(f"{where}.backend: 'cv2' or 'pil', got {backend!r}")
    return backend


def _pil_resample(interp):
    from PIL import Image
    return {cv2.INTER_NEAREST: Image.NEAREST, cv2.INTER_LINEAR: Image.BILINEAR, cv2.INTER_CUBIC: Image.BICUBIC,
            cv2.INTER_AREA: Image.BOX, cv2.INTER_LANCZOS4: Image.LANCZOS}[interp]


def _resize(img, w, h, interp, backend="cv2"):
    """cv2's resize, or PIL's (which filters over the whole source footprint when shrinking, as
    PaddleClas's and torchvision's PIL pipelines do)."""
    if interp is None:
        interp = random.choice((cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA,
                                cv2.INTER_LANCZOS4))
    if img.shape[1] == w and img.shape[0] == h:
        return img
    if backend == "pil":
        from PIL import Image
        return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((w, h), resample=_pil_resample(interp)))
    return cv2.resize(img, (w, h), interpolation=interp)


def parse_scale(value, where="NormalizeImage.scale"):
    """A number or a fraction string such as '1.0/255.0' (parsed, not evaluated)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        parts = value.split("/")
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            raise ConfigError(f"{where}: expected a number or 'a/b', got {value!r}") from None
        if len(nums) == 1:
            return nums[0]
        if len(nums) == 2 and nums[1] != 0:
            return nums[0] / nums[1]
    raise ConfigError(f"{where}: expected a number or 'a/b', got {value!r}")


class DecodeError(ValueError):
    """An image that cannot be decoded (the dataset skips or reports it)."""


@register_op
class DecodeImage:
    """Bytes -> HWC uint8 image. Grayscale, RGBA/LA, 16-bit and CMYK files all become 3-channel 8-bit.

    ``reduce``: 1, 2, 4 or 8 decodes JPEGs at reduced resolution (free for random-resized crops of
    large photos); the default 1 decodes at full size as PaddleClas does.
    """

    def __init__(self, to_rgb=True, channel_first=False, to_np=True, backend="cv2", reduce=1):
        self.to_rgb = to_rgb
        self.channel_first = channel_first
        if not to_np:
            from ...utils.config import warn_compat
            warn_compat("DecodeImage.to_np", "images always travel as numpy arrays here")
        self.backend = check_backend(backend, "DecodeImage")
        flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}
        if reduce not in flags or (backend == "pil" and reduce != 1):
            raise ConfigError(f"DecodeImage.reduce: 1, 2, 4 or 8 (1 with backend pil), got {reduce!r}")
        self.flag = flags[reduce]

    def _decode_pil(self, buf):
        import io

        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(io.BytesIO(buf.tobytes())) as im:
                img = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DecodeError(f"not a decodable image ({e})") from None
        return img if self.to_rgb else np.ascontiguousarray(img[:, :, ::-1])

    def __call__(self, data):
        if isinstance(data, np.ndarray) and data.ndim == 3:
            img = data  # already decoded
        else:
            buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
            if buf is None or buf.size == 0:
                raise DecodeError("empty file")
            if self.backend == "pil":
                img = self._decode_pil(buf)
            else:
                img = cv2.imdecode(buf, self.flag)
                if img is None:
                    raise DecodeError("not a decodable image")
                if self.to_rgb:
                    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if self.channel_first:
            img = img.transpose((2, 0, 1))
        return img


@register_op
class RandCropImage:
    """Random-resized crop: area fraction uniform in ``scale``, aspect ratio in ``ratio`` (PaddleClas
    sampling: the ratio's square root scales width up and height down, the area is bounded so the crop
    fits), then one resize to ``size``."""

    def __init__(self, size, scale=None, ratio=None, interpolation=None, use_log_aspect=False, backend="cv2"):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scale = tuple(scale) if scale is not None else (0.08, 1.0)
        self.ratio = tuple(ratio) if ratio is not None else (3.0 / 4.0, 4.0 / 3.0)
        self.interp = interpolation_flag(interpolation, "RandCropImage")
        self.use_log_aspect = use_log_aspect
        self.backend = check_backend(backend, "RandCropImage")

    def __call__(self, img):
        img_h, img_w = img.shape[:2]
        if self.use_log_aspect:
            ar = math.exp(random.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        else:
            ar = random.uniform(*self.ratio)
        sr = math.sqrt(ar)
        fw, fh = sr, 1.0 / sr
        bound = min((img_w / img_h) / (fw * fw), (img_h / img_w) / (fh * fh))
        lo, hi = min(self.scale[0], bound), min(self.scale[1], bound)
        side = math.sqrt(img_w * img_h * random.uniform(lo, hi))
        w = max(1, min(img_w, int(side * fw)))
        h = max(1, min(img_h, int(side * fh)))
        x = random.randint(0, img_w - w)
        y = random.randint(0, img_h - h)
        return _resize(img[y:y + h, x:x + w], self.size[0], self.size[1], self.interp, self.backend)


@register_op
class RandFlipImage:
    """Flip with probability 0.5 (flip_code 1: horizontal, 0: vertical, -1: both)."""

    def __init__(self, flip_code=1):
        if flip_code not in (-1, 0, 1):
            raise ConfigError(f"RandFlipImage.flip_code: -1, 0 or 1, got {flip_code!r}")
        self.flip_code = flip_code

    def __call__(self, img):
        if random.randint(0, 1) == 1:
            if self.flip_code == 1:
                return img[:, ::-1]
            if self.flip_code == 0:
                return img[::-1]
            return img[::-1, ::-1]
        return img


@register_op
class ResizeImage:
    """Resize the short side to ``resize_short`` (keeping the aspect ratio), or to ``size``."""

    def __init__(self, size=None, resize_short=None, interpolation=None, backend="cv2"):
        if (size is None) == (resize_short is None):
            raise ConfigError("ResizeImage: give exactly one of size or resize_short")
        if resize_short is not None and (not isinstance(resize_short, int) or resize_short <= 0):
            raise ConfigError(f"ResizeImage.resize_short: positive int, got {resize_short!r}")
        self.size = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
        self.resize_short = resize_short
        self.interp = interpolation_flag(interpolation, "ResizeImage")
        self.backend = check_backend(backend, "ResizeImage")

    def __call__(self, img):
        h, w = img.shape[:2]
        if self.resize_short is not None:
            percent = self.resize_short / min(w, h)
            nw, nh = int(round(w * percent)), int(round(h * percent))
        else:
            nw, nh = self.size
        return _resize(img, nw, nh, self.interp, self.backend)


@register_op
class CropImage:
    """Centre crop to ``size`` (int or [w, h])."""

    def __init__(self, size):
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, img):
        w, h = self.size
        img_h, img_w = img.shape[:2]
        if img_h < h or img_w < w:
            raise DecodeError(f"image {img_w}x{img_h} is smaller than the crop {w}x{h}")
        x = (img_w - w) // 2
        y = (img_h - h) // 2
        return img[y:y + h, x:x + w]


@register_op
class PadRandCropImage:
    """Zero-pad by ``padding`` on every side, then take a random ``size`` crop (the CIFAR augmentation)."""

    def __init__(self, size=32, padding=4, fill=0):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.padding = int(padding)
        self.fill = fill

    def __call__(self, img):
        p = self.padding
        if p > 0:
            img = cv2.copyMakeBorder(np.ascontiguousarray(img), p, p, p, p, cv2.BORDER_CONSTANT,
                                     value=(self.fill,) * 3)
        h, w = img.shape[:2]
        cw, ch = self.size
        x = random.randint(0, w - cw)
        y = random.randint(0, h - ch)
        return img[y:y + ch, x:x + cw]


@register_op
class NormalizeImage:
    """(img * scale - mean) / std in float32, fused into one multiply-add per pixel; ``order: chw``
    also lays the result out as CHW."""

    def __init__(self, scale=None, mean=None, std=None, order="chw", channel_num=3, output_fp16=False):
        scale = parse_scale(1.0 / 255.0 if scale is None else scale)
        mean = np.array(mean if mean is not None else [0.485, 0.456, 0.406], dtype=np.float32)
        std = np.array(std if std is not None else [0.229, 0.224, 0.225], dtype=np.float32)
        if order not in ("chw", "hwc", ""):
            raise ConfigError(f"NormalizeImage.order: 'chw', 'hwc' or '', got {order!r}")
        if channel_num not in (3, 4):
            raise ConfigError(f"NormalizeImage.channel_num: 3 or 4, got {channel_num!r}")
        self.chw = order == "chw"
        self.channel_num = channel_num
        self.dtype = np.float16 if output_fp16 else np.float32
        # (x * scale - mean) / std == x * alpha + beta
        self.alpha = (scale / std).astype(np.float32)
        self.beta = (-mean / std).astype(np.float32)

    def __call__(self, img):
        if img.ndim != 3 or img.shape[2] != 3:
            raise DecodeError(f"NormalizeImage expects an HWC 3-channel image, got shape {img.shape}")
        out = img.astype(np.float32) * self.alpha + self.beta
        if self.channel_num == 4:
            out = np.concatenate([out, np.zeros(out.shape[:2] + (1,), np.float32)], axis=2)
        if self.chw:
            out = out.transpose((2, 0, 1))
        return np.ascontiguousarray(out, dtype=self.dtype)


@register_op
class ToCHWImage:
    def __init__(self):
        pass

    def __call__(self, img):
        return np.ascontiguousarray(img.transpose((2, 0, 1)))
