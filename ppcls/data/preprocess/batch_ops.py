"""Batch operators (mixup, cutmix and a sampler between them).

They run in the training process on the batch tensors (on the device), right after the loader, so
one-hot targets never cross process boundaries and the batch size is untouched. Randomness comes from
numpy's global generator, which the engine seeds. Each op returns ``(images, soft_targets [N, K])``.
``stop_epoch: E`` switches an op off from epoch E + 1 on (e.g. mixup for all but the last epochs);
``prob: p`` mixes a batch with probability p (inside OpSampler, ``prob`` is the sampler's choice instead).
"""
import numpy as np
import paddle
import paddle.nn.functional as F

from ...utils.errors import ConfigError
from .registry import BATCH_OPS, register_batch_op


def _one_hot(labels, class_num):
    if labels.ndim == 2 and labels.shape[-1] == class_num and labels.dtype in (paddle.float32, paddle.float16):
        return labels
    return F.one_hot(labels.reshape([-1]).astype("int64"), class_num).astype("float32")


class _BatchOp:
    def __init__(self, class_num, alpha=1.0, prob=1.0, stop_epoch=None):
        if class_num is None or class_num <= 0:
            raise ConfigError(f"{type(self).__name__}: class_num must be positive (set Arch.class_num)")
        if alpha <= 0:
            raise ConfigError(f"{type(self).__name__}.alpha: must be > 0, got {alpha}")
        self.class_num = int(class_num)
        self.alpha = float(alpha)
        if not 0.0 <= float(prob) <= 1.0:
            raise ConfigError(f"{type(self).__name__}.prob: must be in [0, 1], got {prob}")
        self.prob = float(prob)
        self.stop_epoch = stop_epoch

    def active(self, epoch):
        return self.stop_epoch is None or epoch <= self.stop_epoch

    def __call__(self, images, labels, epoch=1):
        targets = _one_hot(labels, self.class_num)
        if not self.active(epoch) or images.shape[0] < 2:
            return images, targets
        # drawn only when asked for, so runs without prob keep the random streams they always had
        if self.prob < 1.0 and np.random.rand() >= self.prob:
            return images, targets
        lam = float(np.random.beta(self.alpha, self.alpha))
        perm = paddle.to_tensor(np.random.permutation(images.shape[0]))
        return self.mix(images, targets, lam, perm)


@register_batch_op
class MixupOperator(_BatchOp):
    def mix(self, images, targets, lam, perm):
        images = lam * images + (1.0 - lam) * paddle.gather(images, perm)
        targets = lam * targets + (1.0 - lam) * paddle.gather(targets, perm)
        return images, targets


@register_batch_op
class CutmixOperator(_BatchOp):
    def mix(self, images, targets, lam, perm):
        h, w = images.shape[2], images.shape[3]
        cut = np.sqrt(1.0 - lam)
        cw, ch = int(w * cut), int(h * cut)
        cx, cy = np.random.randint(w), np.random.randint(h)
        x1, x2 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
        y1, y2 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
        if x2 <= x1 or y2 <= y1:
            return images, targets
        mask = np.zeros((1, 1, h, w), np.float32)
        mask[..., y1:y2, x1:x2] = 1.0
        mask = paddle.to_tensor(mask)
        images = images * (1.0 - mask) + paddle.gather(images, perm) * mask
        lam = 1.0 - (x2 - x1) * (y2 - y1) / float(w * h)  # the pasted area decides the target weights
        targets = lam * targets + (1.0 - lam) * paddle.gather(targets, perm)
        return images, targets


@register_batch_op
class OpSampler:
    """Pick one of the given ops per batch with its ``prob`` (the rest of the probability: no op).

    ``OpSampler: {MixupOperator: {alpha: 0.8, prob: 0.5}, CutmixOperator: {alpha: 1.0, prob: 0.5}}``
    """

    def __init__(self, class_num, **ops):
        if not ops:
            raise ConfigError("OpSampler: give at least one op, e.g. MixupOperator: {alpha: 0.2, prob: 0.5}")
        self.class_num = class_num
        self.ops, self.probs = [], []
        for name, kwargs in ops.items():
            kwargs = dict(kwargs or {})
            prob = float(kwargs.pop("prob", 1.0 / len(ops)))
            self.ops.append(BATCH_OPS.build(name, kwargs, f"OpSampler.{name}", name_where="OpSampler",
                                            class_num=class_num))
            self.probs.append(prob)
        if sum(self.probs) > 1.0 + 1e-6:
            raise ConfigError(f"OpSampler: probabilities sum to {sum(self.probs)} > 1")

    def __call__(self, images, labels, epoch=1):
        r = np.random.rand()
        acc = 0.0
        for op, p in zip(self.ops, self.probs):
            acc += p
            if r < acc:
                return op(images, labels, epoch)
        return images, _one_hot(labels, self.class_num)


def build_batch_ops(op_configs, class_num):
    """A callable ``(images, labels, epoch) -> (images, targets)`` or None when there are no ops."""
    if not op_configs:
        return None
    ops = BATCH_OPS.build_entries(op_configs, "batch_transform_ops", class_num=class_num)

    def apply(images, labels, epoch=1):
        targets = labels
        for op in ops:
            images, targets = op(images, targets, epoch)
        return images, targets
    return apply
