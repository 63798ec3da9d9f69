"""Saving and loading weights and checkpoints.

Every file is written atomically (temporary file in the same directory, fsync, rename), so a crash or
a full disk during a save never leaves a corrupt file behind under the final name. Every file is read
through the safe loader (``safe_pickle``): ``paddle.load`` would run code a crafted file names.
"""
import os
import tempfile

import numpy as np
import paddle

from . import safe_pickle
from .errors import ConfigError, RunError
from .logger import logger

# keys paddle.save adds beside the weights: the structured-name table, and the slices of arrays
# too big for pickle protocols 2/3
_NAME_TABLE = "StructuredToParameterName@@"
_BIG_PARAMS = "UnpackBigParamInfor@@"


class SaveError(RunError):
    pass


def atomic_save(obj, path):
    """``paddle.save(obj, path)`` through a temporary file + fsync + rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_" + os.path.basename(path) + ".", dir=directory)
    os.close(fd)
    try:
        paddle.save(obj, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, (OSError, RuntimeError, ValueError)):
            raise SaveError(f"could not save {path}: {e}") from None
        raise


def _with_suffix(path, suffix=".pdparams"):
    return path if path.endswith(suffix) else path + suffix


def _tensor_tuples_to_arrays(obj):
    """Paddle 2.1 stored a tensor as (name, ndarray); a loaded state holds the array."""
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray):
        return obj[1]
    if isinstance(obj, dict):
        return type(obj)((k, _tensor_tuples_to_arrays(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_tensor_tuples_to_arrays(v) for v in obj]
    return obj


def load_state_file(path, what="weights"):
    """A file written by ``paddle.save`` (weights, optimizer state, checkpoint states), read with the
    safe loader; arrays come back as numpy arrays. One-line errors for a missing, unreadable or
    refused file."""
    if not os.path.isfile(path):
        raise ConfigError(f"{what} file not found: {path}")
    state = safe_pickle.load(path, what=f"{what} file")
    if isinstance(state, dict):
        for key, info in (state.pop(_BIG_PARAMS, None) or {}).items():
            state[key] = np.concatenate([state.pop(part) for part in info["slices"]]).reshape(info["OriginShape"])
        state.pop(_NAME_TABLE, None)
    return _tensor_tuples_to_arrays(state)


def load_pretrained(model, path, strict=False):
    """Load a ``.pdparams`` file (``path`` with or without the suffix) into ``model``; see
    ``apply_state_dict``."""
    file = _with_suffix(path)
    return apply_state_dict(model, load_state_file(file, "pretrained weights"), file, strict)


def apply_state_dict(model, state, file, strict=False):
    """Load ``state`` (read from ``file``) into ``model``.

    Reports missing, unexpected and shape-mismatched keys. A classifier of another width (another
    class_num) is skipped with a warning, as fine-tuning needs. Other mismatches are errors unless
    no key matches at all, which means a checkpoint of another architecture (also an error).
    """
    if not isinstance(state, dict):
        raise ConfigError(f"{file}: not a state dict")
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    mismatched = [k for k in target if k in state and list(np.shape(state[k])) != list(target[k].shape)]
    matched = [k for k in target if k in state and k not in mismatched]
    if not matched:
        raise ConfigError(f"{file} does not fit {type(model).__name__}: none of its {len(state)} keys "
                          f"match the model (a checkpoint of another architecture?)")
    head_like = [k for k in mismatched + missing if _is_classifier_key(k, target)]
    serious_mismatch = [k for k in mismatched if k not in head_like]
    serious_missing = [k for k in missing if k not in head_like]
    if serious_mismatch or (strict and (serious_missing or unexpected)):
        detail = "; ".join(f"{k} {list(np.shape(state[k]))} vs {list(target[k].shape)}" for k in serious_mismatch[:5])
        raise ConfigError(f"{file} does not fit {type(model).__name__}: "
                          f"{len(serious_mismatch)} shape-mismatched ({detail}), {len(serious_missing)} missing, "
                          f"{len(unexpected)} unexpected keys")
    load = {k: state[k] for k in matched}
    model.set_state_dict(load)
    if head_like:
        logger.warning(f"{file}: classifier keys not loaded (another class_num?): {', '.join(head_like)}")
    if serious_missing:
        logger.warning(f"{file}: {len(serious_missing)} keys missing, kept initialised: "
                       f"{', '.join(serious_missing[:10])}{' ...' if len(serious_missing) > 10 else ''}")
    if unexpected:
        logger.warning(f"{file}: {len(unexpected)} unexpected keys ignored: "
                       f"{', '.join(unexpected[:10])}{' ...' if len(unexpected) > 10 else ''}")
    logger.info(f"Finish load pretrained model from {file}")
    return dict(missing=missing, unexpected=unexpected, mismatched=mismatched)


def _is_classifier_key(key, target):
    """The last parameterised layer of the model (the classifier), by state-dict order."""
    weights = [k for k in target if k.endswith(".weight") or k.endswith(".bias")]
    if not weights:
        return False
    last_layer = weights[-1].rsplit(".", 1)[0]
    return key.rsplit(".", 1)[0] == last_layer
