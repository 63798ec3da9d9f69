"""The single model registry: every backbone factory registers here under its Arch.name."""
from ..utils.errors import unknown_name_error

MODELS = {}


def register_model(fn_or_name=None):
    """Register a model factory (a class or a function returning an nn.Layer).

    Use as ``@register_model`` or ``register_model("Name")(factory)``.
    """
    def deco(fn, name=None):
        key = name or fn.__name__
        if key in MODELS and MODELS[key] is not fn:
            raise ValueError(f"model name '{key}' registered twice")
        MODELS[key] = fn
        return fn

    if callable(fn_or_name):
        return deco(fn_or_name)
    return lambda fn: deco(fn, fn_or_name)


def get_model_factory(name):
    if name not in MODELS:
        raise unknown_name_error("model", name, MODELS.keys(), where="Arch.name")
    return MODELS[name]


def list_models():
    return sorted(MODELS)
