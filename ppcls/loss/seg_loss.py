"""Deep-supervision loss for models with several sigmoid outputs (ReXUNet: six, finest first)."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..utils.errors import ConfigError
from .registry import register_loss


@register_loss
class MultiScaleSegLoss(nn.Layer):
    """Sum over outputs k of weights[k] * (BCE + dice_weight * Dice), each output compared with the
    mask resized to its scale (nearest neighbour, so targets stay binary). Outputs are probabilities."""

    def __init__(self, weights=None, dice_weight=0.0, eps=1e-6):
        super().__init__()
        self.weights = None if weights is None else [float(w) for w in weights]
        if dice_weight < 0:
            raise ConfigError(f"MultiScaleSegLoss.dice_weight: must be >= 0, got {dice_weight}")
        self.dice_weight = float(dice_weight)
        self.eps = float(eps)

    def forward(self, outputs, mask):
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        weights = self.weights or [1.0] * len(outputs)
        if len(weights) != len(outputs):
            raise ConfigError(f"MultiScaleSegLoss.weights: {len(weights)} weights for {len(outputs)} outputs")
        total = 0.0
        for w, p in zip(weights, outputs):
            t = mask if p.shape[2:] == mask.shape[2:] else F.interpolate(mask, size=p.shape[2:], mode="nearest")
            p = paddle.clip(p, self.eps, 1 - self.eps)
            bce = -(t * paddle.log(p) + (1 - t) * paddle.log(1 - p)).mean()
            loss = bce
            if self.dice_weight:
                inter = (p * t).sum(axis=[1, 2, 3])
                dice = 1 - (2 * inter + 1) / (p.sum(axis=[1, 2, 3]) + t.sum(axis=[1, 2, 3]) + 1)
                loss = loss + self.dice_weight * dice.mean()
            total = total + w * loss
        return total
