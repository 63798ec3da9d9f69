"""All backbones. Importing this package registers every family; each model is also an attribute
here (``ppcls.arch.backbone.DLA60``)."""
import importlib

from ..registry import MODELS
from .base import Backbone

for _mod in ("paddle_models", "dla", "rlanet", "rexnet", "rexunet", "residual_attention"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as e:  # a family not written yet
        if e.name != f"{__name__}.{_mod}":
            raise

globals().update(MODELS)
__all__ = ["Backbone"] + sorted(MODELS)
