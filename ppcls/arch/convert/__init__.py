"""Converters from the original implementations' checkpoints. Each family module registers its rules."""
from .core import (ConversionError, Rules, convert_checkpoint, convert_state_dict, get_rules,
                   load_source_state, register_rules)
from . import families  # noqa: F401  (registers every family's rules)
