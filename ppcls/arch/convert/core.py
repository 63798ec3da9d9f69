"""Checkpoint conversion from the original implementations' layouts to this project's models.

Reading:  ``load_source_state(path)`` returns ``{key: numpy array}`` from any format people hold
(``ppcls.utils.weight_files``): PyTorch ``.pth`` / ``.pth.tar`` / ``.pt`` / ``.bin`` (``torch.load(
weights_only=True)``), ``.safetensors`` and Hugging Face model folders (no torch needed), MXNet /
Gluon ``.params`` (read by the project itself, no mxnet), and ``.npz``. Training checkpoints that wrap
the weights (``state_dict`` / ``model``) and DataParallel ``module.`` prefixes are unwrapped.

Mapping:  a family registers, for its model names, one ``Rules`` object per source layout it can read
(``register_rules(names, rules, layout=...)``): ``original`` (the reference implementation's own
checkpoints), ``timm``, ... A layout's ``detect(keys)`` recognises it from the checkpoint's keys, so
the user never has to say which one a file is. The generic part handles what every PyTorch / Gluon
checkpoint shares (BatchNorm statistics names, Linear weight transposition, ``num_batches_tracked``);
a layout adds key renames and keys to drop. ``convert_state_dict`` refuses with a full list when a key
is missing, unexpected or mis-shaped.
"""
import inspect
import os
from collections import OrderedDict

import numpy as np
import paddle.nn as nn

from ...utils.errors import ConfigError
from ...utils.registry import Registry
from ...utils.weight_files import read_weights
from .. import backbone  # noqa: F401  (registers every model convert_checkpoint may build)
from ..registry import MODELS


class ConversionError(ConfigError):
    """A checkpoint that does not fit the model; ``problems`` holds the missing, unexpected and
    mis-shaped keys (mis-shaped: ``(source key, source shape, target key, target shape)``)."""

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.problems = problems or {}


# -- reading ------------------------------------------------------------------------------------
def load_source_state(path):
    """``{key: numpy array}`` of a checkpoint in any format ``weight_files.read_weights`` reads."""
    if not os.path.exists(path):
        raise ConversionError(f"--src: file not found: {path}")
    return read_weights(path)


# -- rules --------------------------------------------------------------------------------------
class Rules:
    """How one source layout's checkpoint keys map onto this project's parameter names.

    framework:  'torch' or 'gluon' (decides the generic renames).
    detect:     keys -> bool: whether a checkpoint is in this layout (None: the fallback layout).
    rename:     key -> new key (after the generic renames), or None to keep it.
    drop:       key -> bool, or (key, target_keys) -> bool: keys in the original that the port leaves
                out on purpose (e.g. layers whose output never reaches the logits). Dropped keys are
                reported, not errors. The two-argument form sees the model's parameter names.
    transform:  (paddle_key, array, target_shape) -> array, for layout changes beyond the generic ones.
    Several source keys may map to one parameter (a layer shared across stages); they must be equal.
    """

    def __init__(self, framework="torch", rename=None, drop=None, transform=None, detect=None):
        if framework not in ("torch", "gluon"):
            raise ValueError(framework)
        self.framework = framework
        self.rename = rename
        self.drop = drop
        self.transform = transform
        self.detect = detect


# model name -> {layout name: Rules}, in registration order (the first is the fallback)
CONVERTERS = Registry("architecture for conversion")


def register_rules(names, rules, layout="original"):
    for n in names:
        if n not in CONVERTERS:
            CONVERTERS.register({}, name=n)
        CONVERTERS.get(n)[layout] = rules


def layouts_of(arch_name):
    return CONVERTERS.get(arch_name, where="-a")


def get_rules(arch_name, layout=None, keys=None):
    """The rules for ``layout``, or for the layout ``keys`` are recognised as (the first registered
    layout when no detector claims them)."""
    layouts = layouts_of(arch_name)
    if layout is not None:
        if layout not in layouts:
            from ...utils.errors import unknown_name_error
            raise unknown_name_error(f"checkpoint layout for {arch_name}", layout, layouts, where="--layout")
        return layouts[layout]
    if keys is not None:
        keys = list(keys)
        for rules in layouts.values():
            if rules.detect is not None and rules.detect(keys):
                return rules
    return next(iter(layouts.values()))


def detect_layout(arch_name, keys):
    """The name of the layout ``keys`` are in."""
    rules = get_rules(arch_name, keys=keys)
    return next(name for name, r in layouts_of(arch_name).items() if r is rules)


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
            mismatched.append((key, list(np.shape(src[key])), new, shape))
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
        shown = "; ".join(f"{k} {a} -> {n} {b}" for k, a, n, b in mismatched[:20])
        problems.append(f"mis-shaped {len(mismatched)}: {shown}{' ...' if len(mismatched) > 20 else ''}")
    if conflicting:
        problems.append(f"conflicting {len(conflicting)}: {'; '.join(conflicting[:10])}")
    if problems:
        raise ConversionError(f"checkpoint does not fit {type(model).__name__}: " + " | ".join(problems),
                              dict(missing=missing, unexpected=unexpected, mismatched=mismatched,
                                   conflicting=conflicting))
    state = OrderedDict((k, produced[k]) for k in target)
    return state, dropped


def convert_checkpoint(arch_name, src_path, dst_path, arch_kwargs=None, layout=None):
    """Read ``src_path``, convert it (from ``layout``, or the one its keys show) for ``arch_name`` and
    save a ``.pdparams`` at ``dst_path``."""
    import paddle
    from ...utils.save_load import atomic_save

    layouts_of(arch_name)  # an unknown -a is refused before the file is read
    src = load_source_state(src_path)
    rules = get_rules(arch_name, layout=layout, keys=src.keys())
    model = MODELS.build(arch_name, arch_kwargs, where="Arch")
    state, dropped = convert_state_dict(model, src, rules)
    if not dst_path.endswith(".pdparams"):
        dst_path += ".pdparams"
    atomic_save({k: paddle.to_tensor(v) for k, v in state.items()}, dst_path)
    return dst_path, len(state), dropped
