"""python tools/export_model.py -c CONFIG -o Global.pretrained_model=PATH [-o key=value ...]   (= ppcls export)"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.cli import run  # noqa: E402

if __name__ == "__main__":
    run("export")
