"""The model registry: every model registers under its ``Arch.name``.

A family module defines its variants as rows of a spec table and binds each to a module-level name
with ``variant`` (``DLA34 = variant("DLA34", DLA, ...)``), so every model is a real definition that
editors, linters and ``help()`` find. The factory's signature is the class's minus the row's fixed
arguments, so a misspelt ``Arch`` option is refused with the nearest valid name.
"""
import fnmatch
import inspect
from dataclasses import dataclass

from ..utils.registry import Registry

MODELS = Registry("model")


@dataclass(frozen=True)
class ModelCard:
    """What is known of a registered model without building it: its family, and its trainable
    parameters and conv+linear multiply-accumulates per image at ``input_size`` (measured; a test
    checks them against the built models)."""
    family: str
    params: int
    macs: int
    input_size: int = 224


CARDS = {}


def register_model(fn_or_name=None, card=None):
    """``@register_model``, ``@register_model(card=ModelCard(...))`` or ``register_model("Name")(factory)``."""
    def deco(fn, name=None):
        key = name or fn.__name__
        if card is not None:
            CARDS[key] = card
        return MODELS.register(fn, name=key)
    if callable(fn_or_name):
        return deco(fn_or_name)
    return lambda fn: deco(fn, fn_or_name)


def variant(name, cls, fixed, doc, card=None, defaults=None):
    """Register ``name`` as ``cls`` with the spec row's arguments ``fixed`` (and other ``defaults`` for
    the remaining options); returns the factory."""
    defaults = defaults or {}
    sig = inspect.Signature([p.replace(default=defaults[n]) if n in defaults else p
                             for n, p in inspect.signature(cls.__init__).parameters.items()
                             if n != "self" and n not in fixed])

    def factory(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()  # the variant's own defaults (e.g. class_num 10 for the CIFAR nets)
        return cls(**fixed, **bound.arguments)
    factory.__signature__ = sig
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    factory.__module__ = cls.__module__
    if card is not None:
        CARDS[name] = card
    return MODELS.register(factory, name=name)


def get_model_factory(name):
    return MODELS.get(name, where="Arch.name")


def list_models(pattern=None):
    """Registered model names, sorted; ``pattern`` is a shell-style filter (``"DLA*"``, ``"*ECA*"``),
    matched without regard to case."""
    names = MODELS.names()
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
    return names
