"""PaddleDetection's tools/train.py for this project: ``python tools/det/train.py -c CONFIG [-o k=v] [--eval]
[-r CKPT]`` (the same as ``ppcls det train``)."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppcls.det.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["train"] + sys.argv[1:])
