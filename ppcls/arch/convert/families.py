"""Imports every family's conversion rules so they register."""
import importlib

for _mod in ("dla", "rla", "rexnet", "residual_attention"):
    try:
        importlib.import_module(f"{__package__}.{_mod}")
    except ModuleNotFoundError as e:  # a family not written yet
        if e.name != f"{__package__}.{_mod}":
            raise
