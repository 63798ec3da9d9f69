"""Write the quick start's demo dataset: scikit-learn's handwritten digits as JPEG files plus
PaddleClas train/val lists.   python tools/make_demo_dataset.py [--out dataset/digits] [--size 32]
Or segmentation shapes:      python tools/make_demo_dataset.py --kind shapes --out dataset/shapes --size 64"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.utils.demo_data import make_digits_dataset, make_shapes_dataset  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="dataset/digits")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--kind", choices=["digits", "shapes"], default="digits",
                   help="digits: classification; shapes: circles on noise with masks (ReXUNet)")
    a = p.parse_args()
    make = make_digits_dataset if a.kind == "digits" else make_shapes_dataset
    n_train, n_val = make(a.out, size=a.size)
    print(f"wrote {n_train} train and {n_val} val images to {a.out}")
