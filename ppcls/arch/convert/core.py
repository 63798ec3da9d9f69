"""Checkpoint conversion from the original implementations' layouts to this project's models.

Reading:  ``load_source_state(path)`` returns ``{key: numpy array}`` from a ``.npz`` (no torch needed)
or a PyTorch ``.pth`` / ``.pth.tar`` / ``.pt`` file (``torch.load(weights_only=True)``: never unpickles
arbitrary objects). Training checkpoints that wrap the weights (``state_dict`` / ``model``) and
DataParallel ``module.`` prefixes are unwrapped.

Mapping:  a family registers a ``Rules`` object for its model names (``register_rules``). The generic
part handles what every PyTorch / Gluon checkpoint shares (BatchNorm statistics names, Linear weight
transposition, ``num_batches_tracked``); a family adds key renames and keys to drop.
``convert_state_dict`` refuses with a full list when a key is missing, unexpected or mis-shaped.
"""
import os
from collections import OrderedDict

import numpy as np
import paddle.nn as nn

from ...utils.errors import ConfigError


class ConversionError(ConfigError):
    pass


# -- reading ------------------------------------------------------------------------------------
def _unwrap(obj, path):
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state", "net"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
                if any(hasattr(v, "shape") for v in inner.values()):
                    obj = inner
                    break
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{path}: no state dict found (expected a mapping of names to arrays)")
    out = OrderedDict()
    for k, v in obj.items():
        if not hasattr(v, "shape"):
            continue
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        out[k[len("module."):] if k.startswith("module.") else k] = np.asarray(v)
    if not out:
        raise ConversionError(f"{path}: the file holds no arrays")
    return out


def load_source_state(path):
    if not os.path.isfile(path):
        raise ConversionError(f"--src: file not found: {path}")
    lower = path.lower()
    if lower.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                obj = OrderedDict((k, data[k]) for k in data.files)
        except Exception as e:  # a truncated or foreign file
            raise ConversionError(f"{path}: not a readable .npz archive ({type(e).__name__}: {e})") from None
        return _unwrap(obj, path)
    if lower.endswith((".pth", ".pth.tar", ".pt", ".tar", ".bin")):
        try:
            import torch
        except ImportError:
            raise ConversionError(
                f"{path}: reading a PyTorch checkpoint needs torch (pip install torch), "
                "or save it as .npz with the same keys") from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConversionError(f"{path}: cannot be loaded safely as a PyTorch weights file ({msg})") from None
        return _unwrap(obj, path)
    raise ConversionError(f"{path}: unsupported checkpoint type (use .pth, .pth.tar, .pt or .npz)")


# -- rules --------------------------------------------------------------------------------------
class Rules:
    """How one family's original checkpoint keys map onto this project's parameter names.

    framework:  'torch' or 'gluon' (decides the generic renames).
    rename:     key -> new key (after the generic renames), or None to keep it.
    drop:       key -> bool, or (key, target_keys) -> bool: keys in the original that the port leaves
                out on purpose (e.g. layers whose output never reaches the logits). Dropped keys are
                reported, not errors. The two-argument form sees the model's parameter names.
    transform:  (paddle_key, array, target_shape) -> array, for layout changes beyond the generic ones.
    Several source keys may map to one parameter (a layer shared across stages); they must be equal.
    """

    def __init__(self, framework="torch", rename=None, drop=None, transform=None):
        if framework not in ("torch", "gluon"):
            raise ValueError(framework)
        self.framework = framework
        self.rename = rename
        self.drop = drop
        self.transform = transform


_RULES = {}


def register_rules(names, rules):
    for n in names:
        _RULES[n] = rules


def get_rules(arch_name):
    if arch_name not in _RULES:
        from ...utils.errors import unknown_name_error
        raise unknown_name_error("architecture for conversion", arch_name, _RULES.keys(), where="-a")
    return _RULES[arch_name]


_TORCH_SUFFIX = {"running_mean": "_mean", "running_var": "_variance"}
_GLUON_SUFFIX = {"gamma": "weight", "beta": "bias", "running_mean": "_mean", "running_var": "_variance"}


def _generic_rename(key, framework):
    head, _, last = key.rpartition(".")
    table = _TORCH_SUFFIX if framework == "torch" else _GLUON_SUFFIX
    if last in table:
        return f"{head}.{table[last]}" if head else table[last]
    return key


def convert_state_dict(model, src, rules):
    """Map ``src`` (original layout) onto ``model``'s state dict. Returns ``(state, dropped_keys)``."""
    target = model.state_dict()
    linear_weights = {f"{name}.weight" if name else "weight"
                      for name, layer in model.named_sublayers(include_self=True)
                      if isinstance(layer, nn.Linear)}
    import inspect
    drop = rules.drop
    if drop is not None and len(inspect.signature(drop).parameters) == 2:
        target_keys = set(target)
        drop = (lambda fn: lambda k: fn(k, target_keys))(rules.drop)
    produced, sources = {}, {}
    dropped, unexpected, mismatched, conflicting = [], [], [], []
    mismatched_targets = set()
    for key, arr in src.items():
        if key.endswith("num_batches_tracked"):
            continue
        if drop is not None and drop(key):
            dropped.append(key)
            continue
        new = _generic_rename(key, rules.framework)
        if rules.rename is not None:
            renamed = rules.rename(new)
            new = new if renamed is None else renamed
        if new not in target:
            unexpected.append(key)
            continue
        shape = list(target[new].shape)
        arr = np.asarray(arr)
        if new in linear_weights and arr.ndim == 2:
            arr = arr.T
        if rules.transform is not None:
            arr = rules.transform(new, arr, shape)
        if list(arr.shape) != shape:
            mismatched.append(f"{key} {list(np.shape(src[key]))} -> {new} {shape}")
            mismatched_targets.add(new)
            continue
        arr = arr.astype(np.float32) if arr.dtype != np.float32 and arr.dtype.kind == "f" else arr
        if new in produced:
            if not np.array_equal(produced[new], arr):
                conflicting.append(f"{sources[new]} and {key} (both -> {new}) differ")
            continue
        produced[new] = arr
        sources[new] = key
    missing = [k for k in target if k not in produced and k not in mismatched_targets]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}")
    if mismatched:
        problems.append(f"mis-shaped {len(mismatched)}: {'; '.join(mismatched[:20])}{' ...' if len(mismatched) > 20 else ''}")
    if conflicting:
        problems.append(f"conflicting {len(conflicting)}: {'; '.join(conflicting[:10])}")
    if problems:
        raise ConversionError(f"checkpoint does not fit {type(model).__name__}: " + " | ".join(problems))
    state = OrderedDict((k, produced[k]) for k in target)
    return state, dropped


def convert_checkpoint(arch_name, src_path, dst_path, arch_kwargs=None):
    """Read ``src_path``, convert it for ``arch_name`` and save a ``.pdparams`` at ``dst_path``."""
    import paddle
    from .. import build_model
    from ...utils.save_load import atomic_save

    rules = get_rules(arch_name)
    src = load_source_state(src_path)
    model = build_model(dict(name=arch_name, **(arch_kwargs or {})))
    state, dropped = convert_state_dict(model, src, rules)
    if not dst_path.endswith(".pdparams"):
        dst_path += ".pdparams"
    atomic_save({k: paddle.to_tensor(v) for k, v in state.items()}, dst_path)
    return dst_path, len(state), dropped
