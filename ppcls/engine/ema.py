"""Exponential moving average of the model's weights and BN statistics (PaddleClas semantics:
every state-dict entry, updated after each optimizer step). Paddle has no dygraph EMA API."""
import copy

import paddle


class ModelEMA:
    def __init__(self, model, decay=0.9999):
        self.decay = float(decay)
        self.model = copy.deepcopy(model)
        self.model.eval()
        for p in self.model.parameters():
            p.stop_gradient = True

    @paddle.no_grad()
    def update(self, model):
        src = model.state_dict()
        for k, v in self.model.state_dict().items():
            s = src[k]
            if paddle.is_floating_point(v):
                v.set_value(v * self.decay + s.astype(v.dtype) * (1.0 - self.decay))
            else:
                v.set_value(s)

    def state_dict(self):
        return self.model.state_dict()

    def set_state_dict(self, state):
        self.model.set_state_dict(state)
