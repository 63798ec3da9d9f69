"""Detection and segmentation demo data from real handwritten digits, written on the spot (nothing is
downloaded): scikit-learn's 1797 8x8 digits (the classification quick start's data), upscaled to varied
sizes and pasted without overlap onto textured canvases.

Every label is exact because it is derived from the pixels that were painted: a digit's mask is the set
of canvas pixels it coloured, its COCO box is the bounding box of that mask, its area the mask's pixel
count, and its polygons trace the mask along pixel edges (holes of 0, 4, 6, 8, 9 included), so
pycocotools rasterises them back to the mask itself. The segmentation label is the same masks painted
with class ids.

Layout under ``root`` (what PaddleDetection's ``COCODataSet`` and PaddleSeg's ``Dataset`` read):

    annotations/instances_{train,val}.json   COCO: categories "0".."9" with ids 1..10
    images/{train,val}/NNNNNN.jpg
    seg/images/{train,val}/NNNNNN.png        the same canvases, lossless
    seg/labels/{train,val}/NNNNNN.png        uint8: 0 background, 1 + digit for a digit's pixels
    seg/train.txt, seg/val.txt               "image label" lines, paths relative to ``root``
    seg/labels.txt                           class names, one a line: background, 0 .. 9

Train and val canvases draw their digits from disjoint parts of the 1797 (held-out writers' samples).
"""
import json
import os

import cv2
import numpy as np

from ...utils.errors import ConfigError

KINDS = ("det", "seg")
NUM_DIGITS = 10
SEG_NUM_CLASSES = NUM_DIGITS + 1  # background + 10 digits
# a digit pixel is "ink" above this fraction of full intensity after upscaling; low enough that
# strokes stay connected, high enough that cubic ringing around them is not counted
INK_THRESHOLD = 0.35
# polygons are traced on the mask upscaled this much, so the traced pixel centres round onto the
# original pixels' corners (exact pixel-edge outlines)
_TRACE_SCALE = 4
_VAL_FRACTION = 0.2
_PLACE_TRIES = 60
_GAP = 2  # pixels kept free between two digits' patches, so no two instances touch


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ConfigError("the digit canvases need scikit-learn's digits: pip install scikit-learn") from e
    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


def _background(rng, h, w):
    """Smooth colour blobs plus grain plus a few faint strokes, so a detector cannot find digits by
    looking for any non-flat pixel."""
    coarse = rng.uniform(40, 215, (4, 4, 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 9, (h, w, 3)).astype(np.float32)
    for _ in range(rng.randint(2, 6)):
        p1 = (int(rng.randint(0, w)), int(rng.randint(0, h)))
        p2 = (int(rng.randint(0, w)), int(rng.randint(0, h)))
        shade = tuple(float(v) for v in rng.uniform(40, 215, 3))
        cv2.line(img, p1, p2, shade, int(rng.randint(1, 3)), cv2.LINE_AA)
    return img


def _glyph(digit, rng, height_range, aspect_range):
    """The digit upscaled to a random size: (intensity in [0, 1], ink mask)."""
    ph = int(rng.randint(height_range[0], height_range[1] + 1))
    pw = max(4, int(round(ph * rng.uniform(*aspect_range))))
    big = np.clip(cv2.resize(digit, (pw, ph), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    return big, big > INK_THRESHOLD


def mask_to_polygons(mask):
    """COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` whose union, rasterised by pycocotools, is
    ``mask`` pixel for pixel.

    cv2.findContours gives the centres of boundary pixels, half a pixel inside the true outline, which
    on strokes a few pixels wide loses a large part of the area; tracing the mask upscaled
    ``_TRACE_SCALE`` times and rounding puts every vertex on a pixel corner. COCO polygons cannot carry
    holes (pycocotools unions an object's polygons), so each hole is joined to its outer outline by a
    zero-width cut, which the even-odd fill leaves empty."""
    k = _TRACE_SCALE
    up = cv2.resize(mask.astype(np.uint8), None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]

    def corners(c):
        return np.round((c[:, 0, :].astype(np.float64) + 0.5) / k)

    polygons = []
    for i, contour in enumerate(contours):
        if hierarchy[i][3] != -1:  # a hole: joined to its parent below
            continue
        outline = corners(contour)
        child = hierarchy[i][2]
        while child != -1:
            hole = corners(contours[child])
            dist = ((outline[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
            a, b = np.unravel_index(int(dist.argmin()), dist.shape)
            outline = np.concatenate([outline[:a + 1], hole[b:], hole[:b + 1], outline[a:]])
            child = hierarchy[child][0]
        polygons.append([float(v) for v in outline.ravel()])
    return polygons


def _compose_canvas(rng, digits, labels, pool, canvas, per_image, height_range, aspect_range):
    """One canvas: (BGR uint8 image, [(digit, ink mask on the canvas)], in paste order)."""
    h, w = canvas
    img = _background(rng, h, w)
    taken = []  # patch rectangles (x0, y0, x1, y1), exclusive ends
    instances = []
    for _ in range(int(rng.randint(per_image[0], per_image[1] + 1))):
        idx = int(pool[rng.randint(len(pool))])
        intensity, ink = _glyph(digits[idx], rng, height_range, aspect_range)
        ph, pw = ink.shape
        for _ in range(_PLACE_TRIES):
            x0, y0 = int(rng.randint(0, w - pw + 1)), int(rng.randint(0, h - ph + 1))
            if all(x0 >= bx1 + _GAP or bx0 >= x0 + pw + _GAP or y0 >= by1 + _GAP or by0 >= y0 + ph + _GAP
                   for bx0, by0, bx1, by1 in taken):
                break
        else:
            continue  # the canvas is full: fewer digits on this one
        taken.append((x0, y0, x0 + pw, y0 + ph))
        region = img[y0:y0 + ph, x0:x0 + pw]
        # ink contrasting with what lies under it: dark on light ground, light on dark
        under = float(region.mean())
        colour = rng.uniform(0, 60, 3) if under > 128 else rng.uniform(195, 255, 3)
        shade = 0.8 + 0.2 * intensity[ink][:, None]
        region[ink] = colour[None, :] * shade
        full = np.zeros((h, w), bool)
        full[y0:y0 + ph, x0:x0 + pw] = ink
        instances.append((int(labels[idx]), full))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), instances


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


def make_digit_canvas_dataset(root, n_train=160, n_val=40, canvas=(128, 128), digits_per_image=(1, 4),
                              seed=0, kinds=KINDS, digit_height=None, jpeg_quality=95):
    """Write the demo dataset under ``root`` (see the module docstring) and return what to configure.

    ``canvas`` is (H, W) or one int; ``digits_per_image`` (lo, hi) inclusive, fewer when a canvas is too
    full; ``digit_height`` (lo, hi) in pixels, by default 18% to 45% of the canvas's shorter side;
    ``kinds`` any of "det", "seg". The same arguments give the same files, byte for byte.

    Returns ``{"root", "train", "val", "instances": {"train", "val"}, "det": {...}, "seg": {...}}``
    with ``det`` (when asked for) holding PaddleDetection's ``COCODataSet`` keys ``dataset_dir``,
    ``image_dir`` and ``anno_path`` per split (paths relative to ``dataset_dir``), absolute
    ``ann_file`` per split and ``num_classes`` 10, and ``seg`` holding PaddleSeg's ``Dataset`` keys
    ``dataset_root``, ``train_path``, ``val_path``, ``num_classes`` 11, and ``labels_txt``."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ConfigError(f"kinds: {'unknown ' + ', '.join(map(repr, bad)) if bad else 'none given'}; "
                          f"choose from {', '.join(KINDS)}")
    h, w = (int(canvas), int(canvas)) if np.isscalar(canvas) else (int(canvas[0]), int(canvas[1]))
    lo, hi = int(digits_per_image[0]), int(digits_per_image[1])
    if h < 16 or w < 16:
        raise ConfigError(f"canvas: at least 16x16 pixels, got {h}x{w}")
    if not 1 <= lo <= hi:
        raise ConfigError(f"digits_per_image: (lo, hi) with 1 <= lo <= hi, got {tuple(digits_per_image)}")
    if int(n_train) < 0 or int(n_val) < 0:
        raise ConfigError(f"n_train / n_val: counts of images, got {n_train} / {n_val}")
    short = min(h, w)
    if digit_height is None:
        digit_height = (max(8, int(short * 0.18)), max(8, int(short * 0.45)))
    height_range = (int(digit_height[0]), int(digit_height[1]))
    if not 8 <= height_range[0] <= height_range[1] <= h:
        raise ConfigError(f"digit_height: (lo, hi) between 8 and the canvas height {h}, got {tuple(digit_height)}")
    aspect_range = (0.6, 0.9)
    if int(round(height_range[1] * aspect_range[1])) > w:
        raise ConfigError(f"digit_height: digits up to {height_range[1]} px high do not fit a canvas {w} px wide")

    digits, labels = _load_digits()
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(digits))
    n_val_pool = int(round(len(digits) * _VAL_FRACTION))
    pools = {"val": order[:n_val_pool], "train": order[n_val_pool:]}
    categories = [{"id": d + 1, "name": str(d), "supercategory": "digit"} for d in range(NUM_DIGITS)]

    result = {"root": os.path.abspath(root), "train": int(n_train), "val": int(n_val), "instances": {}}
    det = {"dataset_dir": result["root"], "image_dir": {}, "anno_path": {}, "ann_file": {},
           "num_classes": NUM_DIGITS}
    seg = {"dataset_root": result["root"], "num_classes": SEG_NUM_CLASSES}
    for split, count in (("train", int(n_train)), ("val", int(n_val))):
        # each split has a stream of its own: the val set does not change with n_train
        split_rng = np.random.RandomState([seed, 0 if split == "train" else 1])
        images, annotations, seg_lines = [], [], []
        n_instances = 0
        if "det" in kinds:
            os.makedirs(os.path.join(root, "images", split), exist_ok=True)
        if "seg" in kinds:
            for sub in ("images", "labels"):
                os.makedirs(os.path.join(root, "seg", sub, split), exist_ok=True)
        for i in range(count):
            img, instances = _compose_canvas(split_rng, digits, labels, pools[split], (h, w), (lo, hi),
                                             height_range, aspect_range)
            stem = f"{i:06d}"
            n_instances += len(instances)
            if "det" in kinds:
                image_id = i + 1
                cv2.imwrite(os.path.join(root, "images", split, stem + ".jpg"), img,
                            [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
                images.append({"id": image_id, "file_name": stem + ".jpg", "width": w, "height": h})
                for digit, mask in instances:
                    annotations.append({
                        "id": len(annotations) + 1, "image_id": image_id, "category_id": digit + 1,
                        "bbox": _bbox(mask), "area": int(mask.sum()), "iscrowd": 0,
                        "segmentation": mask_to_polygons(mask)})
            if "seg" in kinds:
                label = np.zeros((h, w), np.uint8)
                for digit, mask in instances:
                    label[mask] = digit + 1
                img_rel = f"seg/images/{split}/{stem}.png"
                label_rel = f"seg/labels/{split}/{stem}.png"
                cv2.imwrite(os.path.join(root, img_rel), img)
                cv2.imwrite(os.path.join(root, label_rel), label)
                seg_lines.append(f"{img_rel} {label_rel}\n")
        result["instances"][split] = n_instances
        if "det" in kinds:
            os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
            anno_rel = f"annotations/instances_{split}.json"
            coco = {"info": {"description": f"digit canvases ({split}) from scikit-learn's handwritten digits",
                             "version": "1.0"},
                    "licenses": [], "images": images, "annotations": annotations, "categories": categories}
            with open(os.path.join(root, anno_rel), "w", encoding="utf-8") as f:
                json.dump(coco, f, separators=(",", ":"))
            det["image_dir"][split] = f"images/{split}"
            det["anno_path"][split] = anno_rel
            det["ann_file"][split] = os.path.join(result["root"], anno_rel)
        if "seg" in kinds:
            list_path = os.path.join(result["root"], "seg", f"{split}.txt")
            with open(list_path, "w", encoding="utf-8") as f:
                f.writelines(seg_lines)
            seg[f"{split}_path"] = list_path
    if "det" in kinds:
        result["det"] = det
    if "seg" in kinds:
        labels_txt = os.path.join(result["root"], "seg", "labels.txt")
        with open(labels_txt, "w", encoding="utf-8") as f:
            f.write("background\n" + "".join(f"{d}\n" for d in range(NUM_DIGITS)))
        seg["labels_txt"] = labels_txt
        result["seg"] = seg
    return result
