"""Optimizers and learning-rate schedules from the ``Optimizer`` section.

Both are registries of builder functions; a builder's signature is the set of options the config may
give it. Schedules step per iteration: epoch boundaries are multiplied by the iterations per epoch,
and a linear warmup (``warmup_epoch``, from ``warmup_start_lr``) wraps any schedule, which then spans
the epochs after the warmup (PaddleClas semantics).
"""
from collections import namedtuple

import paddle
import paddle.nn as nn
from paddle.optimizer import lr as lr_sched

from ..utils.errors import ConfigError
from ..utils.logger import logger
from ..utils.registry import Registry, split_entry

LR_SCHEDULES = Registry("schedule")
OPTIMIZERS = Registry("optimizer")

# options every schedule takes besides its own
LR_COMMON = ("learning_rate", "warmup_epoch", "warmup_start_lr", "by_epoch", "last_epoch")
# options every optimizer takes besides its own
OPT_COMMON = ("lr", "regularizer", "no_weight_decay_bn_bias", "one_dim_param_no_weight_decay",
              "no_weight_decay_name", "clip_norm", "clip_global_norm")
_NUMBERS = ("learning_rate", "warmup_start_lr", "eta_min", "gamma", "end_lr")
_LISTS = ("decay_epochs", "values", "milestones")

# what a schedule builder gets besides its options: the base lr, the epochs it spans (after the
# warmup) and the steps per epoch (1 when it steps per epoch)
Span = namedtuple("Span", "base epochs unit")


def _base(span):
    if span.base is None:
        raise ConfigError("Optimizer.lr.learning_rate: required")
    return float(span.base)


def _steps(epochs, span):
    return int(round(epochs * span.unit))


@LR_SCHEDULES.register
def Piecewise(span, /, decay_epochs=None, values=None, gamma=0.1):
    if decay_epochs is None:
        raise ConfigError("Optimizer.lr.decay_epochs: required for Piecewise")
    if values is None:
        values = [_base(span) * gamma ** i for i in range(len(decay_epochs) + 1)]
    if len(values) != len(decay_epochs) + 1:
        raise ConfigError(f"Optimizer.lr.values: needs {len(decay_epochs) + 1} entries for {len(decay_epochs)} decay_epochs")
    return lr_sched.PiecewiseDecay([_steps(b, span) for b in decay_epochs], [float(v) for v in values])


@LR_SCHEDULES.register
def MultiStepDecay(span, /, milestones=None, gamma=0.1):
    if not milestones:
        raise ConfigError("Optimizer.lr.milestones: required for MultiStepDecay")
    return lr_sched.MultiStepDecay(_base(span), [_steps(m, span) for m in milestones], gamma)


@LR_SCHEDULES.register
def Cosine(span, /, eta_min=0.0):
    return lr_sched.CosineAnnealingDecay(_base(span), max(1, _steps(span.epochs, span)), eta_min=float(eta_min))


@LR_SCHEDULES.register
def Step(span, /, step_size=None, gamma=0.1):
    if step_size is None:
        raise ConfigError("Optimizer.lr.step_size: required for Step")
    return lr_sched.StepDecay(_base(span), _steps(step_size, span), gamma)


@LR_SCHEDULES.register
def Linear(span, /, end_lr=0.0, power=1.0):
    return lr_sched.PolynomialDecay(_base(span), max(1, _steps(span.epochs, span)), end_lr=float(end_lr),
                                    power=float(power))


@LR_SCHEDULES.register
def ConstLR(span, /):
    return lr_sched.LambdaDecay(_base(span), lambda _: 1.0)


def validate_lr(lr):
    if lr is None:
        raise ConfigError("Optimizer.lr: required")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        return
    name, options = split_entry(dict(lr, name=lr.get("name", "ConstLR")) if isinstance(lr, dict) else lr,
                                "Optimizer.lr", named_key="name")
    LR_SCHEDULES.validate(name, options, "Optimizer.lr", extra=LR_COMMON)
    for k, v in options.items():
        if k in _NUMBERS and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"Optimizer.lr.{k}: expected a number, got {v!r}")
        if k in _LISTS and not isinstance(v, list):
            raise ConfigError(f"Optimizer.lr.{k}: expected a list, got {v!r}")


def build_lr(cfg, epochs, iters_per_epoch):
    """A ``paddle.optimizer.lr.LRScheduler`` stepped once per iteration (``by_epoch``: per epoch), or a
    float for a constant number."""
    if isinstance(cfg, (int, float)):
        return float(cfg)
    validate_lr(cfg)
    options = dict(cfg)
    name = options.pop("name", "ConstLR")
    by_epoch = bool(options.pop("by_epoch", False))
    if options.pop("last_epoch", None) is not None:
        logger.warning("Optimizer.lr.last_epoch: accepted for compatibility; it has no effect "
                       "(a resumed run restores the schedule from its checkpoint)")
    unit = 1 if by_epoch else iters_per_epoch
    warmup_epoch = options.pop("warmup_epoch", 0) or 0
    warmup_start = float(options.pop("warmup_start_lr", 0.0))
    if warmup_epoch >= epochs:
        logger.warning(f"Optimizer.lr.warmup_epoch={warmup_epoch} >= epochs={epochs}: clamped to {epochs}")
        warmup_epoch = epochs
    base = options.pop("learning_rate", None)
    if name == "Piecewise" and base is None and options.get("values"):
        base = options["values"][0]
    sched = LR_SCHEDULES.get(name)(Span(base, epochs - warmup_epoch, unit), **options)
    warmup_steps = int(round(warmup_epoch * unit))
    if warmup_steps > 0:
        sched = lr_sched.LinearWarmup(sched, warmup_steps, warmup_start, float(_base(Span(base, 0, 0))))
    sched.by_epoch = by_epoch
    return sched


# -- optimizers: builder(common, /, own options) -> paddle optimizer ----------------------------------
# ``common`` holds learning_rate, parameters (or groups), weight_decay (a regularizer) and grad_clip
@OPTIMIZERS.register
def Momentum(common, /, momentum=0.9, use_nesterov=False, multi_precision=False):
    return paddle.optimizer.Momentum(momentum=momentum, use_nesterov=use_nesterov, multi_precision=multi_precision,
                                     **common)


@OPTIMIZERS.register
def SGD(common, /, multi_precision=False):
    return paddle.optimizer.SGD(multi_precision=multi_precision, **common)


@OPTIMIZERS.register
def Adam(common, /, beta1=0.9, beta2=0.999, epsilon=1e-8, multi_precision=False):
    return paddle.optimizer.Adam(beta1=beta1, beta2=beta2, epsilon=epsilon, multi_precision=multi_precision, **common)


@OPTIMIZERS.register
def AdamW(common, /, beta1=0.9, beta2=0.999, epsilon=1e-8, multi_precision=False, weight_decay=None):
    # decoupled decay: a float coefficient (the regularizer's coeff when given) and the parameters it skips
    coeff = common.pop("decay_coeff")
    decay = coeff if coeff is not None else (0.01 if weight_decay is None else float(weight_decay))
    skip = common.pop("no_decay_names")
    common.pop("weight_decay")
    return paddle.optimizer.AdamW(weight_decay=decay, beta1=beta1, beta2=beta2, epsilon=epsilon,
                                  multi_precision=multi_precision,
                                  apply_decay_param_fun=(lambda pname: pname not in skip) if skip else None, **common)


@OPTIMIZERS.register
def RMSProp(common, /, rho=0.95, epsilon=1e-6, momentum=0.0, centered=False):
    return paddle.optimizer.RMSProp(rho=rho, epsilon=epsilon, momentum=momentum, centered=centered, **common)


def validate_optimizer(cfg):
    if not isinstance(cfg, dict):
        raise ConfigError(f"Optimizer: expected a mapping, got {cfg!r}")
    name, options = split_entry(dict(cfg, name=cfg.get("name", "Momentum")), "Optimizer", named_key="name")
    OPTIMIZERS.validate(name, options, "Optimizer", extra=OPT_COMMON)
    validate_lr(cfg.get("lr"))
    reg = cfg.get("regularizer")
    if reg is not None:
        if not isinstance(reg, dict) or reg.get("name", "L2") not in ("L2", "L1", "L2Decay", "L1Decay"):
            raise ConfigError(f"Optimizer.regularizer: expected {{name: L2|L1, coeff: float}}, got {reg!r}")
        for k in reg:
            if k not in ("name", "coeff"):
                raise ConfigError(f"Optimizer.regularizer.{k}: unknown option (name, coeff)")


def _no_decay_params(model, bn_bias, substrings):
    names = set()
    for lname, layer in model.named_sublayers(include_self=True):
        for pname, p in layer.named_parameters(include_sublayers=False):
            full = f"{lname}.{pname}" if lname else pname
            if bn_bias and (isinstance(layer, (nn.layer.norm._BatchNormBase, nn.LayerNorm))
                            or pname == "bias" or len(p.shape) <= 1):
                names.add(full)
            if any(s in full for s in substrings):
                names.add(full)
    return names


def _clip(clip_norm, clip_global):
    if clip_global:
        return nn.ClipGradByGlobalNorm(float(clip_global))
    if clip_norm:
        return nn.ClipGradByNorm(float(clip_norm))
    return None


def build_optimizer(cfg, model, epochs, iters_per_epoch):
    """Returns ``(optimizer, lr_scheduler_or_None)``."""
    validate_optimizer(cfg)
    options = dict(cfg)
    name = options.pop("name", "Momentum")
    lr = build_lr(options.pop("lr"), epochs, iters_per_epoch)
    reg = options.pop("regularizer", None)
    coeff = float(reg.get("coeff", 0.0)) if reg else 0.0
    regularizer = None
    if coeff:
        kind = reg.get("name", "L2").replace("Decay", "")
        regularizer = paddle.regularizer.L2Decay(coeff) if kind == "L2" else paddle.regularizer.L1Decay(coeff)
    no_decay = _no_decay_params(model, options.pop("no_weight_decay_bn_bias", False)
                                or options.pop("one_dim_param_no_weight_decay", False),
                                (options.pop("no_weight_decay_name", None) or "").split())
    options.pop("one_dim_param_no_weight_decay", None)
    grad_clip = _clip(options.pop("clip_norm", None), options.pop("clip_global_norm", None))
    params = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    if no_decay and regularizer is not None and name != "AdamW":
        groups = [{"params": [p for n, p in params if n not in no_decay]},
                  {"params": [p for n, p in params if n in no_decay], "weight_decay": 0.0}]
        parameters = [g for g in groups if g["params"]]
    else:
        parameters = [p for _, p in params]
    common = dict(learning_rate=lr, parameters=parameters, weight_decay=regularizer, grad_clip=grad_clip)
    if name == "AdamW":
        common.update(decay_coeff=coeff if reg else None, no_decay_names={p.name for n, p in params if n in no_decay})
    opt = OPTIMIZERS.get(name)(common, **options)
    return opt, lr if isinstance(lr, lr_sched.LRScheduler) else None
