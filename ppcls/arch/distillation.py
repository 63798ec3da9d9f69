"""Knowledge distillation: ``Arch.name: DistillationModel`` in PaddleClas's schema.

    Arch: {name: DistillationModel, models: [{Teacher: {name, pretrained, ...}}, {Student: {...}}],
           freeze_params_list: [True, False], pretrained_list: null, infer_model_name: Student}

Every entry of ``models`` is any model of the zoo, built from its own options (an ``Arch`` of its own), so
teacher and student may come from different families. The forward returns ``{name: output}`` and the
parameters are named ``<name>.<parameter>`` (PaddleClas's layout, so checkpoints carry over).

A frozen model (a teacher) has no trainable parameters, so the optimizer holds no state for it and
``DataParallel`` never all-reduces it; it stays in eval mode (its BatchNorm statistics never move, whatever
``train()`` reaches it) and runs without autograd, so a distillation step costs the teacher's forward
and nothing more. ``infer_model_name`` names the model that is evaluated, exported and saved as
``*_student.pdparams``; it is required, because guessing it is how PaddleClas users end up exporting the
teacher.

This module sits beside ``ppcls.arch.build_model`` (which dispatches ``DistillationModel`` here): it
builds the sub-models through the registry and the weights loader, below ``ppcls.arch`` itself.
"""
import inspect

import paddle
import paddle.nn as nn

from ..utils.config import check_type, warn_compat
from ..utils.errors import ConfigError, did_you_mean
from ..utils.logger import logger
from ..utils.registry import accepted_options
from ..utils.save_load import apply_state_dict, load_state_file
from .registry import MODELS

ARCH_NAME = "DistillationModel"
# the keys of the Arch section of a DistillationModel (besides the engine's name, pretrained, use_sync_bn,
# infer_add_softmax); class_num is the default of every model that does not give its own
OPTIONS = ("models", "pretrained_list", "freeze_params_list", "infer_model_name", "class_num")
# keys of PaddleClas's sub-model entries that are no options of the zoo's models: use_ssld (its distilled
# weights) is warned about, dropout_prob accepted when null (PaddleClas's configs give it so)
PADDLECLAS_KEYS = ("use_ssld", "dropout_prob")
SSLD_WHY = "no SSLD weights are published for the models here; `pretrained: True` loads the default weights"


def _model_entries(arch, where="Arch"):
    """``[(key, model name, options, pretrained)]`` of ``Arch.models``, every name and option checked."""
    models = arch.get("models")
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{where}.models: required for {ARCH_NAME}: a list of {{Name: {{name: <model>, ...}}}} "
                          f"entries, e.g. [{{Teacher: {{name: DLA102}}}}, {{Student: {{name: DLA34}}}}]")
    entries, seen = [], set()
    for i, entry in enumerate(models):
        at = f"{where}.models[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(f"{at}: expected a one-key mapping {{Name: {{name: <model>, ...}}}}, got {entry!r}")
        key, spec = next(iter(entry.items()))
        if not isinstance(key, str) or not key or "." in key:
            raise ConfigError(f"{at}: {key!r} cannot name a model (a non-empty string without '.': it prefixes "
                              "the parameter names)")
        if key in seen:
            raise ConfigError(f"{at}.{key}: the name is given twice in {where}.models")
        seen.add(key)
        at = f"{at}.{key}"
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"{at}.name: required (the model to build, e.g. DLA34)")
        options = {k: v for k, v in spec.items() if k not in ("name", "pretrained") + PADDLECLAS_KEYS}
        name = spec["name"]
        if name == ARCH_NAME:
            raise ConfigError(f"{at}.name: a {ARCH_NAME} cannot hold another one")
        own_options = _options_of(name, at)
        if spec.get("use_ssld"):
            warn_compat(f"{at}.use_ssld", SSLD_WHY)
        if spec.get("dropout_prob") is not None:
            raise ConfigError(f"{at}.dropout_prob: PaddleClas's MobileNet option; give {name}'s own option instead "
                              f"(its options: {', '.join(own_options)})")
        if arch.get("class_num") is not None and "class_num" not in options and "class_num" in own_options:
            options["class_num"] = arch["class_num"]
        MODELS.validate(name, options, at)
        entries.append((key, name, options, spec.get("pretrained")))
    return entries


def _options_of(name, where):
    return accepted_options(MODELS.get(name, where=f"{where}.name")) or []


def _per_model_list(arch, key, n, where, kind):
    values = arch.get(key)
    if values is None:
        return [None] * n
    if not isinstance(values, list) or len(values) != n:
        raise ConfigError(f"{where}.{key}: expected a list of {n} entries (one per model of {where}.models), "
                          f"got {values!r}")
    for i, v in enumerate(values):
        if v is not None:
            check_type(f"{where}.{key}[{i}]", v, kind)
    return values


def parse_arch(arch, where="Arch"):
    """The checked content of a DistillationModel's ``Arch``: ``(entries, freeze flags, pretrained specs,
    infer_model_name)``. One-line errors naming the key."""
    for k in arch:
        if k not in OPTIONS + ("name", "pretrained", "use_sync_bn", "infer_add_softmax"):
            raise ConfigError(f"{where}.{k}: unknown key for {ARCH_NAME}"
                              + did_you_mean(k, OPTIONS + ("pretrained", "use_sync_bn", "infer_add_softmax"),
                                             listing=True))
    if arch.get("class_num") is not None:
        check_type(f"{where}.class_num", arch["class_num"], int)
    entries = _model_entries(arch, where)
    names = [e[0] for e in entries]
    freeze = [bool(f) for f in _per_model_list(arch, "freeze_params_list", len(entries), where, bool)]
    pretrained = _per_model_list(arch, "pretrained_list", len(entries), where, (bool, str))
    for i, ((key, _, _, own), listed) in enumerate(zip(entries, pretrained)):
        if own and listed:
            raise ConfigError(f"{where}.pretrained_list[{i}]: {key} also gives {where}.models[{i}].{key}.pretrained; "
                              "give its weights once")
    infer = arch.get("infer_model_name")
    quoted = ", ".join(repr(n) for n in names)
    if infer is None:
        raise ConfigError(f"{where}.infer_model_name: required for {ARCH_NAME}: the model that is evaluated, "
                          f"exported and saved as *_student.pdparams (one of {quoted})")
    if infer not in names:
        raise ConfigError(f"{where}.infer_model_name: {infer!r} is not a model of {where}.models ({quoted})"
                          + did_you_mean(infer, names))
    return entries, freeze, pretrained, infer


def infer_class_num(arch):
    """The class count of the model a DistillationModel evaluates and exports (what the data and the
    metrics are sized by)."""
    entries, _, _, infer = parse_arch(arch)
    _, name, options, _ = next(e for e in entries if e[0] == infer)
    if "class_num" in options:
        return options["class_num"]
    param = inspect.signature(MODELS.get(name)).parameters.get("class_num")
    return param.default if param is not None and param.default is not inspect.Parameter.empty else 1000


def set_training(layer, mode):
    """``layer.train()`` / ``eval()`` without touching the global dygraph tracer (which those also switch,
    and which the other models of the step share)."""
    layer.training = mode
    for sub in layer.sublayers():
        sub.training = mode


class DistillationModel(nn.Layer):
    """Several models under their names; ``forward(x) -> {name: output}``. See the module docstring."""

    def __init__(self, models=None, pretrained_list=None, freeze_params_list=None, infer_model_name=None,
                 class_num=None, where="Arch", training=True):
        super().__init__()
        arch = dict(models=models, pretrained_list=pretrained_list, freeze_params_list=freeze_params_list,
                    infer_model_name=infer_model_name, class_num=class_num)
        entries, freeze, pretrained, infer = parse_arch(arch, where)
        self.model_names = [key for key, _, _, _ in entries]
        self.arch_names = {key: name for key, name, _, _ in entries}
        self.frozen_names = [key for key, f in zip(self.model_names, freeze) if f]
        self.infer_model_name = infer
        for i, (key, name, options, own) in enumerate(entries):
            model = MODELS.build(name, options, where=f"{where}.models[{i}].{key}")
            spec, origin = (own, f"{where}.models[{i}].{key}.pretrained") if own else \
                (pretrained[i], f"{where}.pretrained_list[{i}]")
            # outside training only the infer model runs: a teacher's weights file need not be at hand to
            # evaluate, predict with or export the student
            if spec and (training or key == infer):
                from .weights import load_weights  # the loader (and its converters) only when weights are asked for
                load_weights(model, name, spec, where=origin)
            if freeze[i]:
                for p in model.parameters():
                    p.stop_gradient = True
                set_training(model, False)
            self.add_sublayer(key, model)
        if len(self.frozen_names) == len(self.model_names):
            logger.info(f"{ARCH_NAME}: every model is frozen (freeze_params_list); only evaluation and export "
                        "make sense")

    def sub_model(self, name):
        if name not in self._sub_layers or name not in self.arch_names:
            raise ConfigError(f"{name!r} is not a model of Arch.models ({', '.join(map(repr, self.model_names))})"
                              + did_you_mean(name, self.model_names))
        return self._sub_layers[name]

    @property
    def infer_model(self):
        """The model ``infer_model_name`` names: evaluated, exported, saved as ``*_student.pdparams``."""
        return self._sub_layers[self.infer_model_name]

    def train(self):
        super().train()
        for name in self.frozen_names:
            set_training(self._sub_layers[name], False)
        return self

    def forward(self, x):
        out = {}
        for name in self.model_names:
            model = self._sub_layers[name]
            if name not in self.frozen_names:
                out[name] = model(x)
                continue
            if model.training:  # a train() of an enclosing layer (DataParallel, to_static) reached it
                set_training(model, False)
            if paddle.in_dynamic_mode():
                with paddle.no_grad():
                    out[name] = model(x)
            else:
                y = model(x)
                out[name] = [t.detach() for t in y] if isinstance(y, (list, tuple)) else y.detach()
        return out

    def load_pretrained(self, spec, where="Global.pretrained_model"):
        """Weights for the whole model (a checkpoint of a DistillationModel: keys ``<name>.<param>``) or for
        the model ``infer_model_name`` names alone (e.g. ``best_model_student.pdparams``)."""
        from .weights import resolve_weights
        if spec is True:
            raise ConfigError(f"{where}: True: no weights are published for a {ARCH_NAME}; give one of its checkpoints "
                              f"(e.g. output/{ARCH_NAME}/best_model), or each model's weights in Arch.models")
        path, _ = resolve_weights(ARCH_NAME, spec, where)
        if not path.endswith(".pdparams"):
            raise ConfigError(f"{where}: {path}: a {ARCH_NAME} loads .pdparams files (its own checkpoints, or one of "
                              "its models'); give each model's foreign weights in Arch.models[i].<Name>.pretrained")
        state = load_state_file(path, "pretrained weights")
        if not isinstance(state, dict):
            raise ConfigError(f"{path}: not a state dict")
        prefixes = tuple(f"{n}." for n in self.model_names)
        if any(str(k).startswith(prefixes) for k in state):
            return apply_state_dict(self, state, path)
        logger.info(f"{path} holds one model's weights: loading them into {self.infer_model_name} "
                    f"(Arch.infer_model_name)")
        return apply_state_dict(self.infer_model, state, path)
