"""Training checkpoints: ``<prefix>.pdparams`` (weights), ``.pdopt`` (optimizer + LR schedule),
``.ema.pdparams`` (EMA weights, when on) and ``.pdstates`` (epoch, iteration, best metric, RNG state,
the size and CRC of its companions, and the names the step was saved under).

How a crash at any moment of a save loses at most that save:

- A step is written once, under its first name (``latest``): each file atomically (temp file, fsync,
  rename), ``.pdstates`` last, so a prefix whose files do not match its ``.pdstates`` is known to be
  incomplete instead of silently mixing two saves.
- Its other names (``epoch_N``, ``best_model``) are hard links to the same files (copies where the
  filesystem has no hard links): one copy on disk per step. Every link is made under a temp name and
  renamed into place, and no checkpoint file is ever written in place, so a later save under one name
  never changes the files another name shares.
- Before the first name is overwritten its complete files are linked to ``<name>.bak.*``; that backup is
  removed once the save is complete.
- At the next start, ``recover`` removes the temp files of an interrupted save, re-links the names the
  newest complete step lists but does not hold yet (roll forward) and restores a first name whose
  rewrite was interrupted from its backup (roll back).
- Loading a prefix that is not complete falls back, with a warning naming it, to the newest complete
  checkpoint of the same directory by the epoch and iteration recorded in the ``.pdstates`` files.
"""
import os
import shutil
import zlib

import numpy as np

from ..utils.errors import ConfigError
from ..utils.logger import logger
from ..utils.save_load import SaveError, atomic_save, load_state_file

SUFFIXES = (".pdparams", ".pdopt", ".ema.pdparams")
STATES = ".pdstates"
BACKUP = ".bak"
TEMP = ".tmp_"  # atomic_save's temp files are named so too
REQUIRED = (".pdparams", ".pdopt", STATES)


def _digest(path):
    crc = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
    return os.path.getsize(path), crc


def _position(states):
    """Where training resumes from a checkpoint, for ordering them: an epoch-end one (iter 0) at the
    start of the next epoch, a mid-epoch one inside its own."""
    iteration = int(states.get("iter", 0) or 0)
    return int(states["epoch"]) + (0 if iteration else 1), iteration


def _read_states(prefix):
    """``prefix.pdstates`` as a dict, or None when it is missing, truncated or not a checkpoint's.
    A file the safe loader refuses is an error, never skipped as merely incomplete."""
    path = prefix + STATES
    if not os.path.isfile(path):
        return None
    try:
        states = load_state_file(path, "checkpoint states")
    except ConfigError as e:
        if "unreadable or truncated" in str(e):
            return None
        raise
    return states if isinstance(states, dict) and "epoch" in states else None


def _problem(prefix, states):
    """None when the checkpoint at ``prefix`` is complete (every file ``states`` lists has its recorded
    size and CRC), else what is wrong, naming the file."""
    for suffix in REQUIRED:
        if not os.path.isfile(prefix + suffix):
            return f"{prefix + suffix} not found"
    for suffix, expected in (states.get("files") or {}).items():
        path = prefix + suffix
        if not os.path.isfile(path):
            return f"{path} not found"
        if _digest(path) != tuple(expected):
            return f"{path} does not belong to {prefix}.pdstates (a save was interrupted?)"
    return None


def _complete(prefix):
    """The states of the checkpoint at ``prefix`` when it is complete, else None."""
    states = _read_states(prefix)
    return states if states is not None and _problem(prefix, states) is None else None


def _files_of(prefix, states):
    """The data suffixes of a checkpoint (``files`` of its states; what exists, for older ones)."""
    files = states.get("files")
    return list(files) if files else [s for s in SUFFIXES if os.path.isfile(prefix + s)]


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link(src, dst):
    """``dst`` becomes the file ``src``: a hard link (a copy where the filesystem has none, e.g. some
    network and FUSE mounts) made under a temp name and renamed over ``dst``."""
    directory, base = os.path.split(dst)
    tmp = os.path.join(directory, f"{TEMP}{base}.{os.getpid()}.link")
    try:
        # rename() of a file over another link of itself does nothing and leaves the temp name
        if os.path.exists(dst) and os.path.samefile(src, dst):
            return
        if os.path.lexists(tmp):
            os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dst)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SaveError(f"could not save {dst}: {e}") from None


def _drop_stale(prefix, suffixes):
    """Remove the data files of an earlier save at ``prefix`` that this one does not have (EMA turned off)."""
    for suffix in SUFFIXES:
        if suffix not in suffixes and os.path.isfile(prefix + suffix):
            os.unlink(prefix + suffix)


def _link_checkpoint(src, dst, suffixes):
    """Put the checkpoint at ``src`` under ``dst`` too: data files first, ``.pdstates`` last."""
    for suffix in suffixes:
        _link(src + suffix, dst + suffix)
    _link(src + STATES, dst + STATES)
    _drop_stale(dst, suffixes)
    _fsync_dir(os.path.dirname(os.path.abspath(dst)))


def _remove_checkpoint(prefix):
    for suffix in (STATES,) + SUFFIXES:  # .pdstates first: never a states file without its companions
        if os.path.lexists(prefix + suffix):
            os.unlink(prefix + suffix)


# prefix -> (file identities, data suffixes) of the checkpoint this process last completed there: the
# next save's backup then needs no CRC pass over files it wrote itself
_SAVED = {}


def _identity(prefix, suffixes):
    try:
        return tuple((s, st.st_ino, st.st_size, st.st_mtime_ns)
                     for s, st in ((s, os.stat(prefix + s)) for s in list(suffixes) + [STATES]))
    except OSError:
        return None


def _backup(prefix):
    """Link the checkpoint at ``prefix`` to ``prefix.bak`` before it is overwritten, when it is complete;
    an incomplete one (an earlier save of it failed) leaves the backup made before that save in place."""
    identity, suffixes = _SAVED.pop(os.path.abspath(prefix), (None, None))
    if identity is None or _identity(prefix, suffixes) != identity:
        states = _complete(prefix)
        if states is None:
            return
        suffixes = _files_of(prefix, states)
    _link_checkpoint(prefix, prefix + BACKUP, suffixes)


def save_checkpoint(prefixes, model_state, opt_state, states, ema_state=None):
    """Save one step under ``prefixes`` (a prefix or a list of them, in one directory): written once
    under the first, hard-linked under the others."""
    prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    first = prefixes[0]
    _backup(first)
    files = {}
    parts = [(".pdparams", model_state), (".pdopt", opt_state)]
    if ema_state is not None:
        parts.append((".ema.pdparams", ema_state))
    for suffix, obj in parts:
        atomic_save(obj, first + suffix)
        files[suffix] = _digest(first + suffix)
    # the names let recover() finish the links when a kill lands between them
    atomic_save(dict(states, files=files, names=[os.path.basename(p) for p in prefixes]), first + STATES)
    _drop_stale(first, files)
    for prefix in prefixes[1:]:
        _link_checkpoint(first, prefix, list(files))
    _remove_checkpoint(first + BACKUP)
    _SAVED[os.path.abspath(first)] = (_identity(first, files), list(files))


def _checkpoints_in(directory):
    """``{name: states}`` of every readable ``.pdstates`` in ``directory`` (not checked for completeness)."""
    found = {}
    if not os.path.isdir(directory):
        return found
    for entry in sorted(os.listdir(directory)):
        if entry.endswith(STATES) and not entry.startswith(TEMP):
            name = entry[:-len(STATES)]
            states = _read_states(os.path.join(directory, name))
            if states is not None:
                found[name] = states
    return found


def newest_complete(directory, prefer=None, found=None):
    """``(prefix, states)`` of the newest complete checkpoint in ``directory`` by recorded epoch and
    iteration (``prefer``, then names in order, among equals), or None."""
    found = _checkpoints_in(directory) if found is None else found
    for name in sorted(found, key=lambda n: (tuple(-x for x in _position(found[n])), n != prefer, n)):
        prefix = os.path.join(directory, name)
        if _problem(prefix, found[name]) is None:
            return prefix, found[name]
    return None


def _same_files(a, b, suffixes):
    try:
        return all(os.stat(a + s).st_ino == os.stat(b + s).st_ino for s in list(suffixes) + [STATES])
    except OSError:
        return False


def _describe(states):
    return f"epoch {states['epoch']}" + (f", iteration {states['iter']}" if states.get("iter") else "")


def recover(directory):
    """At the start of a run (rank 0): remove the temp files of an interrupted save, then put the newest
    complete step under every name it lists that does not hold it (the links a kill cut short; a first
    name whose rewrite was cut short, from its backup), and drop backups whose save completed.
    Returns the number of temp files removed and of names restored."""
    if not os.path.isdir(directory):
        return 0, 0
    removed = 0
    for entry in os.listdir(directory):
        if entry.startswith(TEMP) and any(s + "." in entry for s in (".pdparams", ".pdopt", STATES)):
            os.unlink(os.path.join(directory, entry))
            removed += 1
    if removed:
        logger.info(f"removed {removed} temp files of an interrupted checkpoint save in {directory}")
    found = _checkpoints_in(directory)
    newest = newest_complete(directory, found=found)
    restored = 0
    if newest is not None:
        src, states = newest
        position, suffixes = _position(states), _files_of(src, states)
        for target in states.get("names") or ():
            dst, held = os.path.join(directory, target), found.get(target)
            if dst == src or (held is not None and _position(held) > position):
                continue
            if held is not None and _position(held) == position and (
                    _same_files(src, dst, suffixes) or _problem(dst, held) is None):
                continue
            _link_checkpoint(src, dst, suffixes)
            found[target] = states
            restored += 1
            logger.warning(f"{dst} was not saved completely (the run was interrupted); restored it from "
                           f"{src} ({_describe(states)})")
    for name, states in found.items():
        base = name[:-len(BACKUP)] if name.endswith(BACKUP) else None
        held = found.get(base) if base else None
        if held is not None and _position(held) > _position(states) \
                and _problem(os.path.join(directory, base), held) is None:
            _remove_checkpoint(os.path.join(directory, name))  # the save it guarded did complete
    longest_first = sorted(SUFFIXES, key=len, reverse=True)
    for entry in os.listdir(directory):  # a backup cut short while made or removed is of no use
        prefix = next((entry[:-len(s)] for s in longest_first if entry.endswith(s)), None)
        if prefix is not None and prefix.endswith(BACKUP) and prefix not in found \
                and prefix[:-len(BACKUP)] in found:
            os.unlink(os.path.join(directory, entry))
    return removed, restored


def load_checkpoint(prefix):
    """Returns ``(model_state, opt_state, states, ema_state_or_None)``. A prefix that is not complete (a
    save was interrupted) falls back to the newest complete checkpoint of its directory, with a warning;
    one-line errors when there is none, and for files that cannot be read."""
    if any(prefix.endswith(s) for s in SUFFIXES + (STATES,)):
        raise ConfigError(f"Global.checkpoints: {prefix} is a file; give the prefix without suffix, "
                          "e.g. output/DLA60/latest")
    states = _read_states(prefix)
    problem = _problem(prefix, states) if states is not None else next(
        (f"{prefix + s} not found" for s in REQUIRED if not os.path.isfile(prefix + s)),
        f"{prefix}.pdstates: not a checkpoint states file")
    if problem is not None:
        directory = os.path.dirname(os.path.abspath(prefix))
        fallback = newest_complete(directory, prefer=os.path.basename(prefix) + BACKUP)
        if fallback is None:
            hint = "give the prefix without suffix, e.g. output/DLA60/latest" if "not found" in problem else \
                "resume from another checkpoint (e.g. epoch_N)"
            raise ConfigError(f"Global.checkpoints: {problem}, and {directory} holds no complete checkpoint "
                              f"({hint})")
        logger.warning(f"{prefix} was not saved completely ({problem}); resuming from {fallback[0]} "
                       f"({_describe(fallback[1])}), the newest complete checkpoint of {directory}")
        prefix, states = fallback
    model_state = load_state_file(prefix + ".pdparams", "checkpoint weights")
    opt_state = load_state_file(prefix + ".pdopt", "checkpoint optimizer state")
    ema_state = None
    if ".ema.pdparams" in _files_of(prefix, states):
        ema_state = load_state_file(prefix + ".ema.pdparams", "checkpoint EMA weights")
    states["loaded_from"] = prefix
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
        if rank == 0:
            recover(directory)

    def save(self, names, states):
        """Save the current step under ``names`` (one name or a list: written once under the first,
        hard-linked under the others)."""
        if self.rank != 0:
            return
        names = [names] if isinstance(names, str) else list(names)
        prefixes = [os.path.join(self.directory, n) for n in names]
        opt_state = portable_optimizer_state(self.optimizer.state_dict(), self.model)
        save_checkpoint(prefixes, self.model.state_dict(), opt_state, states,
                        self.ema.state_dict() if self.ema is not None else None)
        for prefix in prefixes:
            logger.info(f"Already save model in {prefix}")

    def restore(self, prefix, arch_name):
        """Load ``prefix`` into the model, optimizer and EMA; returns its states dict."""
        model_state, opt_state, states, ema_state = load_checkpoint(prefix)
        target = self.model.state_dict()
        common = [k for k in target if k in model_state]
        bad = [k for k in common if list(np.shape(model_state[k])) != list(target[k].shape)]
        if not common or bad or len(common) < len(target):
            raise ConfigError(f"{states['loaded_from']}.pdparams is not a checkpoint of {arch_name} with this "
                              f"Arch config ({len(common)}/{len(target)} keys match, {len(bad)} mis-shaped)")
        self.model.set_state_dict(model_state)
        self.optimizer.set_state_dict(restore_optimizer_state(opt_state, self.model))
        if self.ema is not None and ema_state is not None:
            self.ema.set_state_dict(ema_state)
        return states
