"""Loading pretrained weights: from a tag, ``True`` (the default tag), a local file or folder in any
supported format, or a URL.

What is published for each variant is the table in ``ppcls.arch.weight_table`` (filled by the family
modules beside their spec tables); its names are re-exported here, the module the rest of the package
and the tools import. A row says where the file lives (a URL, a Hugging Face Hub repo + file, or pages
for a manual download), its layout (``paddle``, ``torch`` = the original implementation's, ``timm``,
``gluon``), its sha256 or the prefix of it that the file name carries, the licence, the published
accuracy with its source, and the eval transform the accuracy was measured with.

Downloads go to the cache (``ppcls.utils.download``: verified, resumable, mirror and offline
switches). A foreign layout is converted once; the converted ``.pdparams`` is cached beside the
download with its hash recorded. Everything is read with loaders that run no code from the file.

Imports point down: the weight table and the spec tables (``backbone``) below the converters
(``convert``), and those below this loader.
"""
import hashlib
import os

import paddle

from ..utils import download
from ..utils.errors import ConfigError
from ..utils.logger import logger
from ..utils.save_load import apply_state_dict, atomic_save, load_state_file
from . import backbone  # noqa: F401  (registers every model a conversion may build)
from .convert import ConversionError, convert_state_dict, detect_layout, get_rules, layouts_of
from .registry import MODELS
from .weight_table import (HF_ROOT, IMAGENET_MEAN, IMAGENET_STD, LAYOUTS, PADDLECLAS_URL, TIMM_ACCURACY,  # noqa: F401
                           WEIGHTS, EvalTransform, Weights, default_weights, find_weights, paddleclas_weights,
                           register_weights, timm_weights, weights_of)


def cached_path(name, w):
    """Where the weights ``w`` of model ``name`` live in the cache (also where a manual download goes)."""
    return os.path.join(download.cache_dir(), name, w.tag, w.file)


def _manual_error(name, w, path):
    pages = " or ".join(w.pages) if w.pages else "its publisher's page"
    return ConfigError(f"{name}.{w.tag}: {w.file} is published only at {pages}, which a plain HTTP GET cannot fetch; "
                       f"download it by hand and put it at {path} (or pass its path as the pretrained weights)")


def fetch_weights(name, w):
    """The local file of weights ``w``: from the cache, downloaded and verified when missing."""
    path = cached_path(name, w)
    if w.source is None:
        if not os.path.isfile(path):
            raise _manual_error(name, w, path)
        download.verify_recorded(path)
        return path
    return download.fetch(w.source, path, sha256=w.sha256, sha256_prefix=w.sha256_prefix, what=f"{name}.{w.tag} weights")


def fetch_url(url):
    """A URL given directly: cached under a name derived from the URL."""
    base = os.path.basename(url.split("?", 1)[0]) or "weights"
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return download.fetch(url, os.path.join(download.cache_dir(), "urls", key, base), what="weights")


def _is_url(text):
    return isinstance(text, str) and "://" in text


def _local(path):
    """``path`` as given, or with ``.pdparams`` appended (PaddleClas prefixes name files without it)."""
    for candidate in (path, path + ".pdparams"):
        if os.path.exists(candidate):
            return candidate
    return None


# -- conversion of foreign layouts -------------------------------------------------------------------
def _classifier_width(problems, state):
    """The class count of a checkpoint whose only misfit is the classifier's width, else None."""
    bad = problems.get("mismatched") or []
    if problems.get("missing") or problems.get("unexpected") or len(bad) not in (1, 2):
        return None
    widths = {src_shape[0] for _, src_shape, _, _ in bad}
    return widths.pop() if len(widths) == 1 else None


def convert_foreign(name, src, source_name):
    """``src`` (arrays in another implementation's layout, detected from the keys) as this project's
    state dict for ``name``, built with the checkpoint's own class count."""
    layouts_of(name)
    rules = get_rules(name, keys=src.keys())
    logger.info(f"{source_name}: {detect_layout(name, src.keys())} layout of {name}; converting")
    try:
        state, dropped = convert_state_dict(MODELS.build(name, where="Arch"), src, rules)
    except ConversionError as e:
        width = _classifier_width(e.problems, src)
        if width is None:
            raise ConversionError(f"{source_name}: {e}") from None
        state, dropped = convert_state_dict(MODELS.build(name, {"class_num": width}, where="Arch"), src, rules)
    if dropped:
        logger.info(f"{source_name}: dropped {len(dropped)} keys the port leaves out")
    return state


def _converted_cache(name, path):
    return f"{path}.{name}.pdparams"


def read_weights_file(name, path, cache_conversion=False):
    """This project's state dict for ``name`` from a local file or folder in any supported format."""
    if os.path.isfile(path) and path.endswith(".pdparams"):
        return load_state_file(path, "pretrained weights")
    converted = _converted_cache(name, path)
    if cache_conversion and os.path.isfile(converted):
        download.verify_recorded(converted)
        return load_state_file(converted, "converted weights")
    from ..utils.weight_files import read_weights
    state = convert_foreign(name, read_weights(path), path)
    if cache_conversion:
        atomic_save({k: paddle.to_tensor(v) for k, v in state.items()}, converted)
        download.record_sha256(converted)
        logger.info(f"cached the converted weights at {converted}")
    return state


def resolve_weights(name, spec, where="pretrained"):
    """(local path, whether it came from the cache) for a pretrained spec: True, a tag, a path or a URL."""
    if _is_url(spec):
        return fetch_url(spec), True
    if isinstance(spec, str):
        local = _local(spec)
        if local is not None:
            return local, False
    w = find_weights(name, spec)
    if w is None:
        known = ", ".join(f"{name}.{x.tag}" for x in weights_of(name)) or "none"
        raise ConfigError(f"{where}: {spec!r} is not a file, a folder, a URL or a known tag "
                          f"(known weights of {name}: {known})")
    return fetch_weights(name, w), True


def load_weights(model, name, spec, where="pretrained"):
    """Load pretrained weights into ``model`` (of registered model ``name``). Returns the report of
    missing / unexpected / mis-shaped keys; another classifier width is skipped (fine-tuning)."""
    path, from_cache = resolve_weights(name, spec, where)
    state = read_weights_file(name, path, cache_conversion=from_cache)
    return apply_state_dict(model, state, path)
