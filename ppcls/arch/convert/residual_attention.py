"""Conversion rules for the Gluon Residual Attention Networks (``save_parameters`` structural names,
saved as .npz): gamma/beta and the BN statistics are renamed and the Dense weight transposed by the
generic part; every other name is the same."""
from ..backbone.residual_attention import ATTENTION_MODELS
from .core import Rules, register_rules

register_rules(ATTENTION_MODELS, Rules("gluon"))
