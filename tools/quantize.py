"""python tools/quantize.py -c CONFIG --model-dir EXPORTED --out OUT [--calib-images N]   (= ppcls quantize)"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.cli import run  # noqa: E402

if __name__ == "__main__":
    run("quantize")
