"""An exported model (inference.json + inference.pdiparams) as ``inference.onnx`` through paddle2onnx
(dynamic batch), checked in onnxruntime against Paddle Inference. Above the predictor, which it runs
for the check; the predictor never converts."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import yaml

from ..utils.errors import ConfigError
from .predictor import Predictor, read_meta


def model_file(model_dir):
    return next((f for f in ("inference.json", "inference.pdmodel") if os.path.isfile(os.path.join(model_dir, f))), None)


def _model_name(model_dir):
    try:
        with open(os.path.join(model_dir, "inference.yml")) as f:
            return (yaml.safe_load(f) or {}).get("model", "the model")
    except OSError:
        return "the model"


def convert_to_onnx(model_dir, opset=11):
    """Write ``model_dir/inference.onnx``; a one-line error names the ops paddle2onnx refused."""
    graph = model_file(model_dir)
    if graph is None or not os.path.isfile(os.path.join(model_dir, "inference.pdiparams")):
        raise ConfigError(f"{model_dir}: no exported model (inference.json + inference.pdiparams); "
                          "run tools/export_model.py first")
    out = os.path.join(model_dir, "inference.onnx")
    exe = shutil.which("paddle2onnx")
    cmd = ([exe] if exe else [sys.executable, "-m", "paddle2onnx.command"]) + [
        "--model_dir", model_dir, "--model_filename", graph, "--params_filename", "inference.pdiparams",
        "--save_file", out, "--opset_version", str(opset), "--enable_onnx_checker", "True"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not os.path.isfile(out):
        text = r.stdout + r.stderr
        ops = set(re.findall(r"(?:not supported|unsupported)[^\n]*?\b([a-z0-9_]+(?:_op)?)\b", text, re.I))
        named = set(re.findall(r"Operator[: ]+\[?([A-Za-z0-9_]+)\]?", text))
        which = ", ".join(sorted(named | ops)) or "see paddle2onnx's output"
        raise ConfigError(f"paddle2onnx could not convert {_model_name(model_dir)} ({model_dir}): unsupported op(s): {which}")
    from .onnx_metadata import write_onnx_metadata
    from .paddleclas_deploy import mark_onnx
    write_onnx_metadata(out, read_meta(model_dir), os.path.join(model_dir, "inference.yml"))
    mark_onnx(model_dir)
    return out


def compare_backends(model_dir, batch=2, rtol=1e-4):
    """(max abs difference between onnxruntime and Paddle Inference on a random batch, within rtol?)"""
    shape = read_meta(model_dir).get("image_shape", [3, 224, 224])
    x = np.random.RandomState(0).rand(batch, *shape).astype("float32")
    paddle_out = Predictor({"enable_mkldnn": True}, model_dir).run(x)
    onnx_out = Predictor({"use_onnx": True}, model_dir).run(x)
    diff = float(np.abs(paddle_out - onnx_out).max())
    return diff, diff <= rtol * max(1.0, float(np.abs(paddle_out).max()))
