"""Write the segmentation demo: handwritten digits on canvases with exact masks, in PaddleSeg's Dataset
layout (root/seg/{images,labels}/{train,val}, root/seg/train.txt, val.txt; 11 classes).

    python tools/seg/make_digits.py --root dataset/digit_canvas [--n_train 160 --n_val 40 --canvas 128]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppcls.utils.errors import run_guarded  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="dataset/digit_canvas")
    p.add_argument("--n_train", type=int, default=160)
    p.add_argument("--n_val", type=int, default=40)
    p.add_argument("--canvas", type=int, default=128, help="side in pixels (a multiple of 32 for the zoo's networks)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from ppcls.data.dataset.digit_canvas import make_digit_canvas_dataset
    out = make_digit_canvas_dataset(args.root, n_train=args.n_train, n_val=args.n_val, canvas=args.canvas,
                                    seed=args.seed, kinds=("seg",))
    seg = out["seg"]
    print(f"wrote {out['train']} train / {out['val']} val canvases ({seg['num_classes']} classes) under "
          f"{out['root']}: {seg['train_path']}, {seg['val_path']}")


if __name__ == "__main__":
    run_guarded(main)
