"""python tools/benchmark.py -a DLA34 --batch-size 8 --mode train,infer,predictor,onnx   (= ppcls benchmark)"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.cli import run  # noqa: E402

if __name__ == "__main__":
    run("benchmark")
