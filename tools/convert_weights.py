"""python tools/convert_weights.py -a DLA60 --src dla60-24839fc4.pth --dst DLA60_pretrained.pdparams   (= ppcls convert)"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.cli import run  # noqa: E402

if __name__ == "__main__":
    run("convert")
