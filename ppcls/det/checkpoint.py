"""Loading detector checkpoints without unpickling code: ppdet's own loaders call ``paddle.load``; these
read the same files (``.pdparams`` / ``.pdopt`` written by ppdet's ``save_model``) with the project's
safe loader and hand arrays to the model and optimizer."""
import os

import numpy as np

from ..utils.errors import ConfigError
from ..utils.logger import logger
from ..utils.save_load import load_state_file


def _prefix(path):
    """``path`` without ``.pdparams`` / ``.pdopt`` (ppdet names checkpoints by prefix)."""
    for suffix in (".pdparams", ".pdopt"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def _resolve(path, what):
    if isinstance(path, str) and "://" in path:
        from ..arch.weights import fetch_url
        path = fetch_url(path)
    prefix = _prefix(str(path))
    file = prefix + ".pdparams"
    if not os.path.isfile(file):
        raise ConfigError(f"{what}: {file} not found")
    return prefix, file


def _cast_to(model_state, loaded):
    import paddle
    out = {}
    for key, value in loaded.items():
        target = model_state[key]
        array = np.asarray(value)
        out[key] = paddle.to_tensor(array).astype(target.dtype)
    return out


def load_detector_weights(model, path, what="weights"):
    """A whole detector's weights (``weights:`` for eval / infer / export): every key must fit."""
    prefix, file = _resolve(path, what)
    _load_fitting(model, file, what)
    return prefix


def _load_fitting(model, file, what):
    state = load_state_file(file, what)
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    mismatched = [k for k in target if k in state and list(np.shape(state[k])) != list(target[k].shape)]
    if missing or mismatched:
        detail = "; ".join([f"{k} missing" for k in missing[:3]] +
                           [f"{k} {list(np.shape(state[k]))} vs {list(target[k].shape)}" for k in mismatched[:3]])
        raise ConfigError(f"{what}: {file} does not fit the detector of this config: {len(missing)} missing, "
                          f"{len(mismatched)} shape-mismatched keys ({detail})")
    model.set_state_dict(_cast_to(target, {k: state[k] for k in target}))
    logger.info(f"loaded {what} {file}")


def load_pretrain_weights(model, path):
    """``pretrain_weights:`` (ppdet's: a checkpoint whose keys are matched by suffix, e.g. an ImageNet
    ResNet for ppdet's own ResNet backbone); keys that match nothing are left initialised."""
    from ppdet.utils.checkpoint import match_state_dict
    prefix, file = _resolve(path, "pretrain_weights")
    state = load_state_file(file, "pretrain_weights")
    target = model.state_dict()
    matched = match_state_dict(target, state)
    if not matched:
        raise ConfigError(f"pretrain_weights: none of the {len(state)} keys of {file} fit the detector")
    model.set_state_dict(_cast_to(target, matched))
    logger.info(f"loaded pretrain_weights {file}: {len(matched)} of {len(target)} tensors")


def resume(trainer, path):
    """Model, optimizer (with its LR schedule) and epoch counter from a ppdet checkpoint prefix."""
    prefix, file = _resolve(path, "resume")
    opt_file = prefix + ".pdopt"
    if not os.path.isfile(opt_file):
        raise ConfigError(f"resume: {opt_file} not found (a checkpoint is a .pdparams and a .pdopt)")
    with_ema = trainer.use_ema and os.path.isfile(prefix + ".pdema")
    # with EMA, ppdet's save_model writes the EMA weights to .pdparams and the trained ones to .pdema (its
    # load_weight swaps them back): the model resumes from .pdema, the EMA from .pdparams
    _load_fitting(trainer.model, prefix + ".pdema" if with_ema else file, "resume")
    state = load_state_file(opt_file, "optimizer state")
    last_epoch = int(state.pop("last_epoch", 0))
    trainer.optimizer.set_state_dict(state)
    if with_ema:
        import paddle
        ema_state = load_state_file(file, "EMA weights")
        # ModelEMA.resume takes tensors, and counts its decay warm-up in steps: the LR schedule's count, as
        # ppdet's load_weight passes it
        step = int(state.get("LR_Scheduler", {}).get("last_epoch", 0))
        trainer.ema.resume({k: paddle.to_tensor(np.asarray(v)) for k, v in ema_state.items()}, step)
    trainer.start_epoch = last_epoch
    logger.info(f"resumed {prefix} at epoch {last_epoch}")
    return last_epoch
