"""Model construction: ``build_model(arch_config)`` looks ``Arch.name`` up in the registry."""
import copy
import inspect

from . import backbone  # noqa: F401  (registers every family)
from .registry import MODELS, get_model_factory, list_models, register_model
from ..utils.errors import ConfigError, nearest

# Arch keys that the engine consumes and that are not model constructor options.
ENGINE_ARCH_KEYS = ("name", "pretrained", "use_sync_bn", "infer_add_softmax", "infer_output_key")


def build_model(arch_config):
    cfg = copy.deepcopy(dict(arch_config))
    if "name" not in cfg:
        raise ConfigError("Arch.name is required")
    name = cfg["name"]
    factory = get_model_factory(name)
    pretrained = cfg.get("pretrained", False)
    kwargs = {k: v for k, v in cfg.items() if k not in ENGINE_ARCH_KEYS}
    sig = inspect.signature(factory)
    accepts_var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_var_kw:
        valid = [p for p in sig.parameters if p != "self"]
        for k in kwargs:
            if k not in valid:
                hint = nearest(k, valid)
                raise ConfigError(f"Arch.{k}: not an option of {name}"
                                  + (f" (did you mean '{hint}'?)" if hint else f"; options: {', '.join(valid)}"))
    model = factory(**kwargs)
    if pretrained:
        if pretrained is True:
            raise ConfigError(f"Arch.pretrained=True: nothing is downloaded; give the path of a .pdparams "
                              f"file (e.g. one made by tools/convert_weights.py -a {name})")
        from ..utils.save_load import load_pretrained
        load_pretrained(model, str(pretrained))
    return model


__all__ = ["build_model", "register_model", "MODELS", "list_models"]
