"""Convert an exported model (inference.json + inference.pdiparams) to inference.onnx with paddle2onnx
(dynamic batch), then check it in onnxruntime against Paddle Inference on a random batch.

    python deploy/paddle2onnx/convert.py MODEL_DIR [--opset 11] [--no-check]"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppcls.cli import run  # noqa: E402

if __name__ == "__main__":
    run("onnx")
