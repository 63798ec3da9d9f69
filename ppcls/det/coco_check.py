"""Checks a COCO annotation file before PaddleDetection reads it.

PaddleDetection's ``COCODataSet`` fails late and far from the cause on a broken file (a category id
absent from ``categories`` is a ``KeyError`` inside its loader; a box outside its image trains on
garbage without a word; an annotation whose image is not listed is silently dropped), so the problems
are named here first, one line each, with the file and the annotation / image id.

Where PaddleDetection skips an annotation on purpose this check skips and counts it the same way, and
logs the count once: a degenerate box (all zeros, width or height <= 1e-5, or ``area`` <= 0; ppdet's
``parse_dataset``), an annotation marked ``ignore``, one without ``bbox``, and crowd annotations
(``COCODataSet(load_crowd=False)``, its default). Images left without a usable box are counted too:
ppdet drops them unless ``allow_empty``.

Pure Python + json: no PaddleDetection import, so a command can run it before importing ppdet.
"""
import json
import math
import os

from ppcls.utils.errors import ConfigError
from ppcls.utils.logger import logger

# PaddleDetection's own threshold for a box's width/height (ppdet/data/source/coco.py)
DEGENERATE_EPS = 1e-5
# boxes may overshoot their image by this many pixels: annotation tools and rounding put many real
# COCO boxes a fraction of a pixel past the border
BOX_TOLERANCE = 1.0
REQUIRED_KEYS = ("images", "annotations", "categories")


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Problems:
    """The first instance of each kind of problem and how many there are: the error names the first
    culprit and says how widespread it is, still in one line."""

    def __init__(self):
        self.first = {}
        self.count = {}

    def add(self, kind, message):
        self.count[kind] = self.count.get(kind, 0) + 1
        self.first.setdefault(kind, message)

    def raise_first(self, prefix):
        if not self.first:
            return
        kind, message = next(iter(self.first.items()))
        n = self.count[kind]
        more = f" ({n - 1} more like it)" if n > 1 else ""
        others = sum(c for k, c in self.count.items() if k != kind)
        also = f"; {others} other problem(s) in the file" if others else ""
        raise ConfigError(f"{prefix}{message}{more}{also}")


def _describe_image(images, image_id):
    im = images.get(image_id)
    return f"image id {image_id!r}" + (f" ('{im.get('file_name')}')" if im else "")


def check_coco(ann_file, image_dir=None, *, where=None, box_tolerance=BOX_TOLERANCE,
               require_annotations=True, load_crowd=False):
    """Validate ``ann_file`` (and, with ``image_dir``, that every listed image file exists there).

    Raises ``ConfigError`` (one line: ``[where: ]<file>: <problem> ...``) for: a file that is missing,
    not JSON or not COCO (no ``images`` / ``annotations`` / ``categories``); a malformed or duplicate
    category / image / annotation entry; an annotation whose ``image_id`` is not in ``images`` or whose
    ``category_id`` is not in ``categories``; a box outside its image by more than ``box_tolerance``
    pixels; a missing image file.

    Returns counts: ``{"images", "annotations", "categories", "boxes" (what PaddleDetection trains
    on), "degenerate" (zero-area boxes skipped), "ignored" (``ignore`` flag or no ``bbox``),
    "crowd" (crowd annotations, skipped unless ``load_crowd``), "empty_images" (images left with no
    box, which ppdet drops unless ``allow_empty``)}``."""
    prefix = f"{where}: " if where else ""
    path = os.fspath(ann_file)
    prefix += f"{path}: "
    if not os.path.isfile(path):
        raise ConfigError(f"{prefix}annotation file not found")
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{prefix}not a COCO annotation file: not UTF-8 text ({e.reason} at byte "
                          f"{e.start})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{prefix}not a COCO annotation file: not JSON ({e.msg} at line {e.lineno} "
                          f"column {e.colno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}not a COCO annotation file: the top level is a {type(data).__name__}, "
                          f"not an object with {', '.join(REQUIRED_KEYS)}")
    required = REQUIRED_KEYS if require_annotations else ("images", "categories")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{prefix}not a COCO annotation file: no {', '.join(repr(k) for k in missing)} "
                          f"(top-level keys: {', '.join(map(repr, list(data)[:8])) or 'none'})")
    for key in REQUIRED_KEYS:
        if key in data and not isinstance(data[key], list):
            raise ConfigError(f"{prefix}not a COCO annotation file: '{key}' is a {type(data[key]).__name__}, "
                              f"not a list")

    problems = _Problems()
    categories = {}
    for n, cat in enumerate(data["categories"]):
        cid = cat.get("id") if isinstance(cat, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool):
            problems.add("category", f"categories[{n}] has no integer 'id' ({cat!r:.80})")
        elif cid in categories:
            problems.add("category", f"category id {cid} is listed twice in 'categories'")
        elif "name" not in cat:
            problems.add("category", f"category id {cid} has no 'name'")
        else:
            categories[cid] = cat
    if not categories and not problems.first:
        problems.add("category", "'categories' is empty")

    images = {}
    for n, im in enumerate(data["images"]):
        iid = im.get("id") if isinstance(im, dict) else None
        if not isinstance(iid, (int, str)) or isinstance(iid, bool):
            problems.add("image", f"images[{n}] has no 'id' ({im!r:.80})")
            continue
        if iid in images:
            problems.add("image", f"image id {iid!r} is listed twice in 'images'")
            continue
        name = im.get("file_name")
        if not isinstance(name, str) or not name:
            problems.add("image", f"image id {iid!r} has no 'file_name'")
            continue
        w, h = im.get("width"), im.get("height")
        if not (_is_number(w) and _is_number(h) and w > 0 and h > 0):
            problems.add("image", f"image id {iid!r} ('{name}') has no positive 'width'/'height' "
                                  f"(got {w!r} x {h!r})")
            continue
        images[iid] = im
        if image_dir is not None:
            file = os.path.join(image_dir, name)
            if not os.path.isfile(file):
                problems.add("missing image", f"image file {file} of image id {iid!r} not found")

    counts = {"images": len(data["images"]), "annotations": len(data.get("annotations", [])),
              "categories": len(data["categories"]), "boxes": 0, "degenerate": 0, "ignored": 0, "crowd": 0,
              "empty_images": 0}
    first_degenerate = None
    images_with_box = set()
    seen_ann_ids = set()
    for n, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            problems.add("annotation", f"annotations[{n}] is a {type(ann).__name__}, not an object")
            continue
        aid = ann.get("id", f"#{n}")
        label = f"annotation id {aid!r}" if "id" in ann else f"annotations[{n}] (no 'id')"
        if "id" in ann:
            if aid in seen_ann_ids:
                # pycocotools indexes annotations by id: a duplicate silently replaces the first
                problems.add("annotation", f"{label} is listed twice in 'annotations'")
                continue
            seen_ann_ids.add(aid)
        iid = ann.get("image_id")
        if not isinstance(iid, (int, str)) or iid not in images:
            problems.add("image id", f"{label} refers to image id {iid!r}, which is not in 'images'")
            continue
        where_ann = f"{label} ({_describe_image(images, iid)})"
        cid = ann.get("category_id")
        if not isinstance(cid, int) or cid not in categories:
            ids = sorted(categories)
            span = f"{ids[0]}..{ids[-1]}" if ids and ids == list(range(ids[0], ids[-1] + 1)) else \
                ", ".join(map(str, ids[:12])) + (" ..." if len(ids) > 12 else "")
            problems.add("category id", f"{where_ann} has category_id {cid!r}, absent from 'categories' "
                                        f"(ids {span})")
            continue
        if ann.get("ignore", False) or "bbox" not in ann:
            counts["ignored"] += 1
            continue
        box = ann["bbox"]
        if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_number(v) for v in box)):
            problems.add("bbox", f"{where_ann} has bbox {box!r:.80}, not four finite numbers [x, y, w, h]")
            continue
        area = ann.get("area")
        if not _is_number(area):
            # ppdet reads inst['area'] for every box: a KeyError deep in its loader otherwise
            problems.add("area", f"{where_ann} has no numeric 'area' (got {area!r:.40})")
            continue
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1):
            problems.add("iscrowd", f"{where_ann} has iscrowd {crowd!r}, not 0 or 1")
            continue
        if crowd == 1 and not load_crowd:
            counts["crowd"] += 1
            continue
        x, y, bw, bh = (float(v) for v in box)
        if not any(box) or not (area > 0 and bw > DEGENERATE_EPS and bh > DEGENERATE_EPS):
            counts["degenerate"] += 1
            if first_degenerate is None:
                first_degenerate = f"{label} ({_describe_image(images, iid)}: bbox {list(box)}, area {area})"
            continue
        im = images[iid]
        W, H = float(im["width"]), float(im["height"])
        t = float(box_tolerance)
        if x < -t or y < -t or x + bw > W + t or y + bh > H + t:
            problems.add("outside", f"{where_ann}: bbox [x, y, w, h] = {list(box)} lies outside the "
                                    f"{im['width']}x{im['height']} image (tolerance {t:g} px)")
            continue
        seg = ann.get("segmentation")
        if isinstance(seg, list) and any(not isinstance(p, list) or len(p) < 6 or len(p) % 2 or
                                         not all(_is_number(v) for v in p) for p in seg):
            # pycocotools' frPyObjects rejects these when a mask model rasterises them, mid-training
            problems.add("segmentation", f"{where_ann} has a polygon that is not a list of >= 3 (x, y) pairs")
            continue
        counts["boxes"] += 1
        images_with_box.add(iid)
    problems.raise_first(prefix)

    counts["empty_images"] = len(images) - len(images_with_box)
    if counts["degenerate"]:
        logger.warning(f"{path}: skipping {counts['degenerate']} degenerate (zero-area) box(es), as "
                       f"PaddleDetection does; the first: {first_degenerate}")
    if counts["boxes"] == 0 and require_annotations:
        raise ConfigError(f"{prefix}no usable box in {counts['annotations']} annotation(s) "
                          f"({counts['degenerate']} degenerate, {counts['crowd']} crowd, {counts['ignored']} "
                          f"ignored): PaddleDetection would find no training record")
    return counts
