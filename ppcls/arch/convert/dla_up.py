"""Conversion rules for the original DLA-Up checkpoints (ucbdrive/dla ``dla_up.py``, PyTorch; what its
``segment.py`` saves: a ``state_dict`` of a DataParallel model, unwrapped by the generic reader).

Keys and shapes match one to one (``base.*``, ``dla_up.ida_i.{proj,up,node}_j.*``, ``fc.0.*``,
``up.weight``; BatchNorm statistics renamed by the generic part). Dropped, as they never reach the
original's outputs: the base DLA's ImageNet classifier ``base.fc.*`` and the ``project`` layers of the
base's non-leaf trees.
"""
from ..backbone.dla_up import DLA_UP_VARIANTS
from .core import Rules, register_rules


def _unused_in_dlaseg(key, target_keys):
    if key.startswith("base.fc."):
        return True
    if ".project." not in key:
        return False
    module = key.rsplit(".", 1)[0]
    return not any(k.startswith(module + ".") for k in target_keys)


register_rules(list(DLA_UP_VARIANTS), Rules("torch", drop=_unused_in_dlaseg))
