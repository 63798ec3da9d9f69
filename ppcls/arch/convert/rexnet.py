"""Conversion rules for the official ReXNet checkpoints (clovaai/rexnet, rexnetv1_<w>x.pth) and the
zshn25 fork's ReXUNet: the module trees match key for key; only BatchNorm statistics are renamed. timm's
ReXNet files (Hugging Face Hub ``timm/rexnet_*``) use their own module names, mapped by ``timm_layouts``."""
from ..backbone.rexnet import REXNET_SPECS
from .core import Rules, register_rules
from .timm_layouts import detect_timm_rexnet, timm_rexnet_key, timm_rexnet_transform

register_rules(list(REXNET_SPECS) + ["ReXUNet"], Rules("torch"))
# timm's own module names (stem / features.N.conv_exp ... / head.fc as a Linear)
register_rules(list(REXNET_SPECS), Rules("torch", detect=detect_timm_rexnet, rename=timm_rexnet_key,
                                         transform=timm_rexnet_transform), layout="timm")
