"""PaddleClas's ``DistillationTopkAcc``: top-k accuracy of one model of a ``DistillationModel``."""
from ..utils.errors import ConfigError
from .registry import register_metric
from .topk import TopkAcc


@register_metric
class DistillationTopkAcc(TopkAcc):
    """Top-k accuracy of the output of ``model_key`` (and its ``feature_key``) in a DistillationModel's
    output mapping. Evaluation runs ``Arch.infer_model_name``'s model alone, whose output is that model's
    logits: they are measured as they are."""

    def __init__(self, model_key=None, feature_key=None, topk=(1, 5)):
        if not isinstance(model_key, str) or not model_key:
            raise ConfigError(f"DistillationTopkAcc.model_key: required, the name of a model of Arch.models "
                              f"(e.g. Student), got {model_key!r}")
        self.model_key, self.feature_key = model_key, feature_key
        super().__init__(topk=topk)

    def update(self, output, label):
        if isinstance(output, dict):
            if self.model_key not in output:
                raise ConfigError(f"DistillationTopkAcc.model_key: {self.model_key!r} is not a model of Arch.models "
                                  f"({', '.join(map(repr, output))})")
            output = output[self.model_key]
        if self.feature_key is not None:
            if not isinstance(output, (dict, list, tuple)):
                raise ConfigError(f"DistillationTopkAcc.feature_key: {self.model_key} returns one tensor; "
                                  "leave feature_key unset")
            output = output[self.feature_key]
        super().update(output, label)
