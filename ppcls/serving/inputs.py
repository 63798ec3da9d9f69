"""Request bodies -> encoded images -> preprocessed arrays, every failure a ``RequestError`` with an
HTTP status, a metrics kind and a one-line message naming the culprit (``images[3]: ...``)."""
import base64
import binascii
import json

import cv2
import numpy as np

from ..data.preprocess.ops import DecodeError
from ..inference.pipeline import decode_rgb

JSON_FORM = 'send {"images": ["<base64>", ...]}'


class RequestError(Exception):
    def __init__(self, status, kind, message):
        super().__init__(" ".join(str(message).split()))
        self.status = status
        self.kind = kind
        self.message = str(self)


def parse_json_images(body, max_images):
    """The encoded images of a hubserving-style JSON body ``{"images": ["<base64>", ...]}``; other
    keys (hubserving clients also send ``top_k``) are ignored: top-k is the deploy config's."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestError(400, "bad_json", f"the body is not valid JSON ({type(e).__name__}: {e}); {JSON_FORM}") from None
    if not isinstance(doc, dict) or "images" not in doc:
        raise RequestError(422, "bad_request", f"the JSON body has no 'images' key; {JSON_FORM}")
    items = doc["images"]
    if not isinstance(items, list) or not items:
        raise RequestError(422, "bad_request", f"'images' must be a non-empty list of base64 strings; {JSON_FORM}")
    if len(items) > max_images:
        raise RequestError(413, "too_many_images", f"the request has {len(items)} images, more than the limit of {max_images}")
    return [b64decode(s, f"images[{i}]") for i, s in enumerate(items)]


def b64decode(text, where):
    if not isinstance(text, str):
        raise RequestError(422, "bad_request", f"{where}: expected a base64 string, got {type(text).__name__}")
    if text.startswith("data:"):  # a data URL: data:image/jpeg;base64,....
        head, sep, rest = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise RequestError(400, "bad_base64", f"{where}: a data URL must be data:<type>;base64,<data>")
        text = rest
    text = "".join(text.split())  # line-wrapped (MIME) base64
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(400, "bad_base64", f"{where}: not valid base64 ({e})") from None
    if not data:
        raise RequestError(400, "empty", f"{where}: empty image")
    return data


def decode_image(data, preprocess, input_shape, max_pixels, where):
    """Encoded bytes -> the model's CHW float32 input, decoded by the same function as predict_cls.py."""
    try:
        img = decode_rgb(data, max_pixels=max_pixels, raise_errors=True)
    except DecodeError as e:
        kind = getattr(e, "kind", "corrupt")
        raise RequestError(413 if kind == "pixels" else 400, kind, f"{where}: {e}") from None
    try:
        x = preprocess(img)
    except (DecodeError, cv2.error, ValueError) as e:
        raise RequestError(400, "preprocess", f"{where}: cannot be preprocessed ({type(e).__name__}: {e})") from None
    if list(x.shape) != list(input_shape):
        raise RequestError(500, "preprocess", f"{where}: preprocessed to {list(x.shape)} but the model expects "
                                              f"{list(input_shape)}; check PreProcess of the deploy config")
    return np.ascontiguousarray(x, dtype=np.float32)
