"""``Infer.PostProcess`` of the dygraph predictor (tools/infer.py): ``Topk``, or PaddleClas's
``DistillationPostProcess`` for a DistillationModel, which takes the output of one of its models."""
from ..utils.errors import ConfigError
from .pipeline import Topk

POSTPROCESS_FUNCS = {"Topk": Topk}


class DistillationPostProcess:
    """``func`` (Topk) on the output of ``model_name`` (and its ``key``) in a DistillationModel's output
    mapping, ``{model name: class probabilities}``. An array is taken as that model's output already (the
    exported model, which holds one model)."""

    def __init__(self, model_name="Student", key=None, func="Topk", topk=5, label_list=None):
        if func not in POSTPROCESS_FUNCS:
            raise ConfigError(f"Infer.PostProcess.func: {func!r}: the classifiers here post-process with "
                              f"{', '.join(POSTPROCESS_FUNCS)}")
        self.model_name, self.key = model_name, key
        self.func = POSTPROCESS_FUNCS[func](topk, label_list)

    def select(self, outputs):
        if isinstance(outputs, dict):
            if self.model_name not in outputs:
                raise ConfigError(f"Infer.PostProcess.model_name: {self.model_name!r} is not a model of Arch.models "
                                  f"({', '.join(map(repr, outputs))})")
            outputs = outputs[self.model_name]
        if self.key is not None:
            if not isinstance(outputs, (dict, list, tuple)):
                raise ConfigError(f"Infer.PostProcess.key: {self.model_name} returns one output; leave key unset")
            outputs = outputs[self.key]
        return outputs

    def __call__(self, outputs, files):
        return self.func(self.select(outputs), files)


def build_postprocess(post_cfg, label_list=None):
    """``DistillationPostProcess`` when ``Infer.PostProcess`` names it, else ``Topk`` (the classifiers'
    post-processing, whatever other name a PaddleClas config gives)."""
    post = dict(post_cfg or {})
    name = post.pop("name", None)
    topk = post.pop("topk", None) or 5
    post.pop("class_id_map_file", None)
    if name == "DistillationPostProcess":
        return DistillationPostProcess(topk=topk, label_list=label_list, **post)
    return Topk(topk, label_list)
