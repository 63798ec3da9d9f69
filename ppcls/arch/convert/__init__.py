"""Converters from other implementations' checkpoints. Each family module registers its layouts."""
from .core import (CONVERTERS, ConversionError, Rules, convert_checkpoint, convert_state_dict, detect_layout,
                   get_rules, layouts_of, load_source_state, register_rules)
from . import dla, dla_up, rla, rexnet, residual_attention  # noqa: F401  (register every family's layouts)
