"""PaddleSeg's tools/train.py with this project's networks: the same as `ppcls seg train` (flags: --help)."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppcls.cli import run  # noqa: E402

if __name__ == "__main__":
    run("seg", ["train"] + sys.argv[1:])
