"""Detection + segmentation demo data (nothing is downloaded): the quick start's handwritten digits
pasted onto textured canvases, with exact COCO boxes / polygons and PaddleSeg label maps.

    python tools/det/make_demo_dataset.py --out dataset/det_digits [--train 160 --val 40 --size 128 --seed 0]

Writes annotations/instances_{train,val}.json + images/{train,val}/ (PaddleDetection's COCODataSet:
dataset_dir=OUT, image_dir=images/train, anno_path=annotations/instances_train.json, num_classes 10)
and seg/{images,labels}/, seg/train.txt, seg/val.txt, seg/labels.txt (PaddleSeg's Dataset:
dataset_root=OUT, train_path=OUT/seg/train.txt, num_classes 11)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppcls.utils.errors import ConfigError, run_guarded  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="dataset/det_digits", help="output folder")
    p.add_argument("--train", type=int, default=160, help="training canvases")
    p.add_argument("--val", type=int, default=40, help="validation canvases")
    p.add_argument("--size", type=int, nargs="+", default=[128], metavar="PX",
                   help="canvas size: one number (square) or H W")
    p.add_argument("--digits", type=int, nargs=2, default=[1, 4], metavar=("MIN", "MAX"),
                   help="digits per canvas")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", default="det,seg", help="what to write: det, seg or det,seg")
    a = p.parse_args(argv)
    if len(a.size) not in (1, 2):
        raise ConfigError(f"--size: one number or two (H W), got {len(a.size)}")
    from ppcls.data.dataset.digit_canvas import make_digit_canvas_dataset
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    r = make_digit_canvas_dataset(a.out, n_train=a.train, n_val=a.val,
                                  canvas=tuple(a.size) if len(a.size) == 2 else a.size[0],
                                  digits_per_image=tuple(a.digits), seed=a.seed, kinds=kinds)
    print(f"wrote {r['train']} train and {r['val']} val canvases ({r['instances']['train']} + "
          f"{r['instances']['val']} digits) to {a.out}")
    if "det" in r:
        d = r["det"]
        print(f"  detection (COCO): dataset_dir={a.out} image_dir={d['image_dir']['train']} "
              f"anno_path={d['anno_path']['train']} (val: {d['image_dir']['val']}, {d['anno_path']['val']}), "
              f"num_classes={d['num_classes']}")
    if "seg" in r:
        s = r["seg"]
        print(f"  segmentation (PaddleSeg): dataset_root={a.out} train_path={os.path.relpath(s['train_path'])} "
              f"val_path={os.path.relpath(s['val_path'])} num_classes={s['num_classes']}")
    return r


if __name__ == "__main__":
    run_guarded(main)
