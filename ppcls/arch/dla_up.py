"""DLA-Up, the DLA original's segmentation network: the model (defined with the other families in
``backbone/dla_up.py``, where the registry and the import rules want every model) and the original's
``pretrained_base``: ImageNet weights for its DLA base through the project's weights table.

This module sits above the weights loader (it may download and convert), which the model definitions
below it must not import.
"""
from ..utils.errors import ConfigError
from ..utils.logger import logger
from ..utils.save_load import apply_state_dict
from .backbone.dla_up import DLA_UP_VARIANTS, DLASeg, bilinear_kernel  # noqa: F401  (the public names)
from .weights import read_weights_file, resolve_weights

__all__ = ["DLASeg", "DLA_UP_VARIANTS", "bilinear_kernel", "load_base_weights"]


def load_base_weights(model, spec=True, where="pretrained_base"):
    """Initialise ``model.base`` (a ``DLASeg``) from ImageNet weights of its DLA, as the original's
    ``pretrained_base='imagenet'`` does: ``spec`` is ``True`` (the default weights of that DLA), a tag
    (``DLA34.original`` -> ``"original"``), a local file in any layout the converter reads, or a URL.
    The classifier of the checkpoint is left out (DLA-Up never runs it). Returns the number of tensors
    loaded."""
    if not isinstance(model, DLASeg):
        raise ConfigError(f"{where}: {type(model).__name__} is not a DLA-Up model (DLASeg)")
    name = model.base_name
    path, from_cache = resolve_weights(name, spec, where)
    state = read_weights_file(name, path, cache_conversion=from_cache)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    report = apply_state_dict(model.base, state, path, strict=True)
    loaded = len(model.base.state_dict()) - len(report["missing"])
    logger.info(f"DLA-Up base {name} initialised from {path} ({loaded} tensors)")
    return loaded
