"""Shared base class of every backbone in the zoo.

One mechanism for all families:
- ``class_num`` (classifier width; families document what ``class_num <= 0`` returns),
- ``return_stages``: return the outputs of chosen stages (a list, in the requested order) instead of
  logits, for detection and segmentation; ``feature_info`` / ``out_channels`` / ``out_strides``
  describe them,
- ``frozen_stages`` / ``norm_eval``: the detection-style options (freeze the stem and the first
  stages; keep BatchNorm statistics frozen while training),
- ``load_pretrained(path)``: load a ``.pdparams`` checkpoint with a report of mismatched keys.

A subclass builds its layers, calls ``self._set_feature_info([...])`` with one entry per stage
(``dict(name=..., channels=..., reduction=...)``, stage index = position in the list), and
implements ``forward_features(x) -> (stage_outputs, head_input)`` and ``forward_head(head_input)``.
A subclass that supports ``frozen_stages`` also implements ``stage_layers()`` (a list, one entry per
stage, of the layers that make up that stage; the stem is stage 0).
"""
import paddle.nn as nn

from ...utils.errors import ConfigError


class Backbone(nn.Layer):
    def __init__(self, return_stages=None, frozen_stages=-1, norm_eval=False):
        super().__init__()
        self._return_stages = None if return_stages is None else list(return_stages)
        self.frozen_stages = int(frozen_stages)
        self.norm_eval = bool(norm_eval)
        self.feature_info = []

    # -- feature description ------------------------------------------------------------------
    def _set_feature_info(self, info):
        self.feature_info = [dict(stage=i, **d) for i, d in enumerate(info)]
        if self._return_stages is not None:
            n = len(self.feature_info)
            names = [d["name"] for d in self.feature_info]
            for s in self._return_stages:
                if not isinstance(s, int) or isinstance(s, bool) or not -n <= s < n:
                    raise ConfigError(
                        f"return_stages: stage {s!r} does not exist in {type(self).__name__}; "
                        f"valid stages are 0..{n - 1} ({', '.join(names)})")
        if self.frozen_stages >= 0:
            self._freeze_stages()

    @property
    def return_stages(self):
        return self._return_stages

    def _selected_info(self):
        stages = self._return_stages if self._return_stages is not None else range(len(self.feature_info))
        return [self.feature_info[s] for s in stages]

    @property
    def out_channels(self):
        return [d["channels"] for d in self._selected_info()]

    @property
    def out_strides(self):
        return [d["reduction"] for d in self._selected_info()]

    # -- forward ------------------------------------------------------------------------------
    def forward_features(self, x):
        raise NotImplementedError

    def forward_head(self, x):
        raise NotImplementedError

    def forward(self, x):
        stages, head_input = self.forward_features(x)
        if self._return_stages is not None:
            return [stages[s] for s in self._return_stages]
        return self.forward_head(head_input)

    # -- detection options --------------------------------------------------------------------
    def stage_layers(self):
        raise NotImplementedError(f"{type(self).__name__} does not support frozen_stages")

    def _freeze_stages(self):
        layers = self.stage_layers()
        if self.frozen_stages >= len(layers):
            raise ConfigError(f"frozen_stages={self.frozen_stages}: {type(self).__name__} has stages 0..{len(layers) - 1}")
        for stage in layers[: self.frozen_stages + 1]:
            for layer in stage:
                layer.eval()
                for p in layer.parameters():
                    p.stop_gradient = True

    def train(self):
        super().train()
        if self.frozen_stages >= 0:
            for stage in self.stage_layers()[: self.frozen_stages + 1]:
                for layer in stage:
                    layer.eval()
        if self.norm_eval:
            for layer in self.sublayers():
                if isinstance(layer, nn.layer.norm._BatchNormBase):
                    layer.eval()
        return self

    # -- checkpoints --------------------------------------------------------------------------
    def load_pretrained(self, path):
        from ...utils.save_load import load_pretrained
        return load_pretrained(self, path)
