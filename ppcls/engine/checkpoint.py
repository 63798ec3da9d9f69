"""Training checkpoints: ``<prefix>.pdparams`` (weights), ``.pdopt`` (optimizer + LR schedule),
``.ema.pdparams`` (EMA weights, when on) and ``.pdstates`` (epoch, best metric, RNG state, ...).

Each file is written atomically (temp file, fsync, rename) and ``.pdstates`` is written last with the
size and CRC of its companions, so a checkpoint whose save was interrupted is detected on load
instead of silently mixing two saves. Before a checkpoint is overwritten (``latest``, ``best_model``)
its complete files are hard-linked to ``<prefix>.bak.*``; loading an interrupted checkpoint falls
back to that copy, so a crash at any point of a save loses at most that save.
"""
import os
import zlib

import numpy as np

from ..utils.errors import ConfigError
from ..utils.save_load import atomic_save, load_state_file

SUFFIXES = (".pdparams", ".pdopt", ".ema.pdparams")


def _digest(path):
    crc = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
    return os.path.getsize(path), crc


def _consistent(prefix):
    """True when ``prefix.pdstates`` exists and every companion it lists has the recorded digest."""
    if not os.path.isfile(prefix + ".pdstates"):
        return False
    try:
        states = load_state_file(prefix + ".pdstates", "checkpoint states")
    except ConfigError:
        return False
    for suffix, expected in (states.get("files") or {}).items() if isinstance(states, dict) else ():
        if not os.path.isfile(prefix + suffix) or _digest(prefix + suffix) != tuple(expected):
            return False
    return isinstance(states, dict) and "epoch" in states


def _backup(prefix):
    """Hard-link the complete checkpoint at ``prefix`` to ``prefix.bak`` (file by file, atomically)."""
    if not _consistent(prefix):
        return
    for suffix in SUFFIXES + (".pdstates",):
        src = prefix + suffix
        if os.path.isfile(src):
            tmp = f"{prefix}.bak{suffix}.tmp"
            if os.path.exists(tmp):
                os.unlink(tmp)
            os.link(src, tmp)
            os.replace(tmp, f"{prefix}.bak{suffix}")


def save_checkpoint(prefix, model_state, opt_state, states, ema_state=None):
    _backup(prefix)
    files = {}
    parts = [(".pdparams", model_state), (".pdopt", opt_state)]
    if ema_state is not None:
        parts.append((".ema.pdparams", ema_state))
    for suffix, obj in parts:
        atomic_save(obj, prefix + suffix)
        files[suffix] = _digest(prefix + suffix)
    states = dict(states, files=files)
    atomic_save(states, prefix + ".pdstates")


def load_checkpoint(prefix):
    """Returns ``(model_state, opt_state, states, ema_state_or_None)``; one-line errors for missing,
    truncated or inconsistent files. An interrupted save falls back to the copy made before it."""
    if not _consistent(prefix) and _consistent(prefix + ".bak"):
        from ..utils.logger import logger
        logger.warning(f"{prefix} was not saved completely (interrupted?); resuming from {prefix}.bak, "
                       "the checkpoint before it")
        prefix = prefix + ".bak"
    for suffix in (".pdparams", ".pdopt", ".pdstates"):
        if not os.path.isfile(prefix + suffix):
            raise ConfigError(f"Global.checkpoints: {prefix + suffix} not found "
                              "(give the prefix without suffix, e.g. output/DLA60/latest)")
    states = load_state_file(prefix + ".pdstates", "checkpoint states")
    if not isinstance(states, dict) or "epoch" not in states:
        raise ConfigError(f"{prefix}.pdstates: not a checkpoint states file")
    for suffix, expected in (states.get("files") or {}).items():
        path = prefix + suffix
        if not os.path.isfile(path) or _digest(path) != tuple(expected):
            raise ConfigError(f"{path} does not belong to {prefix}.pdstates (a save was interrupted?); "
                              "resume from another checkpoint (e.g. epoch_N)")
    model_state = load_state_file(prefix + ".pdparams", "checkpoint weights")
    states["loaded_from"] = prefix
    opt_state = load_state_file(prefix + ".pdopt", "checkpoint optimizer state")
    ema_state = None
    if os.path.isfile(prefix + ".ema.pdparams"):
        ema_state = load_state_file(prefix + ".ema.pdparams", "checkpoint EMA weights")
    return model_state, opt_state, states, ema_state


_SEP = "@"


def portable_optimizer_state(opt_state, model):
    """Optimizer accumulators are keyed by Paddle's generated parameter names (``conv2d_20.w_0``),
    which depend on how many layers the process built before. Key them by the structured parameter
    names (``layer1.0.conv1.weight``) instead, so a checkpoint loads into any fresh model."""
    names = sorted(((p.name, n) for n, p in model.named_parameters()), key=lambda t: -len(t[0]))

    def rename(key):
        for pname, sname in names:
            if key.startswith(pname + "_"):
                return sname + _SEP + key[len(pname):]
        return key
    out = {}
    for k, v in opt_state.items():
        if k == "master_weights" and isinstance(v, dict):
            by_name = dict(names)
            out[k] = {by_name.get(pk, pk): pv for pk, pv in v.items()}
        elif k == "LR_Scheduler":
            out[k] = v
        else:
            out[rename(k)] = v
    return out


def restore_optimizer_state(state, model):
    """Inverse of ``portable_optimizer_state`` for the model at hand."""
    by_struct = {n: p.name for n, p in model.named_parameters()}
    out = {}
    for k, v in state.items():
        if k == "master_weights" and isinstance(v, dict):
            out[k] = {by_struct.get(pk, pk): pv for pk, pv in v.items()}
        elif _SEP in k and k.split(_SEP, 1)[0] in by_struct:
            sname, rest = k.split(_SEP, 1)
            out[by_struct[sname] + rest] = v
        else:
            out[k] = v
    return out


class Checkpoints:
    """Saves and restores the run's checkpoints in ``directory`` (``latest``, ``best_model``,
    ``epoch_N``): the model, the optimizer with its schedule (keyed portably), the EMA weights and the
    loop's state. Only rank 0 saves."""

    def __init__(self, directory, model, optimizer, ema=None, rank=0):
        self.directory, self.model, self.optimizer, self.ema, self.rank = directory, model, optimizer, ema, rank

    def save(self, name, states):
        if self.rank != 0:
            return
        prefix = os.path.join(self.directory, name)
        opt_state = portable_optimizer_state(self.optimizer.state_dict(), self.model)
        save_checkpoint(prefix, self.model.state_dict(), opt_state, states,
                        self.ema.state_dict() if self.ema is not None else None)
        from ..utils.logger import logger
        logger.info(f"Already save model in {prefix}")

    def restore(self, prefix, arch_name):
        """Load ``prefix`` into the model, optimizer and EMA; returns its states dict."""
        model_state, opt_state, states, ema_state = load_checkpoint(prefix)
        target = self.model.state_dict()
        common = [k for k in target if k in model_state]
        bad = [k for k in common if list(np.shape(model_state[k])) != list(target[k].shape)]
        if not common or bad or len(common) < len(target):
            raise ConfigError(f"{prefix}.pdparams is not a checkpoint of {arch_name} with this Arch config "
                              f"({len(common)}/{len(target)} keys match, {len(bad)} mis-shaped)")
        self.model.set_state_dict(model_state)
        self.optimizer.set_state_dict(restore_optimizer_state(opt_state, self.model))
        if self.ema is not None and ema_state is not None:
            self.ema.set_state_dict(ema_state)
        return states
