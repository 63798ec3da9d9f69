"""ppcls: a PaddleClas-layout model zoo and training toolkit for DLA, RLA-Net, ReXNet and Residual
Attention Networks.

    import ppcls
    ppcls.list_models("DLA*")
    model = ppcls.create_model("DLA34", pretrained=True)     # the default published weights
    ppcls.model_info("RLA_ResNet50")                           # params, MACs, stages, weights

Importing ppcls is light: the models are registered when one of these functions (or ppcls.arch) is
first used. PaddlePaddle itself is the user's choice (paddlepaddle for CPU, paddlepaddle-gpu for CUDA).
"""
import warnings as _warnings

from .version import __version__

# Paddle's import warns about a missing compiler cache (irrelevant to users of this package).
_warnings.filterwarnings("ignore", message="No ccache found")

_MIN_PADDLE = (3, 0)


def _check_paddle():
    try:
        import paddle
    except ImportError:
        raise ImportError("ppcls needs PaddlePaddle >= 3.0, which is installed separately so you can choose the "
                          "build: pip install paddlepaddle (CPU) or paddlepaddle-gpu (CUDA; see paddlepaddle.org.cn "
                          "for the wheel matching your CUDA)") from None
    version = tuple(int(p) for p in paddle.__version__.split(".")[:2] if p.isdigit())
    if version and version != (0, 0) and version < _MIN_PADDLE:  # 0.0.0 is a develop build
        raise ImportError(f"ppcls needs PaddlePaddle >= 3.0; this environment has {paddle.__version__} "
                          "(pip install -U paddlepaddle or paddlepaddle-gpu)")


_check_paddle()


def create_model(name, pretrained=None, class_num=None, **options):
    """Build the registered model ``name``; ``pretrained``: True (its default published weights), a tag
    (``"timm_in1k"`` or ``"DLA34.timm_in1k"``), a file or folder in any supported format, or a URL.
    ``options`` are the model's own (``return_stages``, ``rla_channel``, ...)."""
    from .arch import build_model
    cfg = dict(options, name=name)
    if class_num is not None:
        cfg["class_num"] = class_num
    if pretrained:
        cfg["pretrained"] = pretrained
    return build_model(cfg)


def list_models(pattern=None):
    """Registered model names, sorted; ``pattern`` filters shell-style (``"RLA_*"``), ignoring case."""
    from .arch import list_models as names
    return names(pattern)


def model_info(name, input_size=None, **options):
    """Params, MACs, stages (index, name, channels, stride) and published weights of model ``name``."""
    from .arch.info import model_info as info
    return info(name, input_size, **options)


__all__ = ["create_model", "list_models", "model_info", "__version__"]
