"""ppcls.inference.pipeline behaviour that tools/infer.py and the deploy predictor rely on, tested in-process
(found open by mutation testing, bash tests/mutation.sh inference/pipeline.py: the tests that run the tools in
subprocesses exercise it too, but mutmut only learns which tests call a function from calls in its own
process): which images a path names, the layout and values preprocessing gives, the top-k results and how
they print, the PostProcess savers, batching with unreadable files skipped."""
import os

import cv2
import numpy as np
import pytest

from ppcls.data.preprocess.ops import DecodeError
from ppcls.inference import pipeline
from ppcls.utils.errors import ConfigError


def write_image(path, img):
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def test_list_images_walks_a_folder_in_order_and_keeps_image_files_only(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    for rel in ("b/2.png", "b/1.JPG", "a/z.jpeg", "top.bmp", "a/notes.txt", "a/x.jpg.txt"):
        if rel.endswith("txt"):
            (tmp_path / rel).write_text("x")
        else:
            write_image(tmp_path / rel, img)
    want = [str(tmp_path / r) for r in ("top.bmp", "a/z.jpeg", "b/1.JPG", "b/2.png")]
    assert pipeline.list_images(str(tmp_path)) == want
    assert pipeline.list_images(str(tmp_path), limit=2) == want[:2]
    assert pipeline.list_images(str(tmp_path / "top.bmp")) == [str(tmp_path / "top.bmp")]
    assert pipeline.list_images(str(tmp_path / "a/notes.txt")) == [str(tmp_path / "a/notes.txt")]  # named: taken


def test_list_images_errors_name_the_key_and_the_path(tmp_path):
    with pytest.raises(ConfigError) as e:
        pipeline.list_images("")
    assert str(e.value) == "infer_imgs: required (an image file or a folder)"
    with pytest.raises(ConfigError) as e:
        pipeline.list_images(str(tmp_path / "nope"))
    assert str(e.value) == f"infer_imgs: not found: {tmp_path / 'nope'}"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError) as e:
        pipeline.list_images(str(tmp_path))
    assert str(e.value) == f"infer_imgs: no images in {tmp_path}"


def test_read_rgb_gives_rgb_and_none_for_what_does_not_decode(tmp_path):
    img = np.zeros((5, 7, 3), np.uint8)
    img[..., 0] = 200  # red
    write_image(tmp_path / "red.png", img)
    got = pipeline.read_rgb(str(tmp_path / "red.png"))
    assert got.shape == (5, 7, 3) and got.dtype == np.uint8 and np.array_equal(got, img)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    assert pipeline.read_rgb(str(tmp_path / "bad.jpg")) is None
    assert pipeline.decode_rgb(bytearray(cv2.imencode(".png", img)[1].tobytes())).shape == (5, 7, 3)
    assert pipeline.decode_rgb(memoryview(cv2.imencode(".png", img)[1].tobytes()))[0, 0, 2] == 200  # BGR in, RGB out


def test_decode_errors_say_what_is_wrong():
    rng = np.random.RandomState(0)
    img = (rng.rand(16, 24, 3) * 255).astype(np.uint8)
    png = cv2.imencode(".png", img)[1].tobytes()
    assert pipeline.decode_rgb(png, max_pixels=0).shape == (16, 24, 3)  # 0: no limit
    with pytest.raises(DecodeError) as e:
        pipeline.decode_rgb(png, max_pixels=16 * 24 - 1, raise_errors=True)
    assert str(e.value) == f"PNG image of 24x16 = {16 * 24} pixels is over the limit of {16 * 24 - 1} pixels"
    assert e.value.kind == "pixels"
    assert pipeline.decode_rgb(png, max_pixels=16 * 24 - 1) is None
    with pytest.raises(DecodeError) as e:
        pipeline.decode_rgb(b"hello", raise_errors=True)
    assert str(e.value) == "not a decodable image (unrecognised format, first bytes b'hello')" and e.value.kind == "format"
    with pytest.raises(DecodeError) as e:
        pipeline.decode_rgb(b"", raise_errors=True)
    assert str(e.value) == "empty image data" and e.value.kind == "empty"
    # a PNG whose header is fine and whose data is not: cv2 cannot decode it
    broken = png[:33] + b"\x00" * (len(png) - 33)
    with pytest.raises(DecodeError) as e:
        pipeline.decode_rgb(broken, raise_errors=True)
    assert str(e.value) == "not a decodable PNG image" and e.value.kind == "corrupt"
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    with pytest.raises(DecodeError) as e:
        pipeline.decode_rgb(jpeg[:-2], raise_errors=True)
    assert str(e.value) == (f"truncated JPEG: the data ({len(jpeg) - 2} bytes) ends before the end-of-image "
                            "marker") and e.value.kind == "truncated"


def test_preprocess_lays_images_out_chw_float32_whatever_the_ops_end_with():
    img = (np.random.RandomState(0).rand(3, 5, 3) * 255).astype(np.uint8)  # 3 pixels high: not told by shape
    norm = {"scale": 1.0 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    want = ((img / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    for ops in ([{"DecodeImage": {"to_rgb": True}}, {"NormalizeImage": dict(norm, order="hwc")}],  # ends HWC
                [{"NormalizeImage": dict(norm, order="hwc")}, {"ToCHWImage": None}],
                [{"NormalizeImage": dict(norm, order="chw")}]):
        pre = pipeline.Preprocess(ops)
        out = pre(img)
        assert out.shape == (3, 3, 5) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"], ops
        np.testing.assert_allclose(out, want, atol=1e-6)
    assert pipeline.Preprocess([{"NormalizeImage": dict(norm, order="hwc")}]).chw is False
    assert pipeline.Preprocess([{"ToCHWImage": None}]).chw is True
    # a grey (2-D) image stays as it is, as float32
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = pipeline.Preprocess([{"ResizeImage": {"size": [3, 2]}}])(grey)
    assert out.shape == (2, 3) and out.dtype == np.float32


def test_topk_orders_by_score_keeps_ties_in_class_order_and_names_labels():
    probs = np.array([[0.1, 0.4, 0.4, 0.1], [0.7, 0.1, 0.15, 0.05]], np.float32)
    out = pipeline.Topk(topk=3, label_list=["cat", "dog"])(probs, ["a.jpg", "b.jpg"])
    assert out == [{"class_ids": [1, 2, 0], "scores": [0.4, 0.4, 0.1], "file_name": "a.jpg",
                    "label_names": ["dog", "", "cat"]},
                   {"class_ids": [0, 2, 1], "scores": [0.7, 0.15, 0.1], "file_name": "b.jpg",
                    "label_names": ["cat", "", "dog"]}]
    # k larger than the classes: all of them; no labels: empty names; scores rounded to 5 decimals
    out = pipeline.Topk(topk="10")(np.array([[0.123456789, 0.876543211]]), ["c.jpg"])
    assert out == [{"class_ids": [1, 0], "scores": [0.87654, 0.12346], "file_name": "c.jpg", "label_names": ["", ""]}]
    assert pipeline.Topk(topk=1)(probs, ["a", "b"])[1]["class_ids"] == [0]


def test_topk_softmaxes_logits_when_asked():
    logits = np.array([[1000.0, 1001.0, 999.0]])  # large: the max is subtracted first, or exp overflows
    out = pipeline.Topk(topk=3, apply_softmax=True)(logits, ["x"])[0]
    e = np.exp(np.array([0.0, 1.0, -1.0]))
    assert out["class_ids"] == [1, 0, 2]
    assert out["scores"] == [round(float(v), 5) for v in sorted(e / e.sum(), reverse=True)]
    assert pipeline.Topk(topk=3)(logits, ["x"])[0]["scores"] == [1001.0, 1000.0, 999.0]


def test_format_result_is_the_line_predict_cls_prints():
    r = {"file_name": "d/a.jpg", "class_ids": [3, 1], "scores": [0.91234, 0.05], "label_names": ["cat", ""]}
    assert pipeline.format_result(r) == ("d/a.jpg:\tclass id(s): [3, 1], score(s): [0.91, 0.05], "
                                         "label_name(s): ['cat', '']")


def test_save_pre_label_sorts_images_into_top1_folders(tmp_path):
    with pytest.raises(ConfigError) as e:
        pipeline.SavePreLabel()
    assert str(e.value) == "PostProcess.SavePreLabel.save_dir: required (the folder to sort the images into)"
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (src / name).write_bytes(name.encode())
    out = tmp_path / "sorted"
    pipeline.SavePreLabel(save_dir=str(out))([{"file_name": str(src / "a.jpg"), "class_ids": [2, 0]},
                                              {"file_name": str(src / "b.jpg"), "class_ids": [0, 2]},
                                              {"file_name": str(src / "c.jpg"), "class_ids": [2]}])
    assert sorted(os.listdir(out)) == ["0", "2"]
    assert sorted(os.listdir(out / "2")) == ["a.jpg", "c.jpg"] and os.listdir(out / "0") == ["b.jpg"]
    assert (out / "2" / "a.jpg").read_bytes() == b"a.jpg"


def test_result_savers_build_save_pre_label_and_warn_about_the_rest(tmp_path, ppcls_warnings):
    assert pipeline.result_savers(None) == []
    assert pipeline.result_savers({"main_indicator": "Topk", "Topk": {"topk": 5, "delimiter": " "}}) == []
    savers = pipeline.result_savers({"Topk": {"topk": 1}, "SavePreLabel": {"save_dir": str(tmp_path)},
                                     "MultiLabelThreshOutput": {"threshold": 0.5}})
    assert len(savers) == 1 and isinstance(savers[0], pipeline.SavePreLabel) and savers[0].save_dir == str(tmp_path)
    assert ppcls_warnings == ["PostProcess.MultiLabelThreshOutput: not applicable to the single-label classifiers "
                              "here; only Topk and SavePreLabel run"]
    with pytest.raises(ConfigError, match="PostProcess.SavePreLabel.save_dir: required"):
        pipeline.result_savers({"SavePreLabel": None})
    with pytest.raises(ConfigError) as e:
        pipeline.result_savers({"Topk": {"delimiter": ","}})
    assert str(e.value) == ("PostProcess.Topk.delimiter: ',': label files are read as 'id name' lines split at the "
                            "first space")


def test_load_batches_fills_batches_and_reports_each_skipped_file(tmp_path):
    files = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        write_image(path, np.full((2, 2, 3), i, np.uint8))
        files.append(str(path))
    (tmp_path / "bad.jpg").write_bytes(b"broken")
    files.insert(2, str(tmp_path / "bad.jpg"))

    def preprocess(img):
        if img[0, 0, 0] == 3:
            raise DecodeError("image 3 is refused by an op")
        return img.transpose(2, 0, 1).astype(np.float32)
    skipped = []
    batches = list(pipeline.load_batches(files, preprocess, 2, lambda f, why: skipped.append((f, why))))
    assert [names for _, names in batches] == [[files[0], files[1]], [files[3], files[5]]]
    assert [b.shape for b, _ in batches] == [(2, 3, 2, 2), (2, 3, 2, 2)]
    assert [float(b[i, 0, 0, 0]) for b, _ in batches for i in range(2)] == [0, 1, 2, 4]
    assert skipped == [(files[2], "not a decodable image"), (files[4], "image 3 is refused by an op")]
    batches = list(pipeline.load_batches(files[:2], preprocess, 3, lambda f, why: None))
    assert len(batches) == 1 and batches[0][1] == files[:2] and batches[0][0].shape == (2, 3, 2, 2)
    assert list(pipeline.load_batches([], preprocess, 2, None)) == []


def test_topk_softmax_and_ties_hold_per_image_in_a_batch():
    logits = np.array([[0.0, 2.0, 1.0], [5.0, 5.0, -1.0]])
    out = pipeline.Topk(topk=2, apply_softmax=True)(logits, ["a", "b"])
    for row, r in zip(logits, out):
        e = np.exp(row - row.max())
        p = e / e.sum()
        assert r["scores"] == [round(float(p[i]), 5) for i in r["class_ids"]]
    assert out[0]["class_ids"] == [1, 2] and out[1]["class_ids"] == [0, 1]
    # equal scores over many classes (where numpy's default sort is not stable): the lower class id first
    flat = np.full((1, 100), 0.01)
    flat[0, [17, 42, 90]] = 0.2
    assert pipeline.Topk(topk=5)(flat, ["c"])[0]["class_ids"] == [17, 42, 90, 0, 1]


def jpeg_bytes():
    img = (np.random.RandomState(3).rand(40, 48, 3) * 255).astype(np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_jpeg_headers_are_walked_as_libjpeg_walks_them():
    data = jpeg_bytes()
    ref = pipeline.decode_rgb(data)
    assert ref.shape == (40, 48, 3)
    # an empty segment (length 2) and a marker without a length (RST) before the frame are fine
    for extra in (b"\xff\xfe\x00\x02", b"\xff\xd0"):
        with_extra = data[:2] + extra + data[2:]
        assert pipeline.decode_rgb(with_extra, raise_errors=True) is not None, extra
    # a segment claiming less than its own length field is corrupt
    with pytest.raises(DecodeError) as e:
        pipeline.decode_rgb(data[:2] + b"\xff\xfe\x00\x01" + data[2:], raise_errors=True)
    assert str(e.value) == "corrupt JPEG: segment of negative length at byte 4" and e.value.kind == "corrupt"
    # data that ends in fill bytes, or right after a 0xFF inside the scan, is truncated (never an IndexError)
    scan = data.index(b"\xff\xda")
    for cut in (data[:2] + b"\xff\xff", data[:scan + 40] + b"\xff"):
        with pytest.raises(DecodeError) as e:
            pipeline.decode_rgb(cut, raise_errors=True)
        assert e.value.kind == "truncated"


def test_segment_lengths_over_255_are_skipped_whole():
    """Comments whose bodies hold end-of-image bytes: only a walk that skips each whole segment, by its
    16-bit length, sees that the image after them is cut short."""
    data = jpeg_bytes()
    eoi = b"\xff\xd9" * 0x200
    comments = b"\xff\xfe\x01\x30" + eoi[:0x130 - 2] + b"\xff\xfe\x02\x00" + eoi[:0x200 - 2]
    cut = data[:2] + comments + data[2:-100]
    assert pipeline.decode_rgb(cut) is None
    with pytest.raises(DecodeError, match="truncated JPEG"):
        pipeline.decode_rgb(cut, raise_errors=True)
    assert pipeline.decode_rgb(data[:2] + comments + data[2:]) is not None


def png_header(w, h):
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def test_sizes_are_read_from_all_four_header_bytes():
    w, h = (1 << 24) + 1, (1 << 24) + 2
    with pytest.raises(DecodeError) as e:
        pipeline.decode_rgb(png_header(w, h), max_pixels=10, raise_errors=True)
    assert str(e.value) == f"PNG image of {w}x{h} = {w * h} pixels is over the limit of 10 pixels"
    with pytest.raises(DecodeError) as e:
        pipeline.decode_rgb(b"hello, not an image", raise_errors=True)
    assert str(e.value) == "not a decodable image (unrecognised format, first bytes b'hello, n')"


def test_a_decompression_bomb_that_pil_refuses_says_so():
    import struct
    from PIL import Image
    w = h = 20000  # a BMP header claiming 400 million pixels: PIL refuses it when opening
    header = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 0, 0, 0, 0)
    with pytest.raises(DecodeError) as e:
        pipeline.decode_rgb(header, raise_errors=True)
    assert str(e.value) == f"image has more than {2 * Image.MAX_IMAGE_PIXELS} pixels (PIL's bomb limit)"
    assert e.value.kind == "pixels"
