"""Reading pickle-based files without running code from them.

``.pdparams``, ``.pdopt``, ``.ema.pdparams`` and ``.pdstates`` (written by ``paddle.save``) and the
CIFAR python batches are pickles. ``pickle.load`` (and ``paddle.load``, which calls it) calls whatever
function a file names, so a crafted file runs its code the moment it is opened. What these formats
hold is numpy arrays and plain values, so this loader admits exactly that: arrays and their dtypes,
dicts (incl. OrderedDict), lists, tuples, sets, numbers, strings, bytes and None. A file asking for
anything else is refused before any of it is used; nothing it names is imported or called.
"""
import copyreg
import io
import pickle
import pickletools

import numpy as np

from .errors import ConfigError

# (module, name) pairs a state file may name: numpy's array and scalar reconstruction, the
# containers pickle cannot spell with opcodes alone, and protocol 2's way of storing bytes
ALLOWED_GLOBALS = frozenset({
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
    ("builtins", "tuple"), ("builtins", "list"), ("builtins", "dict"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "bytes"), ("builtins", "bytearray"), ("builtins", "complex"),
    ("__builtin__", "tuple"), ("__builtin__", "list"), ("__builtin__", "dict"), ("__builtin__", "set"),
    ("__builtin__", "frozenset"), ("__builtin__", "bytes"), ("__builtin__", "bytearray"),
    ("__builtin__", "complex"),
})


class RefusedObject(pickle.UnpicklingError):
    def __init__(self, module, name):
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise RefusedObject(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent references are not part of these formats")


def _check_plain(obj, where, depth=0):
    """Object arrays can carry anything their producer put in them; these formats never hold them."""
    if depth > 100:
        raise ConfigError(f"{where}: nested more than 100 levels deep: not a state file")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise ConfigError(f"{where}: holds an array of Python objects, which a state file never does; refused")
    elif isinstance(obj, dict):
        # BUILD can set attributes on an OrderedDict, out of reach of the walk below; paddle.save never does
        if getattr(obj, "__dict__", None):
            raise ConfigError(f"{where}: holds a mapping with attributes set on it, which a state file never does; "
                              "refused")
        for v in obj.values():
            _check_plain(v, where, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _check_plain(v, where, depth + 1)


def _refuse_extension_codes(data):
    """The C unpickler resolves an EXT1/EXT2/EXT4 code from copyreg's extension cache without asking
    ``find_class``: once anything in the process has registered a code and unpickled it, a file naming
    that code would reach the registered callable past the allow-list. These formats never use extension
    codes, so with any code registered the opcodes are read first and an extension refused."""
    if not copyreg._inverted_registry:  # nothing registered: an EXT opcode can only fail
        return
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("EXT1", "EXT2", "EXT4"):
            module, name = copyreg._inverted_registry.get(arg, ("copyreg", f"extension code {arg}"))
            raise RefusedObject(module, name)


def loads(data, where, what="file", encoding="latin1"):
    """Unpickle ``data`` admitting only plain values; ``where`` names the source in errors."""
    try:
        _refuse_extension_codes(data)
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except RefusedObject as e:
        raise ConfigError(f"{where}: refusing to load {e.qualname}, which a {what} never holds (only arrays, "
                          f"dicts, lists, numbers and strings are admitted); nothing from the file was run") from None
    except Exception as e:  # truncated, not a pickle, or garbage
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{where}: unreadable or truncated {what} ({msg[:200]})") from None
    _check_plain(obj, where)
    return obj


def load(path, what="file", encoding="latin1"):
    with open(path, "rb") as f:
        data = f.read()
    return loads(data, path, what, encoding)
