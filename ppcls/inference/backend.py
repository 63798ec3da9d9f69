"""Which backend runs an exported model: the rule the deploy predictor follows for ``Global.backend:
auto``, reading the probe that tools/export_model.py stored as ``backend.json`` beside the model (Paddle
Inference vs onnxruntime timed on this machine, ``ppcls.inference.probe``).

This module sits below the predictor and imports none of it: the predictor asks it which backend to
run; the probe, which runs predictors, lives above both.

``backend.json``::

    {"backend": "onnxruntime",                  # the faster one at batch 1
     "by_batch": {"1": "onnxruntime", "8": "onnxruntime"},
     "images_per_s": {"paddle": {"1": 45.0, "8": 51.2}, "onnxruntime": {"1": 120.1, "8": 131.0}},
     "threads": 2, "image_shape": [3, 224, 224], "measured": "2026-12-01T09:30:00", "reason": "..."}

An INT8 folder (tools/quantize.py) holds only an ONNX model; its backend.json names onnxruntime and
records the int8 and fp32 speeds instead.
"""
import json
import os
import statistics
import time

import numpy as np

from ..utils.errors import ConfigError

BACKENDS = ("auto", "paddle", "onnxruntime")
BACKEND_FILE = "backend.json"
LABELS = {"paddle": "Paddle Inference", "onnxruntime": "onnxruntime"}


def has_paddle_model(model_dir):
    return os.path.isfile(os.path.join(model_dir, "inference.pdiparams")) and any(
        os.path.isfile(os.path.join(model_dir, f)) for f in ("inference.json", "inference.pdmodel"))


def has_onnx_model(model_dir):
    return os.path.isfile(os.path.join(model_dir, "inference.onnx"))


def read_probe(model_dir):
    """The stored probe of ``model_dir`` (a dict), or None when there is none or it is unreadable."""
    path = os.path.join(model_dir, BACKEND_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("backend") in ("paddle", "onnxruntime") else None


def write_probe(model_dir, data):
    with open(os.path.join(model_dir, BACKEND_FILE), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    return data


def onnxruntime_available():
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _nearest_batch(by_batch, batch_size):
    sizes = sorted(int(b) for b in by_batch)
    return min(sizes, key=lambda b: (abs(b - int(batch_size or 1)), b))


def speeds(probe, batch):
    ips = probe.get("images_per_s") or {}
    parts = [f"{LABELS.get(k, k)} {v[str(batch)]:.1f}" for k, v in ips.items()
             if isinstance(v, dict) and v.get(str(batch)) is not None]
    return " vs ".join(parts)


def resolve_backend(g, model_dir):
    """(backend, why) for the settings ``g`` of the deploy predictor and the folder ``model_dir``.
    ``use_onnx: True`` is an alias of ``backend: onnxruntime``; a settings dict without ``backend``
    means Paddle Inference (the predictor's behaviour before ``auto`` existed)."""
    explicit = g.get("backend")
    backend = explicit or "paddle"
    if backend not in BACKENDS:
        raise ConfigError(f"Global.backend: auto, paddle or onnxruntime, got {backend!r}")
    if g.get("use_onnx"):
        if explicit == "paddle":
            raise ConfigError("Global.use_onnx: True contradicts Global.backend: paddle (use_onnx is an alias of "
                              "backend: onnxruntime; set one of them)")
        return "onnxruntime", "Global.use_onnx: True"
    if backend != "auto":
        return backend, f"Global.backend: {backend}"
    paddle_ok, onnx_ok = has_paddle_model(model_dir), has_onnx_model(model_dir) and onnxruntime_available()
    if g.get("use_gpu"):
        if paddle_ok:
            return "paddle", "auto on GPU: Paddle Inference (the stored probe measures the CPU)"
        return "onnxruntime", "auto: the folder holds only inference.onnx"
    probe = read_probe(model_dir)
    if probe is not None:
        by_batch = probe.get("by_batch") or {}
        if by_batch:
            batch = _nearest_batch(by_batch, g.get("batch_size", 1))
            choice = by_batch[str(batch)]
            measured = f"{speeds(probe, batch)} img/s at batch {batch}, {probe.get('threads', '?')} threads"
        else:
            choice, measured = probe["backend"], probe.get("reason", "")
        why = f"auto: {os.path.join(model_dir, BACKEND_FILE)} ({measured})"
        if (choice == "paddle" and paddle_ok) or (choice == "onnxruntime" and onnx_ok):
            return choice, why
        other = "onnxruntime" if choice == "paddle" else "paddle"
        if (other == "paddle" and paddle_ok) or (other == "onnxruntime" and onnx_ok):
            return other, f"auto: the probe chose {LABELS[choice]} but it cannot run here ({why})"
    if paddle_ok:
        return "paddle", "auto: no backend probe stored (export with tools/export_model.py to measure one)"
    if onnx_ok:
        return "onnxruntime", "auto: the folder holds only inference.onnx"
    return "paddle", "auto: no model found"


def time_interleaved(runners, batch, seconds=1.0, rounds=3):
    """images/s of each callable in ``runners`` (name -> fn(x)) on one random batch, measured in
    alternating rounds (A B A B ...) so that drift in the machine's speed affects all alike; the
    median round of each."""
    shape = batch
    x = np.random.RandomState(0).rand(*shape).astype("float32")
    steps = {}
    for name, fn in runners.items():  # warm-up, then size each round to ~seconds/rounds
        fn(x)
        t0 = time.perf_counter()
        fn(x)
        dt = max(time.perf_counter() - t0, 1e-6)
        steps[name] = max(1, int(seconds / rounds / dt))
    rates = {name: [] for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            for _ in range(steps[name]):
                fn(x)
            rates[name].append(shape[0] * steps[name] / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}
