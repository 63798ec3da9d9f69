"""Models: ``build_model(arch_config)`` builds the ``Arch`` section's model (options checked against the
model's signature) and loads its pretrained weights when asked."""
from . import backbone  # noqa: F401  (registers every family)
from .distillation import ARCH_NAME as DISTILLATION, DistillationModel, infer_class_num, parse_arch
from .registry import CARDS, MODELS, ModelCard, get_model_factory, list_models, register_model
from ..utils.errors import ConfigError

# Arch keys read by the engine and the exporter, not passed to the model's constructor
ENGINE_ARCH_KEYS = ("name", "pretrained", "use_sync_bn", "infer_add_softmax")


def model_options(arch_config):
    """The ``Arch`` keys that are constructor options of the model."""
    return {k: v for k, v in arch_config.items() if k not in ENGINE_ARCH_KEYS}


def validate_arch(arch_config):
    """``Arch.name`` is registered and every other key is an option of that model (or an engine key)."""
    if not isinstance(arch_config, dict) or "name" not in arch_config:
        raise ConfigError("Arch.name: required (the model to build)")
    if arch_config["name"] == DISTILLATION:
        parse_arch(arch_config)
        return
    MODELS.validate(arch_config["name"], model_options(arch_config), "Arch")


def build_model(arch_config, training=True):
    """The model of an ``Arch`` section; ``pretrained`` (True, a tag, a path or a URL) loads weights.
    ``training=False``: a DistillationModel loads only its infer model's weights (the others do not run)."""
    validate_arch(arch_config)
    name = arch_config["name"]
    if name == DISTILLATION:
        model = DistillationModel(**model_options(arch_config), training=training)
    else:
        model = MODELS.build(name, model_options(arch_config), where="Arch")
    pretrained = arch_config.get("pretrained")
    if pretrained:
        load_pretrained(model, name, pretrained, where="Arch.pretrained")
    return model


def load_pretrained(model, name, spec, where="Global.pretrained_model"):
    """Weights into a built model: a DistillationModel takes its own checkpoints or its infer model's
    weights, every other model what ``ppcls.arch.weights.load_weights`` reads."""
    if isinstance(model, DistillationModel):
        return model.load_pretrained(spec, where)
    from .weights import load_weights
    return load_weights(model, name, spec, where=where)


def output_class_num(arch_config):
    """How many classes the model an ``Arch`` section builds predicts (for a DistillationModel: its
    ``infer_model_name`` model's)."""
    if arch_config["name"] == DISTILLATION:
        return infer_class_num(arch_config)
    return arch_config.get("class_num", 1000)


__all__ = ["build_model", "validate_arch", "model_options", "load_pretrained", "output_class_num", "DistillationModel",
           "register_model", "MODELS", "CARDS", "ModelCard", "list_models", "get_model_factory"]
