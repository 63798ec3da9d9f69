"""Cross-entropy with optional label smoothing, for hard labels and for soft (mixed) targets."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..utils.errors import ConfigError
from .registry import register_loss


@register_loss
class CELoss(nn.Layer):
    """``epsilon``: label smoothing (off when None or 0).

    ``smoothing: uniform`` spreads epsilon over all K classes (on = 1 - eps + eps/K, off = eps/K), as
    Paddle and PaddleClas do. ``smoothing: exclusive`` gives the true class 1 - eps and each other
    class eps/(K-1) (the Gluon reference's trick). Soft targets (mixup/cutmix) are used as the
    probabilities they are: smoothing is applied to them, never a softmax.
    """

    def __init__(self, epsilon=None, smoothing="uniform", reduction="mean"):
        super().__init__()
        if epsilon is not None and not (0 <= float(epsilon) < 1):
            raise ConfigError(f"CELoss.epsilon: must be in [0, 1), got {epsilon}")
        if smoothing not in ("uniform", "exclusive"):
            raise ConfigError(f"CELoss.smoothing: 'uniform' or 'exclusive', got {smoothing!r}")
        if reduction not in ("mean", "sum", "none"):
            raise ConfigError(f"CELoss.reduction: 'mean', 'sum' or 'none', got {reduction!r}")
        self.epsilon = float(epsilon) if epsilon else 0.0
        self.smoothing = smoothing
        self.reduction = reduction

    def _smooth(self, target, k):
        eps = self.epsilon
        if self.smoothing == "uniform":
            return target * (1.0 - eps) + eps / k
        return target * (1.0 - eps) + (1.0 - target) * (eps / (k - 1))

    def forward(self, logits, label):
        if isinstance(logits, (list, tuple)):
            logits = logits[0]
        k = logits.shape[-1]
        soft = label.ndim == 2 and label.shape[-1] == k and label.dtype in (paddle.float32, paddle.float16, paddle.float64)
        if not soft:
            label = label.reshape([-1]).astype("int64")
            if self.epsilon == 0:
                loss = F.cross_entropy(logits, label, reduction="none")
            elif self.smoothing == "uniform":
                loss = F.cross_entropy(logits, label, reduction="none", label_smoothing=self.epsilon)
            else:
                target = self._smooth(F.one_hot(label, k).astype(logits.dtype), k)
                loss = -(F.log_softmax(logits, axis=-1) * target).sum(axis=-1)
        else:
            target = self._smooth(label.astype(logits.dtype), k) if self.epsilon else label.astype(logits.dtype)
            loss = -(F.log_softmax(logits, axis=-1) * target).sum(axis=-1)
        loss = loss.reshape([-1])
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss
