"""Demo datasets in PaddleClas's list format, written on the spot (nothing is downloaded):

    python tools/make_demo_dataset.py [--out dataset/digits] [--size 32]      the quick start's digits
    python tools/make_demo_dataset.py --kind shapes --out dataset/shapes --size 64   ReXUNet's circles
    python tools/make_demo_dataset.py --kind photos --out dataset/photos      real-size JPEG stand-ins

digits: the 1797 real 8x8 handwritten digits that scikit-learn ships, upscaled, as JPEG files with
train/val lists and a label list. shapes: filled circles on noise with binary masks. photos: 500x375
smooth colour fields with noise at JPEG quality 90, for measuring a training pipeline
(``ppcls benchmark --mode data,pipeline``)."""
import argparse
import os

import cv2
import numpy as np


def _write_split(root, name, items):
    with open(os.path.join(root, f"{name}_list.txt"), "w", encoding="utf-8") as f:
        for rel, label in items:
            f.write(f"{rel} {label}\n")


def make_digits_dataset(root, size=32, val_fraction=0.2, seed=0):
    """Writes ``root/images/{train,val}/<i>.jpg``, ``train_list.txt``, ``val_list.txt`` and
    ``label_list.txt`` (``id name``). Returns (n_train, n_val)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    imgs = (digits.images / 16.0 * 255.0).clip(0, 255).astype(np.uint8)
    labels = digits.target.astype(int)
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(imgs))
    n_val = int(round(len(imgs) * val_fraction))
    splits = {"val": order[:n_val], "train": order[n_val:]}
    for split, idx in splits.items():
        os.makedirs(os.path.join(root, "images", split), exist_ok=True)
        items = []
        for i in idx:
            big = cv2.resize(imgs[i], (size, size), interpolation=cv2.INTER_CUBIC)
            rgb = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
            rel = f"images/{split}/{i:04d}.jpg"
            cv2.imwrite(os.path.join(root, rel), rgb, [cv2.IMWRITE_JPEG_QUALITY, 95])
            items.append((rel, int(labels[i])))
        _write_split(root, split, items)
    with open(os.path.join(root, "label_list.txt"), "w", encoding="utf-8") as f:
        for c in range(10):
            f.write(f"{c} digit {c}\n")
    return len(splits["train"]), len(splits["val"])


def make_shapes_dataset(root, n_train=96, n_val=24, size=64, seed=0):
    """Filled circles (one to three, random radius and colour) on noise, with binary masks; writes
    ``train_list.txt`` / ``val_list.txt`` of ``image mask`` lines."""
    rng = np.random.RandomState(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        lines = []
        for i in range(n):
            img = rng.randint(0, 256, (size, size, 3)).astype(np.uint8)
            img = cv2.GaussianBlur(img, (3, 3), 0)
            mask = np.zeros((size, size), np.uint8)
            for _ in range(rng.randint(1, 4)):
                r = rng.randint(size // 7, size // 3)
                c = (int(rng.randint(r, size - r)), int(rng.randint(r, size - r)))
                colour = tuple(int(v) for v in rng.randint(0, 256, 3))
                cv2.circle(img, c, r, colour, -1)
                cv2.circle(mask, c, r, 255, -1)
            cv2.imwrite(os.path.join(root, split, f"{i:04d}.png"), img)
            cv2.imwrite(os.path.join(root, split, f"{i:04d}_mask.png"), mask)
            lines.append(f"{split}/{i:04d}.png {split}/{i:04d}_mask.png")
        with open(os.path.join(root, f"{split}_list.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return n_train, n_val


def make_photos_dataset(root, n=64, size=(500, 375), quality=90, seed=0):
    """Real-size photograph stand-ins with a ``list.txt`` of 10 classes. Returns the list's path."""
    rng = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    with open(os.path.join(root, "list.txt"), "w") as f:
        for i in range(n):
            base = np.stack([(xx * rng.uniform(0.2, 0.6) + yy * rng.uniform(0.1, 0.5) + rng.uniform(0, 255)) % 256
                             for _ in range(3)], -1)
            img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
            name = f"{i:04d}.jpg"
            cv2.imwrite(os.path.join(root, name), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            f.write(f"{name} {i % 10}\n")
    return os.path.join(root, "list.txt")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="dataset/digits")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--count", type=int, default=64, help="photos: how many")
    p.add_argument("--kind", choices=["digits", "shapes", "photos"], default="digits")
    a = p.parse_args()
    if a.kind == "photos":
        make_photos_dataset(a.out, n=a.count)
        n_train, n_val = a.count, 0
    else:
        n_train, n_val = (make_digits_dataset if a.kind == "digits" else make_shapes_dataset)(a.out, size=a.size)
    print(f"wrote {n_train} train and {n_val} val images to {a.out}")
