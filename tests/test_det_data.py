"""The detection / segmentation demo data (digit canvases) and the COCO annotation check."""
import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ppcls.data.dataset.digit_canvas import make_digit_canvas_dataset, mask_to_polygons
from ppcls.utils.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_coco_check():
    # by path: ppcls/det/__init__.py imports PaddleDetection (checks its version, patches it), and the
    # check must run, and be tested, without it; under the module's own name, which mutation runs
    # (tests/mutation.sh) attribute the calls by
    spec = importlib.util.spec_from_file_location("ppcls.det.coco_check",
                                                  os.path.join(ROOT, "ppcls", "det", "coco_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_coco = _load_coco_check().check_coco
SMALL = dict(n_train=10, n_val=4, canvas=(96, 112), digits_per_image=(2, 4))


@pytest.fixture(scope="module")
def demo(module_tmp):
    root = module_tmp("digit_canvas")
    return make_digit_canvas_dataset(str(root), seed=3, **SMALL)


def _coco(demo, split="train"):
    with open(demo["det"]["ann_file"][split], encoding="utf-8") as f:
        return json.load(f)


def _label(demo, split, image):
    stem = os.path.splitext(image["file_name"])[0]
    return cv2.imread(os.path.join(demo["root"], "seg", "labels", split, stem + ".png"), cv2.IMREAD_UNCHANGED)


def _files(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


# -- the generator ------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    kw = dict(n_train=4, n_val=2, canvas=64, digits_per_image=(1, 3))
    make_digit_canvas_dataset(str(tmp_path / "a"), seed=7, **kw)
    make_digit_canvas_dataset(str(tmp_path / "b"), seed=7, **kw)
    make_digit_canvas_dataset(str(tmp_path / "c"), seed=8, **kw)
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert len(a) == (4 + 2) + 2 + 2 * (4 + 2) + 3  # jpgs, jsons, seg images + labels, 3 lists
    assert a == b
    assert a.keys() == c.keys() and a["annotations/instances_train.json"] != c["annotations/instances_train.json"]


def test_val_canvases_do_not_depend_on_the_train_count(tmp_path):
    make_digit_canvas_dataset(str(tmp_path / "a"), n_train=2, n_val=2, canvas=64, seed=0, kinds="seg")
    make_digit_canvas_dataset(str(tmp_path / "b"), n_train=5, n_val=2, canvas=64, seed=0, kinds="seg")
    assert _files(tmp_path / "a" / "seg" / "labels" / "val") == _files(tmp_path / "b" / "seg" / "labels" / "val")


def test_returned_paths_and_counts(demo):
    det, seg = demo["det"], demo["seg"]
    assert det["num_classes"] == 10 and seg["num_classes"] == 11
    for split, n in (("train", SMALL["n_train"]), ("val", SMALL["n_val"])):
        coco = _coco(demo, split)
        assert len(coco["images"]) == n == demo[split]
        assert len(coco["annotations"]) == demo["instances"][split]
        assert 2 * n <= len(coco["annotations"]) <= 4 * n
        assert os.path.join(det["dataset_dir"], det["anno_path"][split]) == det["ann_file"][split]
        for im in coco["images"]:
            assert os.path.isfile(os.path.join(det["dataset_dir"], det["image_dir"][split], im["file_name"]))
        with open(seg[f"{split}_path"], encoding="utf-8") as f:
            lines = f.read().splitlines()
        assert len(lines) == n
        for line in lines:
            img_rel, label_rel = line.split(" ")
            img = cv2.imread(os.path.join(seg["dataset_root"], img_rel))
            label = cv2.imread(os.path.join(seg["dataset_root"], label_rel), cv2.IMREAD_UNCHANGED)
            assert img.shape == (96, 112, 3) and label.shape == (96, 112) and label.dtype == np.uint8
    with open(seg["labels_txt"], encoding="utf-8") as f:
        assert f.read().split() == ["background"] + [str(d) for d in range(10)]
    assert [c["id"] for c in _coco(demo)["categories"]] == list(range(1, 11))
    assert [c["name"] for c in _coco(demo)["categories"]] == [str(d) for d in range(10)]


def test_boxes_and_areas_are_exact_to_the_label_pixels(demo):
    for split in ("train", "val"):
        coco = _coco(demo, split)
        for im in coco["images"]:
            label = _label(demo, split, im)
            assert set(np.unique(label)) <= set(range(11))
            anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
            # every labelled pixel belongs to exactly one annotation
            assert sum(a["area"] for a in anns) == int((label > 0).sum())
            for a in anns:
                x, y, w, h = a["bbox"]
                assert a["iscrowd"] == 0 and 1 <= a["category_id"] <= 10
                # digits are pasted with a gap, so the box's pixels of its class, one pixel around
                # included, are this digit's alone
                y0, x0 = max(0, y - 1), max(0, x - 1)
                ys, xs = np.nonzero(label[y0:y + h + 1, x0:x + w + 1] == a["category_id"])
                assert [xs.min() + x0, ys.min() + y0, xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] == [x, y, w, h]
                assert len(xs) == a["area"]


def test_polygons_rasterise_back_to_the_label_masks(demo):
    mask_util = pytest.importorskip("pycocotools.mask")
    worst = 1.0
    for split in ("train", "val"):
        coco = _coco(demo, split)
        for im in coco["images"]:
            label = _label(demo, split, im)
            for a in coco["annotations"]:
                if a["image_id"] != im["id"]:
                    continue
                x, y, w, h = a["bbox"]
                truth = np.zeros(label.shape, bool)
                truth[y:y + h, x:x + w] = label[y:y + h, x:x + w] == a["category_id"]
                rles = mask_util.frPyObjects(a["segmentation"], im["height"], im["width"])
                drawn = mask_util.decode(mask_util.merge(rles)).astype(bool)
                worst = min(worst, (drawn & truth).sum() / (drawn | truth).sum())
    assert worst > 0.99, worst


def test_polygons_keep_holes():
    mask_util = pytest.importorskip("pycocotools.mask")
    ring = np.zeros((20, 24), np.uint8)
    cv2.circle(ring, (11, 10), 8, 1, -1)
    cv2.circle(ring, (11, 10), 4, 0, -1)
    ring[2, 20] = 1  # a lone pixel: its own polygon
    polys = mask_to_polygons(ring.astype(bool))
    assert len(polys) == 2 and all(len(p) % 2 == 0 and len(p) >= 8 for p in polys)
    drawn = mask_util.decode(mask_util.merge(mask_util.frPyObjects(polys, 20, 24)))
    np.testing.assert_array_equal(drawn, ring)


def test_pycocotools_scores_the_ground_truth_as_perfect(demo, capsys):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO(demo["det"]["ann_file"]["val"])
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "segmentation": a["segmentation"], "score": 1.0} for a in gt.dataset["annotations"]]
    for iou_type in ("bbox", "segm"):
        ev = COCOeval(gt, gt.loadRes(json.loads(json.dumps(dets))), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert ev.stats[0] > 0.99, (iou_type, ev.stats[:3])


def test_bad_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="kinds: unknown 'coco'"):
        make_digit_canvas_dataset(str(tmp_path), n_train=1, n_val=0, kinds=("det", "coco"))
    with pytest.raises(ConfigError, match="digits_per_image"):
        make_digit_canvas_dataset(str(tmp_path), n_train=1, n_val=0, digits_per_image=(3, 1))
    with pytest.raises(ConfigError, match="canvas"):
        make_digit_canvas_dataset(str(tmp_path), n_train=1, n_val=0, canvas=8)


def test_cli_writes_the_dataset_and_rejects_bad_flags(tmp_path):
    tool = os.path.join(ROOT, "tools", "det", "make_demo_dataset.py")
    out = tmp_path / "d"
    r = subprocess.run([sys.executable, tool, "--out", str(out), "--train", "3", "--val", "1", "--size", "64",
                        "--kinds", "det"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "wrote 3 train and 1 val canvases" in r.stdout and "num_classes=10" in r.stdout
    assert (out / "annotations" / "instances_val.json").is_file() and not (out / "seg").exists()
    r = subprocess.run([sys.executable, tool, "--out", str(tmp_path / "e"), "--kinds", "det,masks"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: kinds: unknown 'masks'; choose from det, seg"]


# -- the COCO check -----------------------------------------------------------------------------------------
def _write(tmp_path, coco, name="ann.json", images=("a.jpg", "b.jpg")):
    img_dir = tmp_path / "img"
    img_dir.mkdir(exist_ok=True)
    for n in images:
        cv2.imwrite(str(img_dir / n), np.zeros((8, 8, 3), np.uint8))
    path = tmp_path / name
    if isinstance(coco, bytes):
        path.write_bytes(coco)
    else:
        path.write_text(coco if isinstance(coco, str) else json.dumps(coco))
    return str(path), str(img_dir)


def _valid():
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "b.jpg", "width": 50, "height": 50}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 30], "area": 600,
                             "iscrowd": 0},
                            {"id": 11, "image_id": 2, "category_id": 2, "bbox": [0, 0, 50, 50], "area": 2500,
                             "iscrowd": 0}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}


def _error(tmp_path, coco, with_images=True, **kw):
    path, img_dir = _write(tmp_path, coco)
    with pytest.raises(ConfigError) as e:
        check_coco(path, img_dir if with_images else None, **kw)
    msg = str(e.value)
    assert "\n" not in msg and path in msg
    return msg


def test_check_counts_the_generated_data(demo):
    for split in ("train", "val"):
        d = demo["det"]
        counts = check_coco(d["ann_file"][split], os.path.join(d["dataset_dir"], d["image_dir"][split]))
        assert counts == {"images": demo[split], "annotations": demo["instances"][split], "categories": 10,
                          "boxes": demo["instances"][split], "degenerate": 0, "ignored": 0, "crowd": 0,
                          "empty_images": 0}


def test_check_accepts_a_valid_file_and_names_the_config_key(tmp_path):
    path, img_dir = _write(tmp_path, _valid())
    assert check_coco(path, img_dir)["boxes"] == 2
    coco = _valid()
    coco["annotations"][0]["category_id"] = 3
    msg = _error(tmp_path, coco, where="TrainDataset.anno_path")
    assert msg.startswith(f"TrainDataset.anno_path: {path}: ")


@pytest.mark.parametrize("content, expected", [
    ("{'images': []}", "not a COCO annotation file: not JSON (Expecting property name enclosed in double quotes "
                       "at line 1 column 2)"),
    ("[1, 2]", "not a COCO annotation file: the top level is a list"),
    (b"\x89PNG\r\n\x1a\n\x00", "not a COCO annotation file: not UTF-8 text (invalid start byte at byte 0)"),
    ('{"images": [], "categories": []}', "not a COCO annotation file: no 'annotations'"),
    ('{"images": {}, "annotations": [], "categories": []}', "'images' is a dict, not a list"),
])
def test_check_rejects_what_is_not_coco(tmp_path, content, expected):
    assert expected in _error(tmp_path, content)


def test_check_rejects_a_missing_annotation_file(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path / 'none.json'}: annotation file not found"):
        check_coco(str(tmp_path / "none.json"))


def test_check_names_a_box_outside_its_image(tmp_path):
    coco = _valid()
    coco["annotations"][1]["bbox"] = [30, 0, 21.5, 50]
    msg = _error(tmp_path, coco)
    assert ("annotation id 11 (image id 2 ('b.jpg')): bbox [x, y, w, h] = [30, 0, 21.5, 50] lies outside the "
            "50x50 image (tolerance 1 px)") in msg
    coco["annotations"][1]["bbox"] = [30, 0, 20.5, 50]  # within the tolerance
    path, img_dir = _write(tmp_path, coco)
    assert check_coco(path, img_dir)["boxes"] == 2
    coco["annotations"][0]["bbox"] = [-2, 10, 20, 30]
    assert "annotation id 10 (image id 1 ('a.jpg'))" in _error(tmp_path, coco)


def test_check_names_a_category_absent_from_categories(tmp_path):
    coco = _valid()
    coco["annotations"][1]["category_id"] = 7
    msg = _error(tmp_path, coco)
    assert "annotation id 11 (image id 2 ('b.jpg')) has category_id 7, absent from 'categories' (ids 1..2)" in msg


def test_check_names_an_annotation_of_an_unlisted_image(tmp_path):
    coco = _valid()
    coco["annotations"][0]["image_id"] = 99
    coco["annotations"].append(dict(coco["annotations"][0], id=12))
    msg = _error(tmp_path, coco)
    assert "annotation id 10 refers to image id 99, which is not in 'images' (1 more like it)" in msg


def test_check_names_a_missing_image_file(tmp_path):
    path, img_dir = _write(tmp_path, _valid(), images=("a.jpg",))
    with pytest.raises(ConfigError) as e:
        check_coco(path, img_dir)
    assert str(e.value) == f"{path}: image file {os.path.join(img_dir, 'b.jpg')} of image id 2 not found"
    assert check_coco(path)["boxes"] == 2  # no image_dir: files are not looked for


def test_check_names_malformed_entries(tmp_path):
    coco = _valid()
    coco["annotations"][0]["bbox"] = [1, 2, 3]
    assert "annotation id 10 (image id 1 ('a.jpg')) has bbox [1, 2, 3], not four finite numbers" in \
        _error(tmp_path, coco)
    coco = _valid()
    del coco["annotations"][1]["area"]
    assert "annotation id 11 (image id 2 ('b.jpg')) has no numeric 'area'" in _error(tmp_path, coco)
    coco = _valid()
    coco["images"][1]["width"] = 0
    assert "image id 2 ('b.jpg') has no positive 'width'/'height'" in _error(tmp_path, coco)
    coco = _valid()
    coco["categories"].append({"id": 2, "name": "again"})
    assert "category id 2 is listed twice" in _error(tmp_path, coco)
    coco = _valid()
    coco["annotations"][0]["segmentation"] = [[1, 1, 5, 1]]
    assert "annotation id 10 (image id 1 ('a.jpg')) has a polygon that is not" in _error(tmp_path, coco)


def test_check_counts_degenerate_boxes_and_logs_them_once(tmp_path, ppcls_warnings):
    coco = _valid()
    coco["annotations"] += [
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10], "area": 0, "iscrowd": 0},
        {"id": 13, "image_id": 1, "category_id": 2, "bbox": [0, 0, 0, 0], "area": 0, "iscrowd": 0},
        {"id": 14, "image_id": 2, "category_id": 2, "bbox": [1, 1, 4, 4], "area": 0, "iscrowd": 0},
        # degenerate boxes are skipped before the bounds are looked at, as in PaddleDetection
        {"id": 15, "image_id": 2, "category_id": 2, "bbox": [500, 1, 4, 0], "area": 16, "iscrowd": 0},
        {"id": 16, "image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 1},
        {"id": 17, "image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16, "ignore": 1},
    ]
    path, img_dir = _write(tmp_path, coco)
    counts = check_coco(path, img_dir)
    assert counts == {"images": 2, "annotations": 8, "categories": 2, "boxes": 2, "degenerate": 4, "ignored": 1,
                      "crowd": 1, "empty_images": 0}
    assert ppcls_warnings == [f"{path}: skipping 4 degenerate (zero-area) box(es), as PaddleDetection does; the "
                              f"first: annotation id 12 (image id 1 ('a.jpg'): bbox [5, 5, 0, 10], area 0)"]
    coco["annotations"] = coco["annotations"][2:5]
    assert "no usable box in 3 annotation(s) (3 degenerate, 0 crowd, 0 ignored)" in _error(tmp_path, coco)


def test_check_skips_what_paddledetection_skips(tmp_path):
    """The counts equal what ppdet's own COCODataSet loads from the same file."""
    pytest.importorskip("pycocotools")
    coco_source = pytest.importorskip("ppdet.data.source.coco")
    coco = _valid()
    coco["images"].append({"id": 3, "file_name": "c.jpg", "width": 40, "height": 40})
    coco["annotations"] += [
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10], "area": 0, "iscrowd": 0},
        {"id": 13, "image_id": 3, "category_id": 2, "bbox": [0, 0, 0, 0], "area": 0, "iscrowd": 0},
        {"id": 14, "image_id": 2, "category_id": 2, "bbox": [1, 1, 4, 4], "area": 0, "iscrowd": 0},
        {"id": 15, "image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 1},
    ]
    path, img_dir = _write(tmp_path, coco, images=("a.jpg", "b.jpg", "c.jpg"))
    counts = check_coco(path, img_dir)
    ds = coco_source.COCODataSet(dataset_dir=str(tmp_path), image_dir="img", anno_path="ann.json",
                                 data_fields=["image", "gt_bbox", "gt_class", "is_crowd"])
    ds.parse_dataset()
    assert counts["images"] - counts["empty_images"] == len(ds.roidbs) == 2
    assert counts["boxes"] == sum(len(r["gt_bbox"]) for r in ds.roidbs) == 2
    assert counts["degenerate"] == 3 and counts["crowd"] == 1
