"""python tools/train.py -c CONFIG [-o key=value ...]   (= ppcls train; also under paddle.distributed.launch)"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.cli import run  # noqa: E402

if __name__ == "__main__":
    run("train")
