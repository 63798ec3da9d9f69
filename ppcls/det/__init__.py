"""Detection with the zoo's backbones inside PaddleDetection (ppdet) 2.6.0 detectors.

Importing this package checks that ppdet 2.6.0 is installed (one line with the install command
otherwise), applies the Paddle 3.x fixes to ppdet's own functions (``compat``) and registers every zoo
backbone into ppdet's workspace (``backbones``). ``import ppcls`` never imports it.
"""
from .compat import REQUIRED_PPDET, apply_fixes, require_ppdet

require_ppdet()
apply_fixes()

from . import backbones  # noqa: E402,F401  (registers the zoo's models as ppdet backbones)
from .config import snapshot_workspace  # noqa: E402

snapshot_workspace()

__all__ = ["REQUIRED_PPDET", "apply_fixes", "require_ppdet", "backbones"]
