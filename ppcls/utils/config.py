"""Loading configs: YAML files with ``_BASE_`` inheritance, ``-o dotted.key=value`` overrides, and the
release/2.0 (legacy) schema translated on load. Validation against the registries is ``ppcls.schema``.

Values given on the command line are parsed as YAML scalars or lists (``-o Global.epochs=10``,
``-o Global.checkpoints=null``, ``-o Optimizer.lr.decay_epochs=[30,60]``), never evaluated as code.
"""
import copy
import os

import yaml

from .errors import ConfigError, did_you_mean, nearest
from .logger import logger

BASE_KEY = "_BASE_"
# the configs installed with the package (ppcls/configs); the repository's configs/ points there
INSTALLED_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

_warned = set()


def warn_compat(key, why=""):
    """Once per process: a key kept for PaddleClas compatibility that changes nothing here."""
    if key in _warned:
        return
    _warned.add(key)
    logger.warning(f"{key}: accepted for compatibility; it has no effect" + (f" ({why})" if why else ""))


# folders of earlier layouts whose files moved elsewhere than ImageNet/<folder>/ (the CIFAR recipes
# went where PaddleClas keeps its CIFAR configs)
MOVED_CONFIG_DIRS = {"ResidualAttention": ("quick_start/professional",)}


def resolve_config_path(path):
    """``path`` itself, else the installed config it names, from any directory: PaddleClas's
    ``ppcls/configs/ImageNet/DLA/DLA34.yaml``, ``configs/ImageNet/DLA/DLA34.yaml``, and the layouts of
    earlier versions (release/2.0's ``configs/DLA/DLA60.yaml``, ``DLA/DLA60.yaml``,
    ``ppcls/configs/ResidualAttention/AttentionNet56_CIFAR10.yaml``), whose files live on under
    ``ImageNet/<Family>/`` or, for CIFAR, ``quick_start/professional/`` as in PaddleClas."""
    if os.path.isfile(path):
        return path
    if os.path.isabs(path):
        raise ConfigError(f"config file not found: {path}")
    rel = os.path.normpath(path)
    for prefix in ("ppcls" + os.sep + "configs" + os.sep, "configs" + os.sep):
        if rel.startswith(prefix):
            rel = rel[len(prefix):]
            break
    candidates = [os.path.join(INSTALLED_CONFIGS, rel), os.path.join(INSTALLED_CONFIGS, "ImageNet", rel)]
    folder, _, name = rel.partition(os.sep)
    candidates += [os.path.join(INSTALLED_CONFIGS, *new.split("/"), name) for new in MOVED_CONFIG_DIRS.get(folder, ())]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise ConfigError(f"config file not found: {path} (nor among the installed configs in {INSTALLED_CONFIGS})")


# -- loading ------------------------------------------------------------------------------------
def _read_yaml(path):
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML ({problem})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) YAML file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def merge(base, override):
    """Deep-merge ``override`` into a copy of ``base``: mappings merge, everything else replaces. A
    mapping whose ``name`` changes (another optimizer, schedule, dataset) replaces the base one whole,
    so options of the old component do not leak into the new one."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and \
                not ("name" in v and v["name"] != out[k].get("name")):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_yaml_with_bases(path, _seen=None):
    path = os.path.abspath(resolve_config_path(path) if _seen is None else path)
    seen = set(_seen or ())
    if path in seen:
        raise ConfigError(f"{path}: _BASE_ inheritance loop")
    seen.add(path)
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list):
        raise ConfigError(f"{path}: _BASE_ must be a file name or a list of them")
    merged = {}
    for b in bases:
        bpath = b if os.path.isabs(b) else os.path.join(os.path.dirname(path), b)
        if not os.path.isfile(bpath):
            raise ConfigError(f"{path}: _BASE_ file not found: {b}")
        merged = merge(merged, load_yaml_with_bases(bpath, seen))
    return merge(merged, data)


# -- overrides ----------------------------------------------------------------------------------
def parse_value(text):
    """A command-line value as a YAML scalar or flow list/map. Never evaluated as Python."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (dict, list, str, int, float, bool)) or value is None:
        return value
    return text  # dates and other YAML types stay strings


# Flat release/2.0 keys accepted with -o on any config (PaddleClas 2.0 users type them from habit).
LEGACY_OVERRIDE_KEYS = {
    "pretrained_model": "Global.pretrained_model",
    "checkpoints": "Global.checkpoints",
    "epochs": "Global.epochs",
    "model_save_dir": "Global.output_dir",
    "classes_num": "Arch.class_num",
    "save_interval": "Global.save_interval",
    "valid_interval": "Global.eval_interval",
    "validate": "Global.eval_during_train",
    "image_shape": "Global.image_shape",
    "print_interval": "Global.print_batch_step",
}


def apply_override(config, item, legacy=False):
    """Set ``key=value`` in ``config``; ``legacy``: the config is still in the release/2.0 schema."""
    if "=" not in item:
        raise ConfigError(f"-o {item}: expected KEY=VALUE")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"-o {item}: empty key")
    value = parse_value(text)
    if key == "load_static_weights" and not legacy:
        if value in (True, "True", "true"):
            raise ConfigError("-o load_static_weights=True: static-graph weights are not supported; "
                              "convert them to dygraph .pdparams first")
        return config
    if not legacy:
        key = LEGACY_OVERRIDE_KEYS.get(key, key)
        if key.split(".")[0] in LEGACY_MARKERS:
            raise ConfigError(f"-o {key}: a release/2.0 key, but this config is in the modern schema "
                              "(e.g. TRAIN.file_list is DataLoader.Train.dataset.cls_label_path here)")
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts[:-1]):
        path = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, path)]
            if isinstance(node, dict) and len(node) == 1 and parts[i + 1] not in node:
                # an op entry {Name: {...}}: "transform_ops.1.size" reaches into the op's kwargs
                only = next(iter(node))
                if isinstance(node[only], dict) or node[only] is None:
                    if node[only] is None:
                        node[only] = {}
                    node = node[only]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"-o {key}: '{'.'.join(parts[:i])}' is not a section")
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"-o {key}: '{'.'.join(parts[:-1])}' is not a section")
    return config


def _list_index(lst, part, path):
    try:
        idx = int(part)
    except ValueError:
        raise ConfigError(f"-o {path}: '{part}' must be a list index (0..{len(lst) - 1})") from None
    if not -len(lst) <= idx < len(lst):
        raise ConfigError(f"-o {path}: index {idx} out of range (the list has {len(lst)} entries)")
    return idx


# -- legacy (release/2.0) schema ----------------------------------------------------------------
LEGACY_MARKERS = ("ARCHITECTURE", "TRAIN", "VALID", "LEARNING_RATE", "OPTIMIZER")
LEGACY_TOP_KEYS = {
    "mode", "ARCHITECTURE", "pretrained_model", "model_save_dir", "classes_num", "total_images",
    "save_interval", "validate", "valid_interval", "epochs", "topk", "image_shape", "use_mix",
    "ls_epsilon", "LEARNING_RATE", "OPTIMIZER", "TRAIN", "VALID", "checkpoints", "last_epoch",
    "load_static_weights", "use_gpu", "print_interval", "use_ema", "ema_decay", "use_aa",
    "use_distillation", "use_dali", "use_fp16", "shuffle_seed", "fuse_bn",
}
LEGACY_LOADER_KEYS = {"batch_size", "num_workers", "file_list", "data_dir", "shuffle_seed", "transforms", "mix"}
# keys of a release/2.0 file that have no counterpart here: what they did there
LEGACY_NO_EFFECT = {
    "total_images": "the iterations per epoch come from the file list",
    "last_epoch": "a resumed run restores its epoch from the checkpoint",
    "shuffle_seed": "shuffling follows Global.seed",
    "fuse_bn": "Paddle Inference fuses BatchNorm at export",
    "use_dali": "the loader is paddle.io.DataLoader",
}


def is_legacy(cfg):
    return any(k in cfg for k in LEGACY_MARKERS)


def _legacy_ops(ops, where):
    out = []
    for op in ops or []:
        if not isinstance(op, dict) or len(op) != 1:
            raise ConfigError(f"{where}: each transform must be a one-key mapping, got {op!r}")
        name, kwargs = next(iter(op.items()))
        kwargs = dict(kwargs or {})
        if name == "ToCHWImage":
            continue  # the dataset lays images out as CHW itself
        if name == "DecodeImage":
            kwargs.pop("to_np", None)  # ignored by release/2.0
        out.append({name: kwargs})
    return out


def _legacy_lr(lr_cfg):
    fn = lr_cfg.get("function", "Piecewise")
    p = dict(lr_cfg.get("params") or {})
    base_lr = p.pop("lr", 0.1)
    if fn == "Piecewise":
        gamma = p.pop("gamma", 0.1)
        bounds = p.pop("decay_epochs", [30, 60, 90])
        lr = {"name": "Piecewise", "decay_epochs": bounds,
              "values": [base_lr * gamma ** i for i in range(len(bounds) + 1)]}
    elif fn in ("Cosine", "CosineWarmup"):
        lr = {"name": "Cosine", "learning_rate": base_lr}
        if fn == "CosineWarmup":
            lr["warmup_epoch"] = p.pop("warmup_epoch", 5)
    elif fn == "Linear":
        lr = {"name": "Linear", "learning_rate": base_lr, "end_lr": p.pop("end_lr", 0.0)}
    else:
        raise ConfigError(f"LEARNING_RATE.function: '{fn}' has no modern equivalent here "
                          "(supported: Piecewise, Cosine, CosineWarmup, Linear)")
    p.pop("step_each_epoch", None)  # derived from the loader here
    p.pop("epochs", None)
    lr.update(p)
    return lr


def _legacy_loader(old, sec, world_size, use_mix):
    unknown = [k for k in sec if k not in LEGACY_LOADER_KEYS]
    if unknown:
        raise ConfigError(f"{old}.{unknown[0]}: unknown key in a release/2.0 config"
                          + did_you_mean(unknown[0], LEGACY_LOADER_KEYS, listing=True))
    total = int(sec.get("batch_size", 256))
    if total % world_size:
        raise ConfigError(f"{old}.batch_size={total} (global) does not divide over {world_size} workers")
    if sec.get("shuffle_seed") is not None:
        warn_compat(f"{old}.shuffle_seed", LEGACY_NO_EFFECT["shuffle_seed"])
    ds = {"name": "ImageNetDataset", "image_root": sec.get("data_dir", "./dataset/ILSVRC2012/"),
          "cls_label_path": sec.get("file_list"),
          "transform_ops": _legacy_ops(sec.get("transforms"), f"{old}.transforms")}
    if old == "TRAIN" and use_mix and sec.get("mix"):
        ds["batch_transform_ops"] = [dict(op) for op in sec["mix"]]
    return {"dataset": ds,
            "sampler": {"name": "DistributedBatchSampler", "batch_size": total // world_size,
                        "drop_last": old == "TRAIN", "shuffle": old == "TRAIN"},
            "loader": {"num_workers": sec.get("num_workers", 4), "use_shared_memory": True}}


def translate_legacy(cfg, world_size=1):
    """release/2.0 flat schema -> the modern schema (see docs in README: 'Legacy configs')."""
    unknown = [k for k in cfg if k not in LEGACY_TOP_KEYS]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key in a release/2.0 config" + did_you_mean(unknown[0], LEGACY_TOP_KEYS))
    arch = cfg.get("ARCHITECTURE") or {}
    if "name" not in arch:
        raise ConfigError("ARCHITECTURE.name is required")
    if cfg.get("load_static_weights"):
        raise ConfigError("load_static_weights=True: static-graph weights are not supported; "
                          "convert them to dygraph .pdparams first")
    if cfg.get("use_distillation"):
        raise ConfigError("use_distillation=True: distillation training is not part of this toolkit")
    if cfg.get("mode", "train") not in ("train", "valid", "eval"):
        raise ConfigError(f"mode: 'train' or 'valid', got {cfg['mode']!r}")
    for key, why in LEGACY_NO_EFFECT.items():
        if key in cfg and key != "shuffle_seed" and cfg[key] not in (None, False):
            warn_compat(key, why)
    g = {
        "pretrained_model": cfg.get("pretrained_model"),
        "checkpoints": cfg.get("checkpoints"),
        "output_dir": cfg.get("model_save_dir", "./output/"),
        "epochs": cfg.get("epochs", 120),
        "save_interval": cfg.get("save_interval", 1),
        "eval_during_train": cfg.get("validate", True),
        "eval_interval": cfg.get("valid_interval", 1),
        "image_shape": cfg.get("image_shape", [3, 224, 224]),
        "print_batch_step": cfg.get("print_interval", 10),
    }
    if "use_gpu" in cfg:
        g["device"] = "gpu" if cfg["use_gpu"] else "cpu"
    new = {"Global": g,
           "Arch": dict(name=arch["name"], class_num=cfg.get("classes_num", 1000), **(arch.get("params") or {}))}
    if cfg.get("use_fp16"):
        new["AMP"] = {"use_amp": True, "level": "O1"}
    eps = cfg.get("ls_epsilon", -1)
    ce = {"weight": 1.0}
    if eps is not None and 0 < float(eps) < 1:
        ce["epsilon"] = float(eps)
    new["Loss"] = {"Train": [{"CELoss": ce}], "Eval": [{"CELoss": {"weight": 1.0}}]}
    opt_cfg = cfg.get("OPTIMIZER") or {}
    opt = {"name": opt_cfg.get("function", "Momentum"), "lr": _legacy_lr(cfg.get("LEARNING_RATE") or {})}
    opt.update(opt_cfg.get("params") or {})
    reg = opt_cfg.get("regularizer")
    if reg:
        opt["regularizer"] = {"name": reg.get("function", "L2").replace("Decay", ""), "coeff": reg.get("factor", 0.0)}
    new["Optimizer"] = opt
    topk = cfg.get("topk", 5)
    new["Metric"] = {"Train": [{"TopkAcc": {"topk": [1, topk]}}], "Eval": [{"TopkAcc": {"topk": [1, topk]}}]}
    loaders = {modern: _legacy_loader(old, cfg[old], world_size, cfg.get("use_mix"))
               for old, modern in (("TRAIN", "Train"), ("VALID", "Eval")) if cfg.get(old)}
    if loaders:
        new["DataLoader"] = loaders
    if cfg.get("use_ema"):
        new["EMA"] = {"decay": cfg.get("ema_decay", 0.9999)}
    if cfg.get("use_aa") and "Train" in loaders:
        ops = loaders["Train"]["dataset"]["transform_ops"]
        if not any("AutoAugment" in op for op in ops):  # a file listing it already must not get it twice
            pos = next((i + 1 for i, op in enumerate(ops) if "RandFlipImage" in op), len(ops))
            ops.insert(pos, {"AutoAugment": {}})
    return new


# -- schema helpers (the schema itself is ppcls.schema) ----------------------------------------
def _type_name(t):
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {type(None): "null", int: "int", float: "float", str: "string", bool: "bool", list: "list",
            dict: "mapping"}.get(t, t.__name__)


def check_type(path, value, expected):
    exp = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in exp:
        ok = False
    else:
        ok = isinstance(value, exp) or (float in exp and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{path}: expected {_type_name(expected)}, got {type(value).__name__} {value!r}")


def check_keys(path, section, schema):
    """Every key of ``section`` is in ``schema`` (key: type) and of its type (None passes)."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(section).__name__} {section!r}")
    for k, v in section.items():
        if k not in schema:
            raise ConfigError(f"{path}.{k}: unknown key" + did_you_mean(k, schema.keys(), listing=True))
        if v is not None:
            check_type(f"{path}.{k}", v, schema[k])


# -- entry point --------------------------------------------------------------------------------
def load_config(path, overrides=None, world_size=None):
    """Load ``path`` (following ``_BASE_``), apply ``-o`` overrides, translate a legacy schema. On a
    release/2.0 file, overrides of its own keys (``TRAIN.file_list=...``, ``epochs=...``,
    ``LEARNING_RATE.params.lr=...``) apply to it before the translation, the modern ones after."""
    if world_size is None:
        world_size = int(os.environ.get("PADDLE_TRAINERS_NUM", 1))
    cfg = load_yaml_with_bases(path)
    overrides = list(overrides or [])
    if is_legacy(cfg):
        own = [o for o in overrides if o.split("=", 1)[0].strip().split(".")[0] in LEGACY_TOP_KEYS]
        for item in own:
            apply_override(cfg, item, legacy=True)
        cfg = translate_legacy(cfg, world_size)
        overrides = [o for o in overrides if o not in own]
    for item in overrides:
        apply_override(cfg, item)
    if not isinstance(cfg.get("Global"), dict):
        cfg["Global"] = {}
    return cfg


def dump_config(cfg, indent=0, lines=None):
    """PaddleClas-style ``key : value`` lines, a 60-dash line after each top-level section."""
    lines = [] if lines is None else lines
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines.append(f"{' ' * indent}{k} : ")
            dump_config(v, indent + 4, lines)
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            lines.append(f"{' ' * indent}{k} : ")
            for item in v:
                if isinstance(item, dict):
                    dump_config(item, indent + 4, lines)
                else:
                    lines.append(f"{' ' * (indent + 4)}{item}")
        else:
            lines.append(f"{' ' * indent}{k} : {v}")
        if indent == 0:
            lines.append("-" * 60)
    return lines
