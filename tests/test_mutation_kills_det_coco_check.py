"""The COCO annotation check (ppcls/det/coco_check.py), message by message and count by count: the
one-line errors name the file, the entry and what is wrong with it, and the counts are what PaddleDetection
trains on. Written against the survivors of `bash tests/mutation.sh det/coco_check.py`."""
import importlib.util
import json
import math
import os

import pytest

from ppcls.utils.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_coco_check():
    # by path, as tests/test_det_data.py does (ppcls/det/__init__.py imports PaddleDetection, and the check
    # runs without it), under the module's own name so a mutation run attributes the calls to it
    spec = importlib.util.spec_from_file_location("ppcls.det.coco_check",
                                                  os.path.join(ROOT, "ppcls", "det", "coco_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_coco = _load_coco_check().check_coco
ZERO = {"images": 0, "annotations": 0, "categories": 0, "boxes": 0, "degenerate": 0, "ignored": 0, "crowd": 0,
        "empty_images": 0}


def _valid():
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "b.jpg", "width": 50, "height": 50}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 30], "area": 600,
                             "iscrowd": 0},
                            {"id": 11, "image_id": 2, "category_id": 2, "bbox": [0, 0, 50, 50], "area": 2500,
                             "iscrowd": 0}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}


def _write(tmp_path, coco, images=("a.jpg", "b.jpg")):
    img_dir = tmp_path / "img"
    img_dir.mkdir(exist_ok=True)
    for n in images:
        (img_dir / n).write_bytes(b"not read, only looked for")
    path = tmp_path / "ann.json"
    path.write_text(coco if isinstance(coco, str) else json.dumps(coco))
    return str(path), str(img_dir)


def _check(tmp_path, coco, **kw):
    path, img_dir = _write(tmp_path, coco)
    return check_coco(path, img_dir, **kw)


def _message(tmp_path, coco, **kw):
    """The whole error message, without the '<file>: ' prefix every message starts with."""
    path, img_dir = _write(tmp_path, coco)
    with pytest.raises(ConfigError) as e:
        check_coco(path, img_dir, **kw)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ")
    return msg[len(path) + 2:]


def _ann(aid, image_id=1, category_id=1, bbox=(10, 10, 20, 30), area=600, **extra):
    return dict({"id": aid, "image_id": image_id, "category_id": category_id, "bbox": list(bbox), "area": area},
                **extra)


# -- the file as a whole ------------------------------------------------------------------------------------
def test_mutation_kills_valid_file_counts_every_kind(tmp_path):
    coco = _valid()
    coco["images"].append({"id": "c", "file_name": "c.jpg", "width": 10, "height": 10})  # string ids are COCO too
    coco["annotations"] += [_ann(12, ignore=1), {"id": 13, "image_id": 1, "category_id": 1, "area": 5},
                            _ann(14, iscrowd=1), _ann(15, area=0)]
    path, img_dir = _write(tmp_path, coco, images=("a.jpg", "b.jpg", "c.jpg"))
    assert check_coco(path, img_dir) == {"images": 3, "annotations": 6, "categories": 2, "boxes": 2,
                                         "degenerate": 1, "ignored": 2, "crowd": 1, "empty_images": 1}
    # load_crowd (COCODataSet(load_crowd=True)) trains on crowd boxes
    assert check_coco(path, img_dir, load_crowd=True)["boxes"] == 3


def test_mutation_kills_missing_file_and_where_prefix(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(ConfigError) as e:
        check_coco(missing, where="EvalDataset.anno_path")  # a path-like works as well as a str
    assert str(e.value) == f"EvalDataset.anno_path: {missing}: annotation file not found"
    with pytest.raises(ConfigError) as e:
        check_coco(str(missing))
    assert str(e.value) == f"{missing}: annotation file not found"


def test_mutation_kills_not_text_not_json_not_an_object(tmp_path):
    path = tmp_path / "ann.json"
    path.write_bytes(b'{"a": 1}\xff')
    with pytest.raises(ConfigError) as e:
        check_coco(str(path))
    assert str(e.value) == f"{path}: not a COCO annotation file: not UTF-8 text (invalid start byte at byte 8)"
    assert _message(tmp_path, '{\n  "images": [,]}') == \
        "not a COCO annotation file: not JSON (Expecting value at line 2 column 14)"
    assert _message(tmp_path, '"text"') == \
        "not a COCO annotation file: the top level is a str, not an object with images, annotations, categories"


def test_mutation_kills_missing_and_wrong_top_level_keys(tmp_path):
    assert _message(tmp_path, {}) == \
        "not a COCO annotation file: no 'images', 'annotations', 'categories' (top-level keys: none)"
    keys = {f"k{i}": 0 for i in range(9)}
    assert _message(tmp_path, dict(keys, images=[])) == (
        "not a COCO annotation file: no 'annotations', 'categories' (top-level keys: 'k0', 'k1', 'k2', 'k3', "
        "'k4', 'k5', 'k6', 'k7')")
    for key in ("images", "annotations", "categories"):
        coco = _valid()
        coco[key] = {"1": coco[key][0]}
        assert _message(tmp_path, coco) == f"not a COCO annotation file: '{key}' is a dict, not a list"


def test_mutation_kills_a_file_without_annotations_when_they_are_not_required(tmp_path):
    coco = _valid()
    del coco["annotations"]
    assert "no 'annotations'" in _message(tmp_path, coco)
    assert _check(tmp_path, coco, require_annotations=False) == dict(
        ZERO, images=2, categories=2, empty_images=2)
    # still checked when present, and no box is no error then
    coco["annotations"] = {}
    assert _message(tmp_path, coco, require_annotations=False) == \
        "not a COCO annotation file: 'annotations' is a dict, not a list"
    coco["annotations"] = [_ann(10, area=0)]
    assert _check(tmp_path, coco, require_annotations=False)["degenerate"] == 1
    assert _message(tmp_path, coco) == (
        "no usable box in 1 annotation(s) (1 degenerate, 0 crowd, 0 ignored): PaddleDetection would find no "
        "training record")


# -- categories and images ----------------------------------------------------------------------------------
@pytest.mark.parametrize("categories, message", [
    ([{"id": 1, "name": "cat"}, {"name": "dog"}], "categories[1] has no integer 'id' ({'name': 'dog'})"),
    ([{"id": True, "name": "cat"}], "categories[0] has no integer 'id' ({'id': True, 'name': 'cat'})"),
    ([{"id": "1", "name": "cat"}], "categories[0] has no integer 'id' ({'id': '1', 'name': 'cat'})"),
    (["cat"], "categories[0] has no integer 'id' ('cat')"),
    ([{"id": 1, "name": "cat"}, {"id": 1, "name": "again"}], "category id 1 is listed twice in 'categories'"),
    ([{"id": 1}], "category id 1 has no 'name'"),
    ([], "'categories' is empty"),
])
def test_mutation_kills_category_problems(tmp_path, categories, message):
    coco = _valid()
    coco["categories"] = categories
    coco["annotations"] = []
    assert _message(tmp_path, coco) == message


def test_mutation_kills_first_problem_counted_with_the_others(tmp_path):
    coco = _valid()
    coco["categories"] = [{"id": 1}, {"id": 2}, {"id": 3}]
    coco["images"][1]["width"] = -1
    # the other three: image 2's width, and both annotations' categories (none is valid)
    assert _message(tmp_path, coco) == ("category id 1 has no 'name' (2 more like it); 3 other problem(s) in "
                                        "the file")
    # an empty 'categories' is only reported when nothing else is wrong with them
    coco["categories"] = ["x"]
    assert _message(tmp_path, coco).startswith("categories[0] has no integer 'id' ('x'); ")


@pytest.mark.parametrize("image, message", [
    ({"file_name": "c.jpg", "width": 1, "height": 1}, "images[2] has no 'id' ({'file_name': 'c.jpg', 'width': 1, "
                                                      "'height': 1})"),
    ({"id": False, "file_name": "c.jpg"}, "images[2] has no 'id' ({'id': False, 'file_name': 'c.jpg'})"),
    ({"id": 1.0, "file_name": "c.jpg"}, "images[2] has no 'id' ({'id': 1.0, 'file_name': 'c.jpg'})"),
    ([3], "images[2] has no 'id' ([3])"),
    ({"id": 2, "file_name": "c.jpg", "width": 1, "height": 1}, "image id 2 is listed twice in 'images'"),
    ({"id": "c", "width": 1, "height": 1}, "image id 'c' has no 'file_name'"),
    ({"id": "c", "file_name": "", "width": 1, "height": 1}, "image id 'c' has no 'file_name'"),
    ({"id": 3, "file_name": "c.jpg", "width": 10, "height": 0},
     "image id 3 ('c.jpg') has no positive 'width'/'height' (got 10 x 0)"),
    ({"id": 3, "file_name": "c.jpg", "width": 0.0, "height": 10},
     "image id 3 ('c.jpg') has no positive 'width'/'height' (got 0.0 x 10)"),
    ({"id": 3, "file_name": "c.jpg", "width": True, "height": 10},
     "image id 3 ('c.jpg') has no positive 'width'/'height' (got True x 10)"),
    ({"id": 3, "file_name": "c.jpg", "width": 10, "height": "10"},
     "image id 3 ('c.jpg') has no positive 'width'/'height' (got 10 x '10')"),
    ({"id": 3, "file_name": "c.jpg", "width": 10}, "image id 3 ('c.jpg') has no positive 'width'/'height' "
                                                   "(got 10 x None)"),
])
def test_mutation_kills_image_problems(tmp_path, image, message):
    coco = _valid()
    coco["images"].append(image)
    assert _message(tmp_path, coco) == message


def test_mutation_kills_image_sizes_and_files(tmp_path):
    coco = _valid()
    coco["images"][0].update(width=30.5, height=40.5)  # fractional sizes are sizes
    coco["annotations"][0]["bbox"] = [10, 10, 20, 30]
    assert _check(tmp_path, coco)["boxes"] == 2
    coco["images"].append({"id": 3, "file_name": "sub/c.jpg", "width": 5, "height": 5})
    coco["images"].append({"id": 4, "file_name": "d.jpg", "width": 5, "height": 5})
    path, img_dir = _write(tmp_path, coco)
    with pytest.raises(ConfigError) as e:
        check_coco(path, img_dir)
    assert str(e.value) == (f"{path}: image file {os.path.join(img_dir, 'sub/c.jpg')} of image id 3 not found "
                            f"(1 more like it)")
    assert check_coco(path)["empty_images"] == 2  # without image_dir the files are not looked for


# -- annotations --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("annotation, message", [
    ([1, 2], "annotations[2] is a list, not an object"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
     "annotations[2] (no 'id') (image id 1 ('a.jpg')) has no numeric 'area' (got None)"),
    (_ann(10), "annotation id 10 is listed twice in 'annotations'"),
    (_ann("x", image_id=None), "annotation id 'x' refers to image id None, which is not in 'images'"),
    (_ann(12, image_id=[1]), "annotation id 12 refers to image id [1], which is not in 'images'"),
    (_ann(12, image_id="1"), "annotation id 12 refers to image id '1', which is not in 'images'"),
    (_ann(12, category_id=None), "annotation id 12 (image id 1 ('a.jpg')) has category_id None, absent from "
                                 "'categories' (ids 1..2)"),
    (_ann(12, category_id=1.0), "annotation id 12 (image id 1 ('a.jpg')) has category_id 1.0, absent from "
                                "'categories' (ids 1..2)"),
    (_ann(12, bbox=(1, 2, 3, 4, 5)), "annotation id 12 (image id 1 ('a.jpg')) has bbox [1, 2, 3, 4, 5], not four "
                                     "finite numbers [x, y, w, h]"),
    (_ann(12, bbox=(1, 2, 3, True)), "annotation id 12 (image id 1 ('a.jpg')) has bbox [1, 2, 3, True], not four "
                                     "finite numbers [x, y, w, h]"),
    (dict(_ann(12), bbox="1 2 3 4"), "annotation id 12 (image id 1 ('a.jpg')) has bbox '1 2 3 4', not four "
                                     "finite numbers [x, y, w, h]"),
    (_ann(12, area="600"), "annotation id 12 (image id 1 ('a.jpg')) has no numeric 'area' (got '600')"),
    (_ann(12, iscrowd=2), "annotation id 12 (image id 1 ('a.jpg')) has iscrowd 2, not 0 or 1"),
    (_ann(12, iscrowd=None), "annotation id 12 (image id 1 ('a.jpg')) has iscrowd None, not 0 or 1"),
    (_ann(12, segmentation=[[1, 1, 5, 1, 5, 5], [1, 1, 5, 1, 5]]),
     "annotation id 12 (image id 1 ('a.jpg')) has a polygon that is not a list of >= 3 (x, y) pairs"),
    (_ann(12, segmentation=[[1, 1, 5, 1]]),
     "annotation id 12 (image id 1 ('a.jpg')) has a polygon that is not a list of >= 3 (x, y) pairs"),
    (_ann(12, segmentation=[[1, 1, 5, 1, 5, 5, 1]]),
     "annotation id 12 (image id 1 ('a.jpg')) has a polygon that is not a list of >= 3 (x, y) pairs"),
    (_ann(12, segmentation=[[1, 1, 5, 1, 5, "5"]]),
     "annotation id 12 (image id 1 ('a.jpg')) has a polygon that is not a list of >= 3 (x, y) pairs"),
    (_ann(12, segmentation=[{"x": 1}]),
     "annotation id 12 (image id 1 ('a.jpg')) has a polygon that is not a list of >= 3 (x, y) pairs"),
])
def test_mutation_kills_annotation_problems(tmp_path, annotation, message):
    coco = _valid()
    coco["annotations"].append(annotation)
    assert _message(tmp_path, coco) == message


@pytest.mark.parametrize("ids, span", [
    ([1, 2, 3], "1..3"),
    ([5], "5..5"),
    ([1, 3, 7], "1, 3, 7"),
    (list(range(1, 27, 2)), "1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23 ..."),
    (list(range(1, 25, 2)), "1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23"),
])
def test_mutation_kills_category_ids_named_in_the_error(tmp_path, ids, span):
    coco = _valid()
    coco["categories"] = [{"id": i, "name": str(i)} for i in reversed(ids)]
    coco["annotations"] = [_ann(10, category_id=0)]
    assert _message(tmp_path, coco) == (f"annotation id 10 (image id 1 ('a.jpg')) has category_id 0, absent "
                                        f"from 'categories' (ids {span})")


def test_mutation_kills_valid_polygons_and_rle_pass(tmp_path):
    coco = _valid()
    coco["annotations"][0]["segmentation"] = [[1, 1, 5, 1, 5, 5], [1.5, 1, 5, 1, 5, 5, 1, 5]]
    coco["annotations"][1]["segmentation"] = {"counts": "abc", "size": [50, 50]}  # RLE: not a polygon list
    assert _check(tmp_path, coco)["boxes"] == 2


def test_mutation_kills_ignore_flag_and_missing_bbox(tmp_path):
    coco = _valid()
    coco["annotations"] += [_ann(12, ignore=True), _ann(13, ignore=0), {"id": 14, "image_id": 2, "category_id": 1}]
    assert _check(tmp_path, coco) == {"images": 2, "annotations": 5, "categories": 2, "boxes": 3, "degenerate": 0,
                                      "ignored": 2, "crowd": 0, "empty_images": 0}
    # ignored before their box is looked at: a box PaddleDetection never reads cannot be wrong
    coco["annotations"].append(_ann(15, bbox=(1, 2, 3), ignore=1))
    assert _check(tmp_path, coco)["ignored"] == 3


def test_mutation_kills_crowd_boxes_are_checked_only_when_loaded(tmp_path):
    coco = _valid()
    coco["annotations"].append(_ann(12, bbox=(500, 500, 10, 10), iscrowd=1))
    assert _check(tmp_path, coco)["crowd"] == 1
    assert _message(tmp_path, coco, load_crowd=True).startswith("annotation id 12 (image id 1 ('a.jpg')): bbox")


@pytest.mark.parametrize("bbox, area, degenerate", [
    ((0, 0, 0, 0), 10, True),
    ((1, 1, 4, 4), 0, True),
    ((1, 1, 4, 4), -3, True),
    ((1, 1, 4, 4), 1e-9, False),
    ((1, 1, 1e-5, 4), 16, True),
    ((1, 1, 4, 1e-5), 16, True),
    ((1, 1, 2e-5, 4), 16, False),
    ((1, 1, 4, 2e-5), 16, False),
    ((1, 1, 0, 4), 16, True),
    ((1, 1, 4, -1), 16, True),
    ((0, 0, 0, 1), 1, True),
    ((0, 0, 1, 0), 1, True),
    ((3, 0, 0, 0), 1, True),
])
def test_mutation_kills_degenerate_boxes_as_paddledetection_skips_them(tmp_path, bbox, area, degenerate):
    coco = _valid()
    coco["annotations"].append(_ann(12, bbox=bbox, area=area))
    counts = _check(tmp_path, coco)
    assert (counts["degenerate"], counts["boxes"]) == ((1, 2) if degenerate else (0, 3))


def test_mutation_kills_degenerate_warning_names_the_first(tmp_path, ppcls_warnings):
    coco = _valid()
    coco["annotations"] += [{"image_id": 2, "category_id": 1, "bbox": [1, 1, 0, 3], "area": 0},
                            _ann(13, bbox=(0, 0, 0, 0), area=0)]
    path, img_dir = _write(tmp_path, coco)
    assert check_coco(path, img_dir)["degenerate"] == 2
    assert ppcls_warnings == [f"{path}: skipping 2 degenerate (zero-area) box(es), as PaddleDetection does; the "
                              f"first: annotations[2] (no 'id') (image id 2 ('b.jpg'): bbox [1, 1, 0, 3], area 0)"]
    ppcls_warnings.clear()
    assert check_coco(path, img_dir, load_crowd=True)["degenerate"] == 2
    coco["annotations"] = coco["annotations"][:2]
    path, img_dir = _write(tmp_path, coco)
    check_coco(path, img_dir)
    assert ppcls_warnings[1:] == []  # no degenerate box, no warning


@pytest.mark.parametrize("bbox, inside", [
    ((-1, 0, 10, 10), True),
    ((-1.5, 0, 10, 10), False),
    ((0, -1, 10, 10), True),
    ((0, -1.01, 10, 10), False),
    ((40, 0, 11, 10), True),       # x + w == width + tolerance
    ((40, 0, 11.5, 10), False),
    ((0, 40, 10, 11), True),
    ((0, 40, 10, 11.25), False),
    ((0, 0, 50, 50), True),
])
def test_mutation_kills_box_bounds_with_the_tolerance(tmp_path, bbox, inside):
    coco = _valid()
    coco["annotations"][1]["bbox"] = list(bbox)  # image 2 is 50 x 50
    if inside:
        assert _check(tmp_path, coco)["boxes"] == 2
    else:
        assert _message(tmp_path, coco) == (f"annotation id 11 (image id 2 ('b.jpg')): bbox [x, y, w, h] = "
                                            f"{list(bbox)} lies outside the 50x50 image (tolerance 1 px)")


def test_mutation_kills_box_tolerance_is_a_setting(tmp_path):
    coco = _valid()
    coco["images"][1].update(width=50.5, height=50)
    coco["annotations"][1]["bbox"] = [0, 0, 50.75, 50]
    assert _check(tmp_path, coco)["boxes"] == 2
    assert _message(tmp_path, coco, box_tolerance=0.1) == (
        "annotation id 11 (image id 2 ('b.jpg')): bbox [x, y, w, h] = [0, 0, 50.75, 50] lies outside the 50.5x50 "
        "image (tolerance 0.1 px)")
    coco["annotations"][1]["bbox"] = [0, 0, 50.5, 50]
    assert _check(tmp_path, coco, box_tolerance=0)["boxes"] == 2
    assert math.isclose(_check(tmp_path, coco, box_tolerance="0")["boxes"], 2)  # a YAML string is a number too


def test_mutation_kills_non_finite_numbers_are_not_numbers(tmp_path):
    coco = _valid()
    path, img_dir = _write(tmp_path, coco)
    text = json.dumps(coco).replace('"bbox": [10, 10, 20, 30]', '"bbox": [10, 10, Infinity, 30]')
    assert _message(tmp_path, text) == ("annotation id 10 (image id 1 ('a.jpg')) has bbox [10, 10, inf, 30], not "
                                        "four finite numbers [x, y, w, h]")
    text = json.dumps(coco).replace('"area": 600', '"area": NaN')
    assert _message(tmp_path, text) == "annotation id 10 (image id 1 ('a.jpg')) has no numeric 'area' (got nan)"


# -- how the problems of one file are summed up --------------------------------------------------------------
def test_mutation_kills_problems_of_one_kind_are_counted_together(tmp_path):
    coco = _valid()
    coco["annotations"] = []
    coco["categories"] = [{"id": 1, "name": "a"}, {"name": "no id"}, {"id": 1, "name": "again"}, {"id": 2}]
    assert _message(tmp_path, coco) == "categories[1] has no integer 'id' ({'name': 'no id'}) (2 more like it)"
    coco["categories"] = [{"id": 1, "name": "a"}, {"id": 1, "name": "again"}, {"id": 2}]
    assert _message(tmp_path, coco) == "category id 1 is listed twice in 'categories' (1 more like it)"
    coco = _valid()
    coco["images"] += [{"file_name": "x.jpg"}, {"id": 1, "file_name": "a.jpg"}, {"id": 5, "width": 2, "height": 2},
                       {"id": 6, "file_name": "f.jpg", "width": 0, "height": 2}]
    assert _message(tmp_path, coco) == "images[2] has no 'id' ({'file_name': 'x.jpg'}) (3 more like it)"
    coco["images"] = coco["images"][:2] + coco["images"][3:]
    assert _message(tmp_path, coco) == "image id 1 is listed twice in 'images' (2 more like it)"
    coco["images"] = coco["images"][:2] + coco["images"][3:]
    assert _message(tmp_path, coco) == "image id 5 has no 'file_name' (1 more like it)"
    coco = _valid()
    coco["annotations"] += ["text", dict(coco["annotations"][0])]
    assert _message(tmp_path, coco) == "annotations[2] is a str, not an object (1 more like it)"


def test_mutation_kills_every_entry_is_checked_after_a_bad_one(tmp_path):
    coco = _valid()
    coco["images"].insert(0, {"id": 7, "file_name": "g.jpg", "width": -4, "height": 3})
    assert _message(tmp_path, coco) == "image id 7 ('g.jpg') has no positive 'width'/'height' (got -4 x 3)"
    coco = _valid()
    coco["annotations"][0]["area"] = None
    coco["annotations"][1]["iscrowd"] = 3
    assert _message(tmp_path, coco) == ("annotation id 10 (image id 1 ('a.jpg')) has no numeric 'area' (got None); "
                                        "1 other problem(s) in the file")
    coco = _valid()
    coco["annotations"][0]["bbox"] = [90, 10, 20, 30]
    coco["annotations"][1]["segmentation"] = [[1, 2]]
    assert _message(tmp_path, coco) == (
        "annotation id 10 (image id 1 ('a.jpg')): bbox [x, y, w, h] = [90, 10, 20, 30] lies outside the 100x80 "
        "image (tolerance 1 px); 1 other problem(s) in the file")


def test_mutation_kills_every_crowd_annotation_is_counted(tmp_path):
    coco = _valid()
    coco["annotations"] += [_ann(12, iscrowd=1), _ann(13, iscrowd=1), _ann(14, image_id=2, iscrowd=1)]
    assert _check(tmp_path, coco)["crowd"] == 3
