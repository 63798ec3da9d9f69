"""The backend probe of tools/export_model.py: Paddle Inference (oneDNN) and onnxruntime timed on the
exported model, at a few batch sizes, in alternating rounds; the result is stored as ``backend.json``
(format in ``ppcls.inference.backend``), which the deploy predictor's ``backend: auto`` follows.

It runs predictors and converts to ONNX, so it sits above ``predictor`` and ``onnx``; ``backend``
(the rule that reads the result) sits below the predictor.
"""
import time

from ..utils.device import available_cores
from ..utils.errors import ConfigError
from .backend import LABELS, has_onnx_model, onnxruntime_available, speeds, time_interleaved, write_probe
from .onnx import convert_to_onnx
from .predictor import Predictor, read_meta


def probe_backends(model_dir, threads=0, batch_sizes=(1, 8), seconds=1.0, write=True):
    """Time Paddle Inference (oneDNN) and onnxruntime on the exported model in ``model_dir``
    (converting it to inference.onnx first when it has none) and store the result as backend.json.
    Returns the stored dict. A backend that cannot run the model is recorded with the reason."""
    threads = int(threads or 0) or available_cores()
    shape = list(read_meta(model_dir).get("image_shape") or [3, 224, 224])
    runners, failed = {}, {}
    try:
        runners["paddle"] = Predictor({"backend": "paddle", "cpu_num_threads": threads}, model_dir, announce=False).run
    except Exception as e:  # noqa: BLE001 - recorded, the other backend may still run
        failed["paddle"] = str(e).strip().splitlines()[-1][:300]
    if not onnxruntime_available():
        failed["onnxruntime"] = "onnxruntime is not installed"
    else:
        try:
            if not has_onnx_model(model_dir):
                convert_to_onnx(model_dir)
            runners["onnxruntime"] = Predictor({"backend": "onnxruntime", "cpu_num_threads": threads}, model_dir, announce=False).run
        except Exception as e:  # noqa: BLE001
            failed["onnxruntime"] = str(e).strip().splitlines()[-1][:300]
    if not runners:
        raise ConfigError(f"{model_dir}: neither Paddle Inference nor onnxruntime runs the model "
                          f"({'; '.join(f'{k}: {v}' for k, v in failed.items())})")
    ips = {name: {} for name in runners}
    by_batch = {}
    for b in batch_sizes:
        r = time_interleaved(runners, [int(b)] + shape, seconds=seconds)
        for name, v in r.items():
            ips[name][str(b)] = round(v, 2)
        by_batch[str(b)] = max(r, key=r.get)
    first = str(batch_sizes[0])
    data = {"backend": by_batch[first], "by_batch": by_batch, "images_per_s": ips, "threads": threads,
            "image_shape": shape, "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "reason": f"faster in the export probe at batch {first}: {speeds({'images_per_s': ips}, first)} img/s"}
    if failed:
        data["unavailable"] = failed
        data["reason"] += "; " + "; ".join(f"{LABELS[k]} unavailable: {v}" for k, v in failed.items())
    return write_probe(model_dir, data) if write else data
