"""Classify images with an exported model through Paddle Inference (or onnxruntime).

    python deploy/python/predict_cls.py -c deploy/configs/inference_cls.yaml \
        -o Global.inference_model_dir=inference/DLA34 -o Global.infer_imgs=images/
Runs from the repository root or from deploy/; loads no training code."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppcls.cli import run  # noqa: E402

if __name__ == "__main__":
    run("deploy")
