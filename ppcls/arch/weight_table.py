"""The table of published weights: for each registered variant, what is published (``Weights`` rows:
where the file lives, its layout, hash, licence, the published accuracy and the eval transform it was
measured with), and the lookups by tag.

Data only: the family modules fill it beside their spec tables (``register_weights``), and the
converters and the loader (``ppcls.arch.weights``) read it. It imports nothing of ``ppcls.arch``, so
the spec tables can use it without reaching the loader, which itself needs the converters.
"""
from dataclasses import asdict, dataclass, field

from ..utils.errors import ConfigError

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
