"""Pretrained weights: the table of what is published for each variant, and loading weights from a
tag, ``True`` (the default tag), a local file or folder in any supported format, or a URL.

Each family module lists its variants' weights beside its spec table (``register_weights``). A row
says where the file lives (a URL, a Hugging Face Hub repo + file, or pages for a manual download),
its layout (``paddle``, ``torch`` = the original implementation's, ``timm``, ``gluon``), its sha256 or
the prefix of it that the file name carries, the licence, the published accuracy with its source,
and the eval transform the accuracy was measured with.

Downloads go to the cache (``ppcls.utils.download``: verified, resumable, mirror and offline
switches). A foreign layout is converted once; the converted ``.pdparams`` is cached beside the
download with its hash recorded. Everything is read with loaders that run no code from the file.
"""
import hashlib
import os
from dataclasses import asdict, dataclass, field

import paddle

from ..utils import download
from ..utils.errors import ConfigError
from ..utils.logger import logger
from ..utils.save_load import apply_state_dict, atomic_save, load_state_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUTS = ("paddle", "torch", "timm", "gluon")
HF_ROOT = "https://huggingface.co"


@dataclass(frozen=True)
class EvalTransform:
    """How the published accuracy was measured: resize the short side, centre-crop, normalise."""
    resize_short: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD


@dataclass(frozen=True)
class Weights:
    tag: str                    # "paddleclas_in1k", "timm_in1k", "original", ...
    layout: str                 # one of LAYOUTS
    file: str                   # the file's name as distributed
    url: str = None             # a plain HTTP(S) GET fetches it
    hub: str = None             # a Hugging Face Hub repo holding ``file``
    pages: tuple = ()           # where a person downloads it (Google Drive, Baidu pan): no plain GET
    sha256: str = None
    sha256_prefix: str = None   # the start of the sha256 carried in the file name (torch-hub style)
    license: str = ""
    top1: float = None
    top5: float = None
    published: str = ""         # where the accuracy was published
    eval: EvalTransform = field(default_factory=EvalTransform)
    class_num: int = 1000
    default: bool = False
    notes: str = ""

    @property
    def source(self):
        """The URL a download starts from (None when only a manual download is possible)."""
        if self.url:
            return self.url
        if self.hub:
            return f"{HF_ROOT}/{self.hub}/resolve/main/{self.file}"
        return None

    def describe(self, model_name):
        d = asdict(self)
        d.update(name=f"{model_name}.{self.tag}", source=self.source, manual=self.source is None,
                 verified="sha256" if self.sha256 else "sha256 prefix" if self.sha256_prefix else "first download")
        return d


PADDLECLAS_URL = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/"
TIMM_ACCURACY = "timm results/results-imagenet.csv (huggingface/pytorch-image-models@aa4b5850)"


def paddleclas_weights(name, top1, top5, docs, upstream_license):
    """PaddleClas's conversion of the official weights (its ``MODEL_URLS``): the default where it exists,
    since it needs no conversion and was evaluated with this framework's preprocessing."""
    return Weights("paddleclas_in1k", "paddle", f"{name}_pretrained.pdparams", url=f"{PADDLECLAS_URL}{name}_pretrained.pdparams",
                   top1=top1, top5=top5, published=f"PaddleClas {docs} (PaddlePaddle/PaddleClas@d178931f)",
                   license=f"Apache-2.0 (PaddleClas); converted from the {upstream_license} weights", default=True)


def timm_weights(tag, hub, top1, top5, license, interpolation="bilinear"):
    """timm's file on the Hugging Face Hub (``model.safetensors`` of ``hub``)."""
    return Weights(tag, "timm", "model.safetensors", hub=hub, top1=top1, top5=top5, published=TIMM_ACCURACY,
                   license=f"{license} (timm pretrained_cfg)", eval=EvalTransform(interpolation=interpolation))


WEIGHTS = {}


def register_weights(table):
    """``{model name: (Weights, ...)}``; the first row marked ``default`` (else the first) is the default."""
    for name, rows in table.items():
        tags = [w.tag for w in rows]
        if len(set(tags)) != len(tags):
            raise ValueError(f"{name}: duplicate weight tags {tags}")
        for w in rows:
            if w.layout not in LAYOUTS:
                raise ValueError(f"{name}.{w.tag}: layout {w.layout!r} not one of {LAYOUTS}")
        WEIGHTS[name] = tuple(rows)


def weights_of(name):
    return WEIGHTS.get(name, ())


def default_weights(name):
    rows = weights_of(name)
    return next((w for w in rows if w.default), rows[0] if rows else None)


def find_weights(name, tag):
    """The row ``tag`` (``"timm_in1k"`` or ``"DLA34.timm_in1k"``; ``True`` / ``"default"``: the default)."""
    if tag is True or tag == "default":
        w = default_weights(name)
        if w is None:
            raise ConfigError(f"pretrained=True: no published weights are known for {name}; give a file, a folder or a URL")
        return w
    tag = tag[len(name) + 1:] if tag.startswith(name + ".") else tag
    return next((w for w in weights_of(name) if w.tag == tag), None)


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
    from . import build_model
    from .convert import ConversionError, convert_state_dict, detect_layout, get_rules, layouts_of
    layouts_of(name)
    rules = get_rules(name, keys=src.keys())
    logger.info(f"{source_name}: {detect_layout(name, src.keys())} layout of {name}; converting")
    try:
        state, dropped = convert_state_dict(build_model({"name": name}), src, rules)
    except ConversionError as e:
        width = _classifier_width(e.problems, src)
        if width is None:
            raise ConversionError(f"{source_name}: {e}") from None
        state, dropped = convert_state_dict(build_model({"name": name, "class_num": width}), src, rules)
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
