"""python tools/paras_flops.py -a RLA_ResNet50 [--input-size 224] [-o rla_channel=12] [--json]   (= ppcls flops)"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.cli import run  # noqa: E402

if __name__ == "__main__":
    run("flops")
