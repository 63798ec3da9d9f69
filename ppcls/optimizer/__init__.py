"""Optimizers and learning-rate schedules from the ``Optimizer`` section.

Schedules step per iteration: epoch boundaries are multiplied by the iterations per epoch, and a
linear warmup (``warmup_epoch``, from ``warmup_start_lr``) wraps any schedule, which then spans the
epochs after the warmup (PaddleClas semantics).
"""
import paddle
import paddle.nn as nn
from paddle.optimizer import lr as lr_sched

from ..utils.errors import ConfigError, nearest
from ..utils.logger import logger

LR_KEYS = {
    "Piecewise": {"decay_epochs", "values", "gamma"},
    "MultiStepDecay": {"milestones", "gamma"},
    "Cosine": {"eta_min"},
    "Step": {"step_size", "gamma"},
    "Linear": {"end_lr", "power"},
    "ConstLR": set(),
}
LR_COMMON = {"name", "learning_rate", "warmup_epoch", "warmup_start_lr", "by_epoch", "last_epoch"}
OPTIMIZERS = {
    "Momentum": {"momentum", "use_nesterov", "multi_precision"},
    "SGD": {"multi_precision"},
    "AdamW": {"beta1", "beta2", "epsilon", "multi_precision", "weight_decay"},
    "Adam": {"beta1", "beta2", "epsilon", "multi_precision"},
    "RMSProp": {"rho", "epsilon", "momentum", "centered", "multi_precision"},
}
OPT_COMMON = {"name", "lr", "regularizer", "no_weight_decay_bn_bias", "one_dim_param_no_weight_decay",
              "no_weight_decay_name", "clip_norm", "clip_global_norm"}


def check_optimizer_config(cfg):
    if not isinstance(cfg, dict):
        raise ConfigError(f"Optimizer: expected a mapping, got {cfg!r}")
    name = cfg.get("name", "Momentum")
    if name not in OPTIMIZERS:
        hint = nearest(name, OPTIMIZERS)
        raise ConfigError(f"Optimizer.name: unknown optimizer '{name}'" + (f" (did you mean '{hint}'?)" if hint else ""))
    valid = OPT_COMMON | OPTIMIZERS[name]
    for k in cfg:
        if k not in valid:
            hint = nearest(k, valid)
            raise ConfigError(f"Optimizer.{k}: unknown option for {name}" + (f" (did you mean '{hint}'?)" if hint else ""))
    lr = cfg.get("lr")
    if lr is None:
        raise ConfigError("Optimizer.lr: required")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        return
    if not isinstance(lr, dict):
        raise ConfigError(f"Optimizer.lr: expected a mapping or a number, got {lr!r}")
    lname = lr.get("name", "ConstLR")
    if lname not in LR_KEYS:
        hint = nearest(lname, LR_KEYS)
        raise ConfigError(f"Optimizer.lr.name: unknown schedule '{lname}'" + (f" (did you mean '{hint}'?)" if hint else ""))
    lvalid = LR_COMMON | LR_KEYS[lname]
    for k, v in lr.items():
        if k not in lvalid:
            hint = nearest(k, lvalid)
            raise ConfigError(f"Optimizer.lr.{k}: unknown option for {lname}" + (f" (did you mean '{hint}'?)" if hint else ""))
        if k in ("learning_rate", "warmup_start_lr", "eta_min", "gamma", "end_lr") and \
                (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"Optimizer.lr.{k}: expected a number, got {v!r}")
        if k in ("decay_epochs", "values", "milestones") and not isinstance(v, list):
            raise ConfigError(f"Optimizer.lr.{k}: expected a list, got {v!r}")
    reg = cfg.get("regularizer")
    if reg is not None:
        if not isinstance(reg, dict) or reg.get("name", "L2") not in ("L2", "L1", "L2Decay", "L1Decay"):
            raise ConfigError(f"Optimizer.regularizer: expected {{name: L2|L1, coeff: float}}, got {reg!r}")
        for k in reg:
            if k not in ("name", "coeff"):
                raise ConfigError(f"Optimizer.regularizer.{k}: unknown option (name, coeff)")


def build_lr(cfg, epochs, iters_per_epoch):
    """Returns a ``paddle.optimizer.lr.LRScheduler`` stepped once per iteration (or a float)."""
    if isinstance(cfg, (int, float)):
        return float(cfg)
    cfg = dict(cfg)
    name = cfg.pop("name", "ConstLR")
    by_epoch = cfg.pop("by_epoch", False)
    cfg.pop("last_epoch", None)
    unit = 1 if by_epoch else iters_per_epoch
    warmup_epoch = cfg.pop("warmup_epoch", 0) or 0
    warmup_start = float(cfg.pop("warmup_start_lr", 0.0))
    if warmup_epoch >= epochs:
        logger.warning(f"Optimizer.lr.warmup_epoch={warmup_epoch} >= epochs={epochs}: clamped to {epochs}")
        warmup_epoch = epochs
    warmup_steps = int(round(warmup_epoch * unit))
    base = cfg.pop("learning_rate", None)
    if name == "Piecewise":
        bounds = cfg.pop("decay_epochs", None)
        values = cfg.pop("values", None)
        gamma = cfg.pop("gamma", 0.1)
        if bounds is None:
            raise ConfigError("Optimizer.lr.decay_epochs: required for Piecewise")
        if values is None:
            if base is None:
                raise ConfigError("Optimizer.lr: Piecewise needs values or learning_rate")
            values = [base * gamma ** i for i in range(len(bounds) + 1)]
        if len(values) != len(bounds) + 1:
            raise ConfigError(f"Optimizer.lr.values: needs {len(bounds) + 1} entries for {len(bounds)} decay_epochs")
        base = values[0] if base is None else base
        sched = lr_sched.PiecewiseDecay([int(round(b * unit)) for b in bounds], [float(v) for v in values])
    elif name == "MultiStepDecay":
        ms = cfg.pop("milestones", None)
        if not ms:
            raise ConfigError("Optimizer.lr.milestones: required for MultiStepDecay")
        sched = lr_sched.MultiStepDecay(float(_need(base)), [int(round(m * unit)) for m in ms], cfg.pop("gamma", 0.1))
    elif name == "Cosine":
        t_max = max(1, int(round((epochs - warmup_epoch) * unit)))
        sched = lr_sched.CosineAnnealingDecay(float(_need(base)), t_max, eta_min=float(cfg.pop("eta_min", 0.0)))
    elif name == "Step":
        sched = lr_sched.StepDecay(float(_need(base)), int(round(cfg.pop("step_size") * unit)), cfg.pop("gamma", 0.1))
    elif name == "Linear":
        t = max(1, int(round((epochs - warmup_epoch) * unit)))
        sched = lr_sched.PolynomialDecay(float(_need(base)), t, end_lr=float(cfg.pop("end_lr", 0.0)),
                                         power=float(cfg.pop("power", 1.0)))
    else:  # ConstLR
        sched = lr_sched.LambdaDecay(float(_need(base)), lambda _: 1.0)
    if warmup_steps > 0:
        sched = lr_sched.LinearWarmup(sched, warmup_steps, warmup_start, float(base))
    sched.by_epoch = by_epoch
    return sched


def _need(base):
    if base is None:
        raise ConfigError("Optimizer.lr.learning_rate: required")
    return base


def _no_decay_params(model, cfg):
    names = set()
    bn_bias = cfg.get("no_weight_decay_bn_bias") or cfg.get("one_dim_param_no_weight_decay")
    substrings = (cfg.get("no_weight_decay_name") or "").split()
    for lname, layer in model.named_sublayers(include_self=True):
        for pname, p in layer.named_parameters(include_sublayers=False):
            full = f"{lname}.{pname}" if lname else pname
            if bn_bias and (isinstance(layer, nn.layer.norm._BatchNormBase) or isinstance(layer, nn.LayerNorm)
                            or pname == "bias" or len(p.shape) <= 1):
                names.add(full)
            if any(s in full for s in substrings):
                names.add(full)
    return names


def build_optimizer(cfg, model, epochs, iters_per_epoch):
    """Returns ``(optimizer, lr_scheduler_or_None)``."""
    cfg = dict(cfg)
    name = cfg.pop("name", "Momentum")
    lr = build_lr(cfg.pop("lr"), epochs, iters_per_epoch)
    reg = cfg.pop("regularizer", None)
    coeff = float(reg.get("coeff", 0.0)) if reg else 0.0
    reg_name = (reg or {}).get("name", "L2").replace("Decay", "")
    wd_value = cfg.pop("weight_decay", None)
    clip = cfg.pop("clip_norm", None)
    clip_global = cfg.pop("clip_global_norm", None)
    no_decay = _no_decay_params(model, cfg)
    for k in ("no_weight_decay_bn_bias", "one_dim_param_no_weight_decay", "no_weight_decay_name"):
        cfg.pop(k, None)
    params = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    if name == "AdamW":
        decay = coeff if reg else (0.01 if wd_value is None else float(wd_value))
        opt = paddle.optimizer.AdamW(
            learning_rate=lr, parameters=[p for _, p in params], weight_decay=decay,
            apply_decay_param_fun=(lambda pname: pname not in _param_name_set(params, no_decay)) if no_decay else None,
            beta1=cfg.pop("beta1", 0.9), beta2=cfg.pop("beta2", 0.999), epsilon=cfg.pop("epsilon", 1e-8),
            grad_clip=_clip(clip, clip_global), multi_precision=cfg.pop("multi_precision", False))
        return opt, lr if isinstance(lr, lr_sched.LRScheduler) else None
    regularizer = None
    if coeff:
        regularizer = paddle.regularizer.L2Decay(coeff) if reg_name == "L2" else paddle.regularizer.L1Decay(coeff)
    if no_decay and regularizer is not None:
        groups = [{"params": [p for n, p in params if n not in no_decay]},
                  {"params": [p for n, p in params if n in no_decay], "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
    else:
        groups = [p for _, p in params]
    common = dict(learning_rate=lr, parameters=groups, weight_decay=regularizer, grad_clip=_clip(clip, clip_global))
    if name == "Momentum":
        opt = paddle.optimizer.Momentum(momentum=cfg.pop("momentum", 0.9), use_nesterov=cfg.pop("use_nesterov", False),
                                        multi_precision=cfg.pop("multi_precision", False), **common)
    elif name == "SGD":
        opt = paddle.optimizer.SGD(multi_precision=cfg.pop("multi_precision", False), **common)
    elif name == "Adam":
        opt = paddle.optimizer.Adam(beta1=cfg.pop("beta1", 0.9), beta2=cfg.pop("beta2", 0.999),
                                    epsilon=cfg.pop("epsilon", 1e-8), **common)
    elif name == "RMSProp":
        opt = paddle.optimizer.RMSProp(rho=cfg.pop("rho", 0.95), epsilon=cfg.pop("epsilon", 1e-6),
                                       momentum=cfg.pop("momentum", 0.0), centered=cfg.pop("centered", False), **common)
    else:
        raise ConfigError(f"Optimizer.name: unknown optimizer '{name}'")
    return opt, lr if isinstance(lr, lr_sched.LRScheduler) else None


def _param_name_set(params, no_decay):
    return {p.name for n, p in params if n in no_decay}


def _clip(clip_norm, clip_global):
    if clip_global:
        return nn.ClipGradByGlobalNorm(float(clip_global))
    if clip_norm:
        return nn.ClipGradByNorm(float(clip_norm))
    return None
