"""The exact answer (status, metrics kind, message) of each request error in ppcls.serving.inputs, which the
property tests in tests/test_properties.py check only loosely; found by mutation testing
(bash tests/mutation.sh serving/inputs.py)."""
import base64
import json

import cv2
import numpy as np
import pytest

from ppcls.data.preprocess.ops import DecodeError
from ppcls.serving import inputs
from ppcls.serving.inputs import JSON_FORM, RequestError, b64decode, decode_image, parse_json_images

PNG = cv2.imencode(".png", np.full((6, 6, 3), 128, np.uint8))[1].tobytes()


def b64(data):
    return base64.b64encode(data).decode()


def refused(call, *args):
    with pytest.raises(RequestError) as e:
        call(*args)
    return e.value.status, e.value.kind, e.value.message


def body(doc):
    return json.dumps(doc).encode()


def test_a_json_body_gives_its_images_in_order_up_to_the_limit():
    out = parse_json_images(body({"images": [b64(b"one"), b64(b"two")], "top_k": 3}), max_images=2)
    assert out == [b"one", b"two"]


@pytest.mark.parametrize("doc,expected", [
    (b"{not json", (400, "bad_json", "the body is not valid JSON (JSONDecodeError: ")),
    (body([1]), (422, "bad_request", "the JSON body has no 'images' key; ")),
    (body({"image": ["QUJD"]}), (422, "bad_request", "the JSON body has no 'images' key; ")),
    (body({"images": "QUJD"}), (422, "bad_request", "'images' must be a non-empty list of base64 strings; ")),
    (body({"images": []}), (422, "bad_request", "'images' must be a non-empty list of base64 strings; ")),
])
def test_body_errors(doc, expected):
    status, kind, message = refused(parse_json_images, doc, 4)
    assert (status, kind) == expected[:2]
    assert message.startswith(expected[2]) and message.endswith(JSON_FORM)


def test_too_many_images():
    assert refused(parse_json_images, body({"images": ["QUJD"] * 3}), 2) == (
        413, "too_many_images", "the request has 3 images, more than the limit of 2")


def test_a_bad_image_is_named_by_its_index():
    assert refused(parse_json_images, body({"images": ["QUJD", 7]}), 4) == (
        422, "bad_request", "images[1]: expected a base64 string, got int")
    assert refused(parse_json_images, body({"images": ["QUJD", "!!"]}), 4)[2].startswith("images[1]: not valid base64")


def test_data_urls():
    assert b64decode("data:image/png;base64," + b64(b"ABC"), "images[0]") == b"ABC"
    bad_url = (400, "bad_base64", "images[0]: a data URL must be data:<type>;base64,<data>")
    assert refused(b64decode, "data:image/png," + b64(b"ABC"), "images[0]") == bad_url  # not base64-encoded
    assert refused(b64decode, "data:image/png;base64", "images[0]") == bad_url  # no comma
    # the data starts at the first comma: a second one is bad base64, not a bad header
    status, kind, message = refused(b64decode, "data:image/png;base64,QUJD,REVG", "images[3]")
    assert (status, kind) == (400, "bad_base64") and message.startswith("images[3]: not valid base64")


def test_a_decode_error_without_a_kind_is_corrupt(monkeypatch):
    def fail(*args, **kwargs):
        raise DecodeError("broken stream")
    monkeypatch.setattr(inputs, "decode_rgb", fail)
    assert refused(decode_image, PNG, lambda img: img, [6, 6, 3], 10 ** 6, "images[0]") == (
        400, "corrupt", "images[0]: broken stream")


def test_a_preprocess_failure_is_a_400_naming_the_error():
    def preprocess(img):
        raise ValueError("crop larger than the image")
    assert refused(decode_image, PNG, preprocess, [3, 4, 4], 10 ** 6, "images[2]") == (
        400, "preprocess", "images[2]: cannot be preprocessed (ValueError: crop larger than the image)")


def test_a_preprocess_of_the_wrong_shape_is_a_500_naming_both_shapes():
    assert refused(decode_image, PNG, lambda img: img.transpose(2, 0, 1), [3, 4, 4], 10 ** 6, "images[0]") == (
        500, "preprocess", "images[0]: preprocessed to [3, 6, 6] but the model expects [3, 4, 4]; "
                           "check PreProcess of the deploy config")


def test_the_model_input_is_contiguous_float32():
    x = decode_image(PNG, lambda img: img.transpose(2, 0, 1).astype(np.float64), [3, 6, 6], 10 ** 6, "images[0]")
    assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"] and x.shape == (3, 6, 6)
