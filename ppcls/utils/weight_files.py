"""Readers that turn a weights file written by another toolkit into ``{name: numpy array}``.

No reader runs code from the file: safetensors and MXNet ``.params`` are parsed as data, ``.npz`` is
read with ``allow_pickle=False`` and PyTorch files with ``torch.load(weights_only=True)``.

Every reader returns a ``WeightState``: an ``OrderedDict`` of name -> ``numpy.ndarray`` in file order
with three documented attributes:

- ``path``:     the file or folder read;
- ``config``:   the parsed ``config.json`` of a Hugging Face model folder (timm writes ``architecture``,
  ``num_classes``, ``pretrained_cfg`` there), else ``None``;
- ``prefixes``: for MXNet Module checkpoints, name -> ``"arg"`` / ``"aux"`` (the prefix that was
  stripped from the stored name), else empty.

Every problem with the input is a ``ConfigError`` whose one-line message starts with the path.

``read_weights(path)`` picks the reader from what the path is. ``.pdparams`` files are refused on
purpose: they are this project's own format and load as pretrained weights without conversion.
"""
import functools
import json
import math
import os
import struct
from collections import OrderedDict

import numpy as np

from .errors import ConfigError

SUPPORTED_KINDS = ("a Hugging Face model folder (config.json + model.safetensors or pytorch_model.bin), "
                   ".safetensors, MXNet .params, .npz, PyTorch .pth / .pth.tar / .pt / .tar / .bin / .ckpt")
TORCH_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".bin", ".ckpt")


class WeightState(OrderedDict):
    """name -> numpy array, with ``path``, ``config`` and ``prefixes`` (see the module docstring)."""

    def __init__(self, items=(), *, path=None, config=None, prefixes=None):
        super().__init__(items)
        self.path = path
        self.config = config
        self.prefixes = dict(prefixes or {})


def _error(path, message):
    return ConfigError(f"{path}: {message}")


def _os_errors_as_config_errors(reader):
    """A file that vanishes or cannot be opened is the user's problem too: say so in one line."""
    @functools.wraps(reader)
    def wrapped(path, *args, **kwargs):
        try:
            return reader(path, *args, **kwargs)
        except OSError as e:
            raise _error(path, f"cannot be read ({e.strerror or _first_line(e)})") from None
    return wrapped


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- wrappers and prefixes (training checkpoints) ---------------------------------------------------
_WRAPPER_KEYS = ("state_dict", "model", "model_state", "net")
_PARALLEL_PREFIX = "module."


def _is_array_mapping(obj):
    return (isinstance(obj, dict) and obj and all(isinstance(k, str) for k in obj)
            and any(hasattr(v, "shape") for v in obj.values()))


def _to_numpy(value, key, path):
    if not hasattr(value, "detach"):
        return np.asarray(value)
    tensor = value.detach().cpu()
    try:
        return tensor.numpy()
    except (TypeError, RuntimeError):  # bfloat16 / float8 have no numpy dtype: widen them
        pass
    try:
        return tensor.float().numpy()
    except (TypeError, RuntimeError):  # sparse or quantized tensors
        raise _error(path, f"tensor '{key}' ({tensor.dtype}, {tensor.layout}) has no numpy form") from None


def unwrap_state(obj, path):
    """The weights inside a loaded checkpoint: the ``state_dict`` / ``model`` / ``model_state`` / ``net``
    entry of a training checkpoint when there is one, non-array entries (epoch, optimizer settings)
    left out, DataParallel's ``module.`` prefix removed. Returns a ``WeightState``."""
    if isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPER_KEYS if _is_array_mapping(obj.get(k))), None)
        obj = obj if inner is None else inner
    if not isinstance(obj, dict) or not obj:
        raise _error(path, "no state dict found (expected a mapping of names to arrays)")
    state = WeightState(path=path)
    for key, value in obj.items():
        if not hasattr(value, "shape"):
            continue
        name = key[len(_PARALLEL_PREFIX):] if key.startswith(_PARALLEL_PREFIX) else key
        state[name] = _to_numpy(value, key, path)
    if not state:
        raise _error(path, "the file holds no arrays")
    return state


# -- safetensors -------------------------------------------------------------------------------------
# safetensors dtypes with a numpy counterpart (float8 / float4 / float6 have none; BF16 is widened)
_NUMPY_SAFETENSORS_DTYPES = {"BOOL", "U8", "I8", "U16", "I16", "F16", "U32", "I32", "F32", "C64", "U64", "I64", "F64"}


def _safetensors_header(path):
    """The JSON header (8-byte little-endian length, then JSON), checked far enough to report a
    corrupt file in one line before the library reads it."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _error(path, f"not a safetensors file: {size} bytes, shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            raise _error(path, f"corrupt safetensors header: it claims {length} bytes, "
                               f"the file has {size - 8} after the length")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _error(path, f"corrupt safetensors header: not JSON ({_first_line(e)})") from None
    if not isinstance(header, dict):
        raise _error(path, "corrupt safetensors header: not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + length


def _read_bf16(path, data_start, entry):
    """bfloat16 is the top half of a float32: shift the 16 stored bits up and view them as float32."""
    begin, end = entry["data_offsets"]
    with open(path, "rb") as f:
        f.seek(data_start + begin)
        raw = f.read(end - begin)
    halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
    return (halves << 16).view(np.float32).reshape(entry["shape"])


@_os_errors_as_config_errors
def read_safetensors(path):
    """A ``.safetensors`` file through ``safetensors`` (numpy, no torch); bfloat16 tensors are widened to
    float32, other dtypes numpy cannot hold (float8, ...) are refused by tensor name."""
    from safetensors import safe_open

    header, data_start = _safetensors_header(path)
    state = WeightState(path=path)
    try:
        with safe_open(path, framework="numpy") as f:
            for name in f.keys():
                entry = header.get(name)
                dtype = entry.get("dtype") if isinstance(entry, dict) else None
                if dtype == "BF16":
                    state[name] = _read_bf16(path, data_start, entry)
                elif dtype in _NUMPY_SAFETENSORS_DTYPES:
                    state[name] = f.get_tensor(name)
                else:
                    raise _error(path, f"tensor '{name}' has dtype {dtype}, which numpy cannot hold")
    except ConfigError:
        raise
    except Exception as e:  # the library's own checks: offsets, sizes, dtype names
        raise _error(path, f"corrupt safetensors file ({_first_line(e)})") from None
    return unwrap_state(state, path)


# -- Hugging Face model folders ----------------------------------------------------------------------
_HUB_WEIGHTS = (("model.safetensors", "single"), ("model.safetensors.index.json", "sharded"),
                ("pytorch_model.bin", "single"), ("pytorch_model.bin.index.json", "sharded"))


def _read_config(folder):
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (UnicodeDecodeError, ValueError) as e:
        raise _error(path, f"not valid JSON ({_first_line(e)})") from None
    if not isinstance(config, dict):
        raise _error(path, "not a JSON object")
    return config


def _shard_names(index_path):
    """The shard files of an ``*.index.json`` (``weight_map``: tensor -> shard file) and the tensors it
    promises. Shard names must be plain file names inside the folder."""
    try:
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
    except (UnicodeDecodeError, ValueError, AttributeError) as e:
        raise _error(index_path, f"not a valid shard index ({_first_line(e)})") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise _error(index_path, "no 'weight_map' of tensor names to shard files")
    shards = list(dict.fromkeys(weight_map.values()))
    bad = [s for s in shards if not isinstance(s, str) or os.path.basename(s) != s or s in ("", ".", "..")]
    if bad:
        raise _error(index_path, f"shard names must be file names in the folder, got {bad[0]!r}")
    return shards, set(weight_map)


def _read_sharded(folder, index_name):
    index_path = os.path.join(folder, index_name)
    shards, promised = _shard_names(index_path)
    state = WeightState(path=folder)
    for shard in shards:
        shard_path = os.path.join(folder, shard)
        if not os.path.isfile(shard_path):
            raise _error(index_path, f"shard file {shard} is missing")
        state.update(read_safetensors(shard_path) if shard.endswith(".safetensors") else read_torch(shard_path))
    missing = sorted(promised - set(state))
    if missing:
        raise _error(index_path, f"{len(missing)} tensors listed in the index are in no shard: "
                                 f"{', '.join(missing[:5])}")
    return state


@_os_errors_as_config_errors
def read_hub_folder(path):
    """A Hugging Face model folder: ``model.safetensors`` (or its sharded ``.index.json``), else
    ``pytorch_model.bin`` (torch, ``weights_only``; sharded too). Returns a ``WeightState`` whose
    ``config`` is the parsed ``config.json`` (``None`` when the folder has none)."""
    if not os.path.isdir(path):
        raise _error(path, "not a folder")
    config = _read_config(path)
    for name, kind in _HUB_WEIGHTS:
        file_path = os.path.join(path, name)
        if not os.path.isfile(file_path):
            continue
        if kind == "sharded":
            state = _read_sharded(path, name)
        elif name.endswith(".safetensors"):
            state = read_safetensors(file_path)
        else:
            state = read_torch(file_path)
        state.path, state.config = path, config
        return state
    raise _error(path, "a folder, but no model.safetensors, model.safetensors.index.json or pytorch_model.bin in it")


# -- MXNet NDArray lists (mx.nd.save, Gluon save_parameters) ----------------------------------------
_MX_LIST_MAGIC = 0x112
_MX_V1_MAGIC, _MX_V2_MAGIC, _MX_V3_MAGIC = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
# mshadow type flags
_MX_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8,
              6: np.int64, 7: np.bool_}
_MX_REFUSED_DTYPES = {8: "int16", 9: "uint16", 10: "uint32", 11: "uint64", 12: "bfloat16"}
_MX_SPARSE = {1: "row_sparse", 2: "csr"}
# a legacy array starts with its ndim instead of a magic: anything larger is not such a file
_MX_MAX_NDIM = 32
_MX_NAME_PREFIXES = ("arg:", "aux:")


class _ByteCursor:
    """Reads little-endian fields from ``buf``; running past the end is a one-line ConfigError that
    says where and while reading what (``self.what``, kept current by the caller)."""

    def __init__(self, path, buf):
        self.path, self.buf, self.pos, self.what = path, buf, 0, "the file header"

    def remaining(self):
        return len(self.buf) - self.pos

    def take(self, n):
        if n > self.remaining():
            raise _error(self.path, f"truncated at byte {len(self.buf)} while reading {self.what} "
                                    f"({n} bytes needed at byte {self.pos})")
        start = self.pos
        self.pos += n
        return start

    def unpack(self, fmt):
        start = self.take(struct.calcsize(fmt))
        return struct.unpack_from("<" + fmt, self.buf, start)

    def one(self, fmt):
        return self.unpack(fmt)[0]

    def fail(self, message):
        return _error(self.path, f"{message} (at byte {self.pos}, {self.what})")


def _mx_shape(cur, ndim, dim_fmt, what):
    if ndim < 0 or ndim > _MX_MAX_NDIM:
        raise cur.fail(f"implausible number of dimensions {ndim}")
    cur.what = f"the shape of {what}"
    dims = cur.unpack(dim_fmt * ndim) if ndim else ()
    if any(d < 0 for d in dims):
        raise cur.fail(f"shape {list(dims)} has an unknown dimension")
    return tuple(dims)


def _mx_header_shape(cur, what):
    """(shape, is_v3) after the magic; sparse storage is refused here, before its extra fields."""
    magic = cur.one("I")
    if magic not in (_MX_V1_MAGIC, _MX_V2_MAGIC, _MX_V3_MAGIC):
        if magic > _MX_MAX_NDIM:  # the magic-less legacy layout starts with ndim
            raise cur.fail(f"unknown NDArray magic 0x{magic:08X}")
        return _mx_shape(cur, magic, "I", what), False
    if magic != _MX_V1_MAGIC:
        cur.what = f"the storage type of {what}"
        storage = cur.one("i")
        if storage in _MX_SPARSE:
            raise cur.fail(f"sparse ({_MX_SPARSE[storage]}) storage is not supported; save the array dense")
        if storage != 0:
            raise cur.fail(f"unknown storage type {storage}")
    cur.what = f"the shape of {what}"
    ndim = cur.one("i")
    if magic == _MX_V3_MAGIC and ndim == -1:
        raise cur.fail("empty NDArray (unknown shape)")
    return _mx_shape(cur, ndim, "q", what), magic == _MX_V3_MAGIC


def _mx_ndarray(cur, index, count):
    what = f"array {index} of {count}"
    cur.what = f"the header of {what}"
    shape, is_v3 = _mx_header_shape(cur, what)
    if not shape and not is_v3:  # before V3 (numpy shapes) ndim 0 marks an empty NDArray
        raise cur.fail("empty NDArray (no shape)")
    cur.what = f"the context and type of {what}"
    _dev_type, _dev_id, flag = cur.unpack("iii")
    if flag in _MX_REFUSED_DTYPES:
        raise cur.fail(f"dtype {_MX_REFUSED_DTYPES[flag]} is not supported")
    if flag not in _MX_DTYPES:
        raise cur.fail(f"unknown dtype flag {flag}")
    dtype = np.dtype(_MX_DTYPES[flag]).newbyteorder("<")
    size = math.prod(shape)
    cur.what = f"the data of {what}"
    start = cur.take(size * dtype.itemsize)
    return np.frombuffer(cur.buf, dtype=dtype, count=size, offset=start).reshape(shape).copy()


def _mx_names(cur, count):
    cur.what = "the name list"
    n = cur.one("Q")
    if n == 0:
        raise cur.fail(f"the {count} arrays have no names (saved from a list, not a dict)")
    if n != count:
        raise cur.fail(f"{n} names for {count} arrays")
    names = []
    for i in range(n):
        cur.what = f"name {i} of {n}"
        length = cur.one("Q")
        start = cur.take(length)
        try:
            names.append(cur.buf[start:start + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise cur.fail("the name is not UTF-8") from None
    return names


def _strip_mx_prefix(name):
    for prefix in _MX_NAME_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):], prefix[:-1]
    return name, None


@_os_errors_as_config_errors
def read_mxnet_params(path):
    """An MXNet NDArray list file (``mx.nd.save``, Gluon ``save_parameters``, Module ``*-0000.params``),
    parsed with struct / numpy only. ``arg:`` / ``aux:`` prefixes are removed from the names and kept in
    ``state.prefixes``."""
    with open(path, "rb") as f:
        cur = _ByteCursor(path, f.read())
    magic, _reserved = cur.unpack("QQ")
    if magic != _MX_LIST_MAGIC:
        raise _error(path, f"not an MXNet NDArray file (magic 0x{magic:X}, expected 0x{_MX_LIST_MAGIC:X})")
    cur.what = "the array count"
    count = cur.one("Q")
    arrays = [_mx_ndarray(cur, i, count) for i in range(count)]
    names = _mx_names(cur, count)
    if cur.remaining():
        raise _error(path, f"{cur.remaining()} unexpected bytes after the name list (at byte {cur.pos})")
    state = WeightState(path=path)
    for stored, array in zip(names, arrays):
        name, prefix = _strip_mx_prefix(stored)
        if name in state:
            raise _error(path, f"two arrays are named '{name}' once prefixes are removed")
        state[name] = array
        if prefix:
            state.prefixes[name] = prefix
    return state


def has_mxnet_magic(path):
    """The file starts like an MXNet NDArray list, whatever its extension."""
    with open(path, "rb") as f:
        head = f.read(8)
    return len(head) == 8 and struct.unpack("<Q", head)[0] == _MX_LIST_MAGIC


# -- numpy and PyTorch -------------------------------------------------------------------------------
@_os_errors_as_config_errors
def read_npz(path):
    """A ``.npz`` archive of arrays (no pickled objects)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = OrderedDict((k, data[k]) for k in data.files)
    except Exception as e:  # a truncated, foreign or object-array archive
        raise _error(path, f"not a readable .npz archive ({type(e).__name__}: {_first_line(e)})") from None
    return unwrap_state(arrays, path)


@_os_errors_as_config_errors
def read_torch(path):
    """A PyTorch checkpoint through ``torch.load(map_location='cpu', weights_only=True)``: tensors and
    plain containers only, never arbitrary objects."""
    try:
        import torch
    except ImportError:
        raise _error(path, "reading a PyTorch checkpoint needs torch (pip install torch), "
                           "or save it as .safetensors / .npz with the same keys") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise _error(path, f"cannot be loaded safely as a PyTorch weights file ({_first_line(e)})") from None
    return unwrap_state(obj, path)


# -- dispatch ----------------------------------------------------------------------------------------
@_os_errors_as_config_errors
def read_weights(path):
    """Read any supported weights file or model folder (see ``SUPPORTED_KINDS``) into a ``WeightState``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return read_hub_folder(path)
    if not os.path.isfile(path):
        raise _error(path, "file not found")
    lower = path.lower()
    if lower.endswith(".pdparams"):
        raise _error(path, "already Paddle weights: pass it as pretrained weights directly "
                           "(Arch.pretrained / Global.pretrained_model), it needs no conversion")
    if lower.endswith(".safetensors"):
        return read_safetensors(path)
    if lower.endswith(".params") or has_mxnet_magic(path):
        return read_mxnet_params(path)
    if lower.endswith(".npz"):
        return read_npz(path)
    if lower.endswith(TORCH_SUFFIXES):
        return read_torch(path)
    raise _error(path, f"unsupported weights file; supported: {SUPPORTED_KINDS}")
