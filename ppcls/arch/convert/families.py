"""Imports every family's conversion rules so they register."""
from . import dla, rla, rexnet, residual_attention  # noqa: F401
