"""File-list datasets (PaddleClas format) and image folders."""
import os

from ...utils.errors import ConfigError
from .common import ImageDataset, check_dir, check_file
from .registry import register_dataset

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def parse_file_list(list_path, image_root, delimiter=None, class_num=None, relabel=False):
    """``relative/path.jpg label`` per line. The label is the last field, so paths may contain the
    delimiter (spaces). Blank lines and ``#`` comments are ignored; any other malformed line is an
    error naming the file and line."""
    samples = []
    with open(list_path, "r", encoding="utf-8", errors="strict") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError:
            raise ConfigError(f"{list_path}: not a UTF-8 text file list") from None
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.rsplit(delimiter, 1) if delimiter else text.rsplit(None, 1)
        if len(parts) != 2 or not parts[0].strip():
            raise ConfigError(f"{list_path}:{lineno}: expected 'path label', got {text[:80]!r}")
        path, label = parts[0].strip(), parts[1].strip()
        try:
            label = int(label)
        except ValueError:
            raise ConfigError(f"{list_path}:{lineno}: label {label!r} is not an integer") from None
        if not relabel and (label < 0 or (class_num is not None and label >= class_num)):
            raise ConfigError(f"{list_path}:{lineno}: label {label} outside 0..{(class_num or 0) - 1}")
        samples.append((os.path.join(image_root, path), label))
    if relabel:
        mapping = {v: i for i, v in enumerate(sorted({s[1] for s in samples}))}
        samples = [(p, mapping[l]) for p, l in samples]
    if not samples:
        raise ConfigError(f"{list_path}: the file list has no samples")
    return samples


@register_dataset
class ImageNetDataset(ImageDataset):
    def __init__(self, image_root, cls_label_path, transform_ops=None, delimiter=None, relabel=False,
                 class_num=None, skip_bad_images=True, max_bad_images=1000):
        super().__init__(transform_ops, skip_bad_images, max_bad_images)
        check_dir(image_root, "dataset.image_root")
        check_file(cls_label_path, "dataset.cls_label_path")
        self.samples = parse_file_list(cls_label_path, image_root, delimiter, class_num, relabel)


@register_dataset
class ImageFolderDataset(ImageDataset):
    """One sub-folder per class (sorted names -> labels 0..K-1)."""

    def __init__(self, root, transform_ops=None, class_num=None, skip_bad_images=True, max_bad_images=1000):
        super().__init__(transform_ops, skip_bad_images, max_bad_images)
        check_dir(root, "dataset.root")
        self.classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        if not self.classes:
            raise ConfigError(f"dataset.root: {root} has no class sub-folders")
        if class_num is not None and len(self.classes) > class_num:
            raise ConfigError(f"dataset.root: {root} has {len(self.classes)} classes, Arch.class_num is {class_num}")
        for label, cls in enumerate(self.classes):
            folder = os.path.join(root, cls)
            for dirpath, _, files in sorted(os.walk(folder)):
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_EXTS):
                        self.samples.append((os.path.join(dirpath, name), label))
        if not self.samples:
            raise ConfigError(f"dataset.root: no images under {root}")
