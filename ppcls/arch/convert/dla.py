"""Conversion rules for the original DLA checkpoints (ucbdrive/dla, PyTorch).

Keys and shapes match one to one (BatchNorm statistics renamed by the generic part); the original's
``project`` layers of non-leaf trees, which never reach its output, have no counterpart here and are
dropped. timm's DLA files (Hugging Face Hub ``timm/dla*``) hold the same keys without those.
"""
from ..backbone.dla import DLA_SPECS
from .core import Rules, register_rules
from .timm_layouts import detect_timm_dla


def _dead_projection(key, target_keys):
    if ".project." not in key:
        return False
    module = key.rsplit(".", 1)[0]
    return not any(k.startswith(module + ".") for k in target_keys)


register_rules(list(DLA_SPECS), Rules("torch", drop=_dead_projection))
# timm's keys are ucbdrive's without the dead projections (recognised by their absence)
register_rules(list(DLA_SPECS), Rules("torch", detect=detect_timm_dla), layout="timm")
