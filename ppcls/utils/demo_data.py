"""Small datasets made on the spot, in PaddleClas's list format: the quick start's handwritten digits
(the 1797 real 8x8 images that scikit-learn ships) and synthetic images for tests."""
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


def make_synthetic_dataset(root, num_classes=3, per_class=8, size=32, val_per_class=4, seed=0, ext="jpg"):
    """Class c is a noisy image with a bright square in a class-specific position: learnable in a few
    steps. Writes train_list.txt / val_list.txt under ``root``."""
    rng = np.random.RandomState(seed)
    out = {}
    for split, n in (("train", per_class), ("val", val_per_class)):
        items = []
        os.makedirs(os.path.join(root, split), exist_ok=True)
        for c in range(num_classes):
            for j in range(n):
                img = rng.randint(0, 60, (size, size, 3)).astype(np.uint8)
                s = size // 3
                x = (c * s) % (size - s + 1)
                y = ((c * 7) // 3 * s) % (size - s + 1)
                img[y:y + s, x:x + s] = (200 + 50 * (c % 2), 80 * (c % 3), 255 - 40 * c % 256)
                rel = f"{split}/c{c}_{j}.{ext}"
                cv2.imwrite(os.path.join(root, rel), img)
                items.append((rel, c))
        _write_split(root, split, items)
        out[split] = items
    return out


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
