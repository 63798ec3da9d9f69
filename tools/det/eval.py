"""PaddleDetection's tools/eval.py for this project: ``python tools/det/eval.py -c CONFIG [-o k=v]
...`` (the same as ``ppcls det eval``)."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppcls.det.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["eval"] + sys.argv[1:])
