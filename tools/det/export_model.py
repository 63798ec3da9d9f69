"""PaddleDetection's tools/export_model.py for this project: ``python tools/det/export_model.py -c CONFIG [-o k=v]
[--output_dir DIR]`` (the same as ``ppcls det export``)."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppcls.det.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["export"] + sys.argv[1:])
