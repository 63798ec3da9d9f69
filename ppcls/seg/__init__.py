"""Segmentation on PaddleSeg 2.8.0 with this project's networks.

Importing ``ppcls.seg`` checks that PaddleSeg is installed at the supported version, applies the Paddle 3
compatibility fixes to PaddleSeg's own functions (``compat.py``) and registers into PaddleSeg's managers:
every backbone family of the zoo in ``manager.BACKBONES`` (``backbones.py``), ReXUNet and DLA-Up in
``manager.MODELS`` (``models.py``). ``import ppcls`` never imports this package, so PaddleSeg stays optional.
"""
import importlib.util

from ..utils.errors import ConfigError

SUPPORTED_PADDLESEG = "2.8.0"
INSTALL_HINT = "bash tools/install_extras.sh seg"


def paddleseg_version():
    """The installed PaddleSeg's version, or None when it is not installed."""
    if importlib.util.find_spec("paddleseg") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("paddleseg")
    except PackageNotFoundError:  # a source checkout on the path: its own version string
        import paddleseg
        return getattr(paddleseg, "__version__", "unknown")


def require_paddleseg():
    """The installed PaddleSeg version; a one-line error naming the install command otherwise."""
    found = paddleseg_version()
    if found is None:
        raise ConfigError(f"PaddleSeg is not installed; install PaddleSeg {SUPPORTED_PADDLESEG} with `{INSTALL_HINT}`")
    if found != SUPPORTED_PADDLESEG:
        raise ConfigError(f"PaddleSeg {found} is installed but ppcls seg supports {SUPPORTED_PADDLESEG}; "
                          f"install it with `{INSTALL_HINT}`")
    return found


require_paddleseg()

from . import compat  # noqa: E402  (after the check: it imports paddleseg)

compat.apply_fixes(SUPPORTED_PADDLESEG)

from . import backbones, models  # noqa: E402,F401  (register into PaddleSeg's managers)
