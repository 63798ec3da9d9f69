"""Checks of a PaddleSeg ``Dataset`` before any training or evaluation starts.

PaddleSeg's own ``Dataset`` (``type: Dataset`` with ``dataset_root``, ``train_path`` / ``val_path``) finds
bad samples late or never: a list line with one column stops it with a message naming neither file nor
line, a missing file fails inside a data-loader worker, label values above ``num_classes`` reach the loss
(a CUDA assert, or silently wrong metrics on CPU), and a label of another size than its image is cropped
with it. Here every line of the list is read once, as PaddleSeg reads it (PIL: a palette PNG gives its
indices), and the first problem is one line naming the list file and line.
"""
import os

import numpy as np
from PIL import Image

from ..utils.errors import ConfigError

LIST_KEYS = {"train": "train_path", "val": "val_path"}


def check_list(list_path, dataset_root, num_classes, ignore_index=255, separator=" "):
    """Check every ``image label`` line of ``list_path``; returns the number of samples."""
    if not os.path.isfile(list_path):
        raise ConfigError(f"file list not found: {list_path}")
    count = 0
    with open(list_path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            where = f"{list_path}:{lineno}"
            text = line.strip()
            items = text.split(separator) if text else []
            if len(items) != 2:
                raise ConfigError(f"{where}: expected 2 columns 'image{separator}label', found {len(items)}: {text[:80]!r}")
            image_path, label_path = (os.path.join(dataset_root, p) for p in items)
            for kind, path in (("image", image_path), ("label", label_path)):
                if not os.path.isfile(path):
                    raise ConfigError(f"{where}: {kind} file not found: {path}")
            try:
                with Image.open(image_path) as im:
                    image_size = im.size
                with Image.open(label_path) as lab:
                    label = np.asarray(lab)
            except OSError as e:
                raise ConfigError(f"{where}: cannot read {e}") from None
            if label.ndim != 2:
                raise ConfigError(f"{where}: label {label_path} has {label.shape[2]} channels; a label is one channel "
                                  "of class ids (a grey or palette PNG)")
            if (label.shape[1], label.shape[0]) != image_size:
                raise ConfigError(f"{where}: label {label_path} is {label.shape[1]}x{label.shape[0]} but image "
                                  f"{image_path} is {image_size[0]}x{image_size[1]} (width x height)")
            values = np.unique(label)
            bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_index)]
            if bad.size:
                shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
                raise ConfigError(f"{where}: label {label_path} has values {shown} outside 0..{num_classes - 1} "
                                  f"(num_classes {num_classes}; ignore_index {ignore_index})")
            count += 1
    if count == 0:
        raise ConfigError(f"{list_path}: the file list has no samples")
    return count


def check_dataset_config(dataset_cfg, mode, where):
    """Check a config's ``train_dataset`` / ``val_dataset`` section when it is PaddleSeg's ``Dataset``
    (other dataset types are PaddleSeg's built-in sets with their own layouts); ``where`` names it."""
    if not isinstance(dataset_cfg, dict) or dataset_cfg.get("type") != "Dataset":
        return None
    for key in ("dataset_root", "num_classes", LIST_KEYS[mode]):
        if dataset_cfg.get(key) in (None, ""):
            raise ConfigError(f"{where}.{key}: required by type Dataset")
    root = dataset_cfg["dataset_root"]
    if not os.path.isdir(root):
        raise ConfigError(f"{where}.dataset_root: not a directory: {root}")
    return check_list(dataset_cfg[LIST_KEYS[mode]], root, int(dataset_cfg["num_classes"]),
                      int(dataset_cfg.get("ignore_index", 255)), dataset_cfg.get("separator", " "))
