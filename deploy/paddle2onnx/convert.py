"""Convert an exported model (inference.json + inference.pdiparams) to inference.onnx with paddle2onnx
(dynamic batch), then check it in onnxruntime against Paddle Inference on a random batch.

    python deploy/paddle2onnx/convert.py MODEL_DIR [--opset 11] [--no-check]"""
import argparse
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

from ppcls.engine.cli import run_guarded  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402


def convert(model_dir, opset=11):
    model_file = next((f for f in ("inference.json", "inference.pdmodel")
                       if os.path.isfile(os.path.join(model_dir, f))), None)
    if model_file is None or not os.path.isfile(os.path.join(model_dir, "inference.pdiparams")):
        raise ConfigError(f"{model_dir}: no exported model (inference.json + inference.pdiparams); "
                          "run tools/export_model.py first")
    exe = shutil.which("paddle2onnx")
    cmd = ([exe] if exe else [sys.executable, "-m", "paddle2onnx.command"]) + [
        "--model_dir", model_dir, "--model_filename", model_file, "--params_filename", "inference.pdiparams",
        "--save_file", os.path.join(model_dir, "inference.onnx"), "--opset_version", str(opset),
        "--enable_onnx_checker", "True"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    out = os.path.join(model_dir, "inference.onnx")
    if r.returncode != 0 or not os.path.isfile(out):
        text = r.stdout + r.stderr
        ops = sorted(set(re.findall(r"(?:not supported|unsupported)[^\n]*?\b([a-z0-9_]+(?:_op)?)\b", text, re.I)))
        named = re.findall(r"Operator[: ]+\[?([A-Za-z0-9_]+)\]?", text)
        model = _model_name(model_dir)
        which = ", ".join(sorted(set(named) | set(ops))) or "see paddle2onnx's output"
        raise ConfigError(f"paddle2onnx could not convert {model} ({model_dir}): unsupported op(s): {which}")
    return out


def _model_name(model_dir):
    try:
        import yaml
        with open(os.path.join(model_dir, "inference.yml")) as f:
            return (yaml.safe_load(f) or {}).get("model", "the model")
    except OSError:
        return "the model"


def check(model_dir, batch=2, rtol=1e-4):
    """Max abs difference between onnxruntime and Paddle Inference on a random batch."""
    import numpy as np
    from ppcls.inference.predictor import Predictor, read_meta
    shape = read_meta(model_dir).get("image_shape", [3, 224, 224])
    x = np.random.RandomState(0).rand(batch, *shape).astype("float32")
    paddle_out = Predictor({"enable_mkldnn": True}, model_dir).run(x)
    onnx_out = Predictor({"use_onnx": True}, model_dir).run(x)
    diff = float(np.abs(paddle_out - onnx_out).max())
    scale = max(1.0, float(np.abs(paddle_out).max()))
    return diff, diff <= rtol * scale


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--opset", type=int, default=11)
    p.add_argument("--no-check", action="store_true")
    a = p.parse_args()

    def go():
        out = convert(a.model_dir, a.opset)
        print(f"wrote {out}")
        if not a.no_check:
            diff, ok = check(a.model_dir)
            print(f"onnxruntime vs Paddle Inference: max abs diff {diff:.3g}")
            if not ok:
                raise ConfigError(f"{out}: onnxruntime output differs from Paddle Inference by {diff:.3g}")
    run_guarded(go)


if __name__ == "__main__":
    main()
