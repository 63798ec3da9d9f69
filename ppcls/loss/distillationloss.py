"""The distillation losses of PaddleClas, with its names, options and defaults, on the outputs of a
``DistillationModel`` (``{model name: logits}``).

Each returns ``{name: value}`` with PaddleClas's keys (``CELoss_Student_Teacher``, ``CELoss_Student``,
``DMLLoss_Student_Teacher_0``, ``loss_kldiv_Student_Teacher``, ``loss_dkd_Student_Teacher``), which are
the names the train log and VisualDL show; ``CombinedLoss`` weights and sums them. ``weight`` is required
in the config, as in PaddleClas.

Where the second model of a pair is the target (CE, KL divergence, DKD) it gets no gradient, as in
PaddleClas (Paddle's cross entropy and KL divergence do not differentiate their label); DML is mutual and
trains both. Differences from PaddleClas, all in cases it gets wrong: ``epsilon`` smooths the teacher's
probabilities (PaddleClas smooths its raw logits); a mixup/cutmix batch's soft targets are used as the
probabilities they are by the ground-truth CE (PaddleClas re-softmaxes them) and give DKD their dominant
class; a loss of several pairs counts every pair (PaddleClas counts the first when it is the only loss).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..utils.errors import ConfigError
from .celoss import CELoss
from .registry import register_loss


def _check_names(value, where, pairs):
    key = "model_name_pairs" if pairs else "model_names"
    if not isinstance(value, (list, tuple)) or not value:
        what = "[student, teacher] name pairs" if pairs else "names"
        raise ConfigError(f"{where}.{key}: required, a list of {what} of Arch.models, got {value!r}")
    for item in value:
        if pairs and (not isinstance(item, (list, tuple)) or len(item) != 2
                      or not all(isinstance(n, str) for n in item)):
            raise ConfigError(f"{where}.model_name_pairs: every entry is a pair of model names, got {item!r}")
        if not pairs and not isinstance(item, str):
            raise ConfigError(f"{where}.model_names: every entry is a model name, got {item!r}")
    return [tuple(item) for item in value] if pairs else list(value)


class _DistillationLoss(nn.Layer):
    """Picks the models' outputs (and their ``key``) from a DistillationModel's output mapping."""
    weight_required = True  # PaddleClas's CombinedLoss refuses an entry without one

    def __init__(self, key, name):
        super().__init__()
        self.key = key
        self.name = name

    def output(self, outputs, model):
        where = type(self).__name__
        if not isinstance(outputs, dict):
            raise ConfigError(f"{where}: works on the outputs of Arch.name: DistillationModel (one per model), "
                              f"got a {type(outputs).__name__}")
        if model not in outputs:
            raise ConfigError(f"{where}: {model!r} is not a model of Arch.models ({', '.join(map(repr, outputs))})")
        out = outputs[model]
        if self.key is not None:
            if isinstance(out, dict) and self.key in out:
                return out[self.key].astype("float32")
            if isinstance(out, (list, tuple)) and isinstance(self.key, int) and -len(out) <= self.key < len(out):
                return out[self.key].astype("float32")
            raise ConfigError(f"{where}.key: {self.key!r} is not an output of {model} "
                              + ("(it returns one tensor: leave key unset)" if paddle.is_tensor(out)
                                 else f"({type(out).__name__} of {len(out)})"))
        if not paddle.is_tensor(out):
            raise ConfigError(f"{where}.key: {model} returns several outputs; give key (the index of the logits)")
        # AMP's float16 logits: softmax and logarithms of the losses in float32
        return out.astype("float32")

    def pair(self, outputs, a, b):
        x, y = self.output(outputs, a), self.output(outputs, b)
        if x.shape[-1] != y.shape[-1]:
            raise ConfigError(f"{type(self).__name__}: {a} has {x.shape[-1]} outputs and {b} {y.shape[-1]}: "
                              "distilling logits needs the same class_num")
        return x, y


@register_loss
class DistillationCELoss(_DistillationLoss):
    """Cross entropy of each pair's first model against the second's softmax (plus ``epsilon`` smoothing)."""

    def __init__(self, model_name_pairs=None, epsilon=None, key=None, name="loss_ce"):
        super().__init__(key, name)
        self.model_name_pairs = _check_names(model_name_pairs, "DistillationCELoss", pairs=True)
        self.ce = CELoss(epsilon=epsilon)

    def forward(self, outputs, target):
        losses = {}
        for a, b in self.model_name_pairs:
            x, y = self.pair(outputs, a, b)
            losses[f"CELoss_{a}_{b}"] = self.ce(x, F.softmax(y, axis=-1).detach())
        return losses


@register_loss
class DistillationGTCELoss(_DistillationLoss):
    """Cross entropy of each named model against the ground truth (soft mixup targets too)."""

    def __init__(self, model_names=None, epsilon=None, key=None, name="loss_gt_ce"):
        super().__init__(key, name)
        self.model_names = _check_names(model_names, "DistillationGTCELoss", pairs=False)
        self.ce = CELoss(epsilon=epsilon)

    def forward(self, outputs, target):
        return {f"CELoss_{m}": self.ce(self.output(outputs, m), target) for m in self.model_names}


def dml_loss(x, y, act="softmax", sum_across_class_dim=False, eps=1e-12):
    """Deep mutual learning: the symmetric KL divergence of the two distributions, each term scaled by the
    class count as PaddleClas's DMLLoss does; mean over samples and classes (or summed over classes)."""
    if act == "softmax":
        x, y = F.softmax(x, axis=-1), F.softmax(y, axis=-1)
    elif act == "sigmoid":
        x, y = F.sigmoid(x), F.sigmoid(y)
    k = x.shape[-1]

    def kl(p, q):
        return q * paddle.log((q + eps) / (p + eps)) * k
    loss = (kl(x, y) + kl(y, x)) / 2
    return loss.sum(axis=1).mean() if sum_across_class_dim else loss.mean()


@register_loss
class DistillationDMLLoss(_DistillationLoss):
    """Deep mutual learning between each pair (both models learn from each other)."""

    def __init__(self, model_name_pairs=None, act="softmax", weight_ratio=False, sum_across_class_dim=False,
                 key=None, name="loss_dml"):
        super().__init__(key, name)
        self.model_name_pairs = _check_names(model_name_pairs, "DistillationDMLLoss", pairs=True)
        if act not in ("softmax", "sigmoid", None):
            raise ConfigError(f"DistillationDMLLoss.act: softmax, sigmoid or null, got {act!r}")
        if weight_ratio:
            raise ConfigError("DistillationDMLLoss.weight_ratio: weights multi-label attributes by their label "
                              "ratios; the classifiers here are single-label (leave it False)")
        self.act, self.sum_across_class_dim = act, bool(sum_across_class_dim)

    def forward(self, outputs, target):
        return {f"DMLLoss_{a}_{b}_{i}": dml_loss(*self.pair(outputs, a, b), self.act, self.sum_across_class_dim)
                for i, (a, b) in enumerate(self.model_name_pairs)}


def kl_div_sum(log_p, q):
    """sum q * (log q - log_p), with 0 where q is 0 (Paddle's kl_div, reduction sum)."""
    return F.kl_div(log_p, q, reduction="sum")


def kldiv_loss(student, teacher, temperature=4.0):
    """Hinton et al.: KL(teacher || student) of the temperature-softened distributions, times T^2, per sample."""
    t = float(temperature)
    log_p = F.log_softmax(student / t, axis=1)
    q = F.softmax(teacher / t, axis=1).detach()
    return kl_div_sum(log_p, q) * (t * t) / student.shape[0]


@register_loss
class DistillationKLDivLoss(_DistillationLoss):
    """KL divergence of each pair at ``temperature`` (Hinton's distillation loss)."""

    def __init__(self, model_name_pairs=None, temperature=4, key=None, name="loss_kl"):
        super().__init__(key, name)
        self.model_name_pairs = _check_names(model_name_pairs, "DistillationKLDivLoss", pairs=True)
        if not float(temperature) > 0:
            raise ConfigError(f"DistillationKLDivLoss.temperature: must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, outputs, target):
        return {f"loss_kldiv_{a}_{b}": kldiv_loss(*self.pair(outputs, a, b), self.temperature)
                for a, b in self.model_name_pairs}


def dkd_loss(student, teacher, target, temperature=1.0, alpha=1.0, beta=1.0):
    """Decoupled knowledge distillation (Zhao et al. 2022): alpha * TCKD (the binary target / non-target
    split) + beta * NCKD (the distribution over the non-target classes), each times T^2 per sample."""
    t = float(temperature)
    n = student.shape[0]
    gt = F.one_hot(target.reshape([-1]), student.shape[-1]).astype(student.dtype)
    other = 1.0 - gt
    p_s = F.softmax(student / t, axis=1)
    p_t = F.softmax(teacher / t, axis=1).detach()

    def binary(p):
        return paddle.concat([(p * gt).sum(axis=1, keepdim=True), (p * other).sum(axis=1, keepdim=True)], axis=1)
    tckd = kl_div_sum(paddle.log(binary(p_s)), binary(p_t)) * (t * t) / n
    # the target class pushed out of the softmax, as PaddleClas (and the paper's code) do
    q_t = F.softmax(teacher / t - 1000.0 * gt, axis=1).detach()
    log_q_s = F.log_softmax(student / t - 1000.0 * gt, axis=1)
    nckd = kl_div_sum(log_q_s, q_t) * (t * t) / n
    return alpha * tckd + beta * nckd


@register_loss
class DistillationDKDLoss(_DistillationLoss):
    """Decoupled knowledge distillation of each pair; the target class is the label (or, with
    ``use_target_as_gt``, the teacher's prediction)."""

    def __init__(self, model_name_pairs=None, key=None, temperature=1.0, alpha=1.0, beta=1.0,
                 use_target_as_gt=False, name="loss_dkd"):
        super().__init__(key, name)
        self.model_name_pairs = _check_names(model_name_pairs, "DistillationDKDLoss", pairs=True)
        if not float(temperature) > 0:
            raise ConfigError(f"DistillationDKDLoss.temperature: must be > 0, got {temperature}")
        self.temperature, self.alpha, self.beta = float(temperature), float(alpha), float(beta)
        self.use_target_as_gt = bool(use_target_as_gt)

    def forward(self, outputs, target):
        losses = {}
        for a, b in self.model_name_pairs:
            x, y = self.pair(outputs, a, b)
            if self.use_target_as_gt or target is None:
                gt = y.argmax(axis=-1)
            elif target.ndim == 2 and target.shape[-1] == x.shape[-1] and paddle.is_floating_point(target):
                gt = target.argmax(axis=-1)  # mixup / cutmix: the dominant class of the soft target
            else:
                gt = target.reshape([-1]).astype("int64")
            losses[f"{self.name}_{a}_{b}"] = dkd_loss(x, y, gt, self.temperature, self.alpha, self.beta)
        return losses
