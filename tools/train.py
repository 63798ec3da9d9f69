"""python tools/train.py -c CONFIG [-o key=value ...]"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.engine.cli import main  # noqa: E402

if __name__ == "__main__":
    main("train")
