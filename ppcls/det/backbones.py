"""The zoo's classification models as PaddleDetection backbones.

Every model of ``ppcls.arch.list_models()`` that can return its stages is registered into ppdet's
workspace under its own zoo name (``backbone: RLA_ResNet50`` in a detector's config). ppdet looks a
registered class up by name in its module (``create`` does ``getattr(module, name)``), so each model
gets a small subclass bound here under that name.

Options (the zoo's own meaning, the same as in a classification config):

- ``return_stages``: the zoo model's stage indices to return (``ppcls models``/``model_info`` list
  them); by default the last stage at each stride 4, 8, 16, 32, which is what an FPN expects.
- ``frozen_stages``: freeze the stem and stages 1..m (the RLA original's detection setting is 1).
- ``norm_eval``: keep every BatchNorm in eval mode while training (the RLA original: True).
- ``pretrained``: ``True`` (the default published weights), a tag of the weights table, a path to a
  ``.pdparams`` file (a classification training output such as ``output/DLA46_c/best_model``), a
  converted or foreign checkpoint, or a URL; loaded by ``ppcls.arch.weights.load_weights``.
- ``options``: other constructor options of the zoo model (``rla_channel``, ...).

The classifier is not built (``class_num=0``): a detector never uses it, and parameters without a
gradient would stall data-parallel training.
"""
import inspect
import sys

import paddle.nn as nn
from ppdet.core.workspace import global_config, register, serializable
from ppdet.modeling.shape_spec import ShapeSpec

from ..arch import MODELS, build_model, list_models
from ..utils.errors import ConfigError

FPN_STRIDES = (4, 8, 16, 32)

# models the zoo lists that cannot be detection backbones, and why
SKIPPED = {
    "ReXUNet": "a U-Net whose stages are its six one-channel sigmoid mask outputs, not feature maps",
}
_NO_STAGES = "paddle.vision model without return_stages (use ppdet's own {} instead)"
_DLA_UP = ("the DLA-Up segmentation network (class scores at the input size, not stage feature maps); its base "
           "DLA is a backbone")


class ZooBackbone(nn.Layer):
    """A zoo classification model returning the feature maps of chosen stages to a ppdet detector."""
    model_name = None  # the zoo name, set by each registered subclass

    def __init__(self, return_stages=None, frozen_stages=-1, norm_eval=False, pretrained=None, options=None):
        super().__init__()
        name = self.model_name
        where = f"{name} (backbone)"
        options = dict(options or {})
        reserved = {"class_num", "return_stages", "frozen_stages", "norm_eval", "pretrained"} & set(options)
        if reserved:
            raise ConfigError(f"{where}.options: {', '.join(sorted(reserved))} are options of the backbone "
                              f"itself, not of options")
        arch = dict(options, name=name, class_num=0, frozen_stages=frozen_stages, norm_eval=norm_eval)
        if return_stages is None:
            probe = build_model(dict(arch, frozen_stages=-1, norm_eval=False))
            return_stages = default_return_stages(name, probe.feature_info)
            del probe
        arch["return_stages"] = list(return_stages)
        self.net = build_model(arch)
        if pretrained not in (None, False, "", "None"):
            from ..arch.weights import load_weights
            load_weights(self.net, name, pretrained, where=f"{where}.pretrained")
            # loading replaces parameters' values but not their frozen flag; the freeze set at build time holds
        self._out_shape = [ShapeSpec(channels=c, stride=s) for c, s in zip(self.net.out_channels, self.net.out_strides)]

    def forward(self, inputs):
        if self.training and (self.net.norm_eval or self.net.frozen_stages >= 0):
            # a detector's model.train() sets ``training`` on every sublayer without calling the zoo
            # backbone's own train(), which is what puts frozen stages and BatchNorm back in eval mode
            self.net.train()
        return self.net(inputs["image"])

    @property
    def out_shape(self):
        return self._out_shape


def default_return_stages(name, feature_info):
    """The last stage at each FPN stride; a model without all four needs ``return_stages`` set."""
    chosen = []
    for stride in FPN_STRIDES:
        at_stride = [d["stage"] for d in feature_info if d["reduction"] == stride]
        if not at_stride:
            listing = ", ".join(f"{d['stage']}:{d['name']}/{d['reduction']}" for d in feature_info)
            raise ConfigError(f"{name} (backbone).return_stages: {name} has no stage at stride {stride}; "
                              f"set return_stages from its stages (index:name/stride) {listing}")
        chosen.append(at_stride[-1])
    return chosen


def detection_backbone_names():
    """(names registered as ppdet backbones, {skipped name: reason})."""
    names, skipped = [], {}
    for name in list_models():
        if name in SKIPPED:
            skipped[name] = SKIPPED[name]
        elif name.startswith("DLAUp_"):
            skipped[name] = _DLA_UP
        elif "return_stages" not in inspect.signature(MODELS.get(name)).parameters:
            skipped[name] = _NO_STAGES.format("ResNet" if name.startswith("ResNet") else "MobileNet")
        else:
            names.append(name)
    return names, skipped


def _register_all():
    module = sys.modules[__name__]
    names, skipped = detection_backbone_names()
    for name in names:
        if getattr(module, name, None) is not None and getattr(module, name).model_name == name:
            continue  # registered by an earlier import of this module
        if name in global_config:
            raise ConfigError(f"backbone {name}: ppdet already registers a module of that name; "
                              f"the zoo's model cannot be registered under it")
        cls = type(name, (ZooBackbone,), {
            "model_name": name, "__module__": __name__,
            "__doc__": f"The zoo's {name} as a ppdet backbone (see ppcls.det.backbones)."})
        setattr(module, name, cls)
        register(serializable(cls))
    return names, skipped


REGISTERED, SKIPPED_MODELS = _register_all()
