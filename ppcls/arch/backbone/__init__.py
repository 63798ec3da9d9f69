"""All backbones. Importing this package registers every family; each model is also an attribute
here (``ppcls.arch.backbone.DLA60``)."""
from ..registry import MODELS
from .base import Backbone
from . import paddle_models, dla, rlanet, rexnet, rexunet, residual_attention  # noqa: F401  (register)

globals().update(MODELS)
__all__ = ["Backbone"] + sorted(MODELS)
