"""Rebuild the alignment fixtures (tests/fixtures/alignment, copied from the shared reference outputs)
and compare a project model against them. See the fixture README for the recipe."""
import hashlib
import json
import os
from collections import OrderedDict

import numpy as np

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "alignment")


def load_fixture(name, folder=None):
    """Returns (meta, weights in the original's layout (OrderedDict), input x, [expected outputs]) of the
    fixture ``name`` in ``folder`` (default: the alignment fixtures)."""
    folder = folder or FIXTURES
    with open(os.path.join(folder, f"{name}.json")) as f:
        meta = json.load(f)
    data = np.load(os.path.join(folder, f"{name}.npz"))
    rng = np.random.Generator(np.random.PCG64(meta["seed"]))
    weights = OrderedDict()
    for entry in meta["manifest"]:
        key, shape, kind = entry["key"], tuple(entry["shape"]), entry["kind"]
        if kind in ("bn_mean", "bn_var"):
            weights[key] = data[f"bn/{key}"].astype(np.float32)
            continue
        n = rng.standard_normal(shape)
        if kind == "weight":
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            v = n * np.sqrt(1.0 / fan_in)
        elif kind == "bias":
            v = 0.05 * n
        elif kind == "bn_weight":
            v = 1 + 0.1 * n
        elif kind in ("bn_bias", "other"):
            v = 0.1 * n
        else:
            raise ValueError(f"unknown manifest kind {kind} for {key}")
        weights[key] = v.astype(np.float32)
    h = hashlib.sha256()
    drawn = sorted(e["key"] for e in meta["manifest"] if e["kind"] not in ("bn_mean", "bn_var"))
    for key in drawn:
        h.update(key.encode("utf-8"))
        h.update(np.ascontiguousarray(weights[key]).tobytes())
    assert h.hexdigest() == meta["weights_sha256"], f"{name}: weight rebuild does not match the fixture"
    x = np.random.Generator(np.random.PCG64(meta["seed"] + 1)).standard_normal(meta["input_shape"]).astype(np.float32)
    assert hashlib.sha256(x.tobytes()).hexdigest() == meta["input_sha256"], f"{name}: input rebuild mismatch"
    expected = [data[o] for o in meta["outputs"]]
    return meta, weights, x, expected


def tolerance(meta):
    return max(1e-3, 10 * meta["reference_f32_rel_err"])


def relative_errors(outputs, expected):
    outs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    assert len(outs) == len(expected), f"{len(outs)} outputs, fixture has {len(expected)}"
    errs = []
    for o, e in zip(outs, expected):
        o = np.asarray(o.numpy() if hasattr(o, "numpy") else o, dtype=np.float64)
        assert o.shape == e.shape, f"output shape {o.shape} != fixture {e.shape}"
        errs.append(float(np.linalg.norm(o - e) / np.linalg.norm(e)))
    return errs


def check_model_against_fixture(fixture, arch_name, arch_kwargs=None):
    """Build ``arch_name``, convert the fixture weights with the project's converter, run, compare.
    Returns (errors, tolerance, params, macs, meta)."""
    import paddle
    from ppcls.arch import build_model
    from ppcls.arch.convert import convert_state_dict, get_rules
    from ppcls.utils.model_stats import count_macs, count_params

    meta, weights, x, expected = load_fixture(fixture)
    model = build_model(dict(name=arch_name, **(arch_kwargs or {})))
    state, dropped = convert_state_dict(model, weights, get_rules(arch_name))
    assert sorted(dropped) == sorted(meta.get("unused_keys", [])), \
        f"dropped {sorted(set(dropped) ^ set(meta.get('unused_keys', [])))}"
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(x))
    errs = relative_errors(out, expected)
    params = count_params(model)
    macs = count_macs(model, [1] + list(meta["input_shape"][1:]))
    return errs, tolerance(meta), params, macs, meta
