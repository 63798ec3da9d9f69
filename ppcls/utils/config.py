"""Configuration: YAML files with ``_BASE_`` inheritance, ``-o dotted.key=value`` overrides, the
release/2.0 (legacy) schema translated on load, and validation with one-line errors.

Values given on the command line are parsed as YAML scalars or lists (``-o Global.epochs=10``,
``-o Global.checkpoints=null``, ``-o Optimizer.lr.decay_epochs=[30,60]``), never evaluated as code.
"""
import copy
import os

import yaml

from .errors import ConfigError, nearest

BASE_KEY = "_BASE_"


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
    path = os.path.abspath(path)
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


def apply_override(config, item):
    if "=" not in item:
        raise ConfigError(f"-o {item}: expected KEY=VALUE")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"-o {item}: empty key")
    value = parse_value(text)
    if key == "load_static_weights":
        if value in (True, "True", "true"):
            raise ConfigError("-o load_static_weights=True: static-graph weights are not supported; "
                              "convert them to dygraph .pdparams first")
        return config
    key = LEGACY_OVERRIDE_KEYS.get(key, key)
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


def translate_legacy(cfg, world_size=1):
    """release/2.0 flat schema -> the modern schema (see docs in README: 'Legacy configs')."""
    unknown = [k for k in cfg if k not in LEGACY_TOP_KEYS]
    if unknown:
        hint = nearest(unknown[0], LEGACY_TOP_KEYS)
        raise ConfigError(f"{unknown[0]}: unknown key in a release/2.0 config"
                          + (f" (did you mean '{hint}'?)" if hint else ""))
    arch = cfg.get("ARCHITECTURE") or {}
    if "name" not in arch:
        raise ConfigError("ARCHITECTURE.name is required")
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
    eps = cfg.get("ls_epsilon", -1)
    ce = {"weight": 1.0}
    if eps is not None and 0 < float(eps) < 1:
        ce["epsilon"] = float(eps)
    new["Loss"] = {"Train": [{"CELoss": ce}], "Eval": [{"CELoss": {"weight": 1.0}}]}
    lr_cfg = cfg.get("LEARNING_RATE") or {}
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
    p.pop("step_each_epoch", None)
    p.pop("epochs", None)
    lr.update(p)
    opt_cfg = cfg.get("OPTIMIZER") or {}
    opt = {"name": opt_cfg.get("function", "Momentum"), "lr": lr}
    opt.update(opt_cfg.get("params") or {})
    reg = opt_cfg.get("regularizer")
    if reg:
        opt["regularizer"] = {"name": reg.get("function", "L2").replace("Decay", ""), "coeff": reg.get("factor", 0.0)}
    new["Optimizer"] = opt
    topk = cfg.get("topk", 5)
    new["Metric"] = {"Train": [{"TopkAcc": {"topk": [1, topk]}}], "Eval": [{"TopkAcc": {"topk": [1, topk]}}]}
    loaders = {}
    for old, modern in (("TRAIN", "Train"), ("VALID", "Eval")):
        sec = cfg.get(old)
        if not sec:
            continue
        total = int(sec.get("batch_size", 256))
        if total % world_size:
            raise ConfigError(f"{old}.batch_size={total} (global) does not divide over {world_size} workers")
        ds = {"name": "ImageNetDataset", "image_root": sec.get("data_dir", "./dataset/ILSVRC2012/"),
              "cls_label_path": sec.get("file_list"),
              "transform_ops": _legacy_ops(sec.get("transforms"), f"{old}.transforms")}
        if old == "TRAIN" and cfg.get("use_mix") and sec.get("mix"):
            ds["batch_transform_ops"] = [dict(op) for op in sec["mix"]]
        loaders[modern] = {
            "dataset": ds,
            "sampler": {"name": "DistributedBatchSampler", "batch_size": total // world_size,
                        "drop_last": old == "TRAIN", "shuffle": old == "TRAIN"},
            "loader": {"num_workers": sec.get("num_workers", 4), "use_shared_memory": True},
        }
    if loaders:
        new["DataLoader"] = loaders
    if cfg.get("use_ema"):
        new["EMA"] = {"decay": cfg.get("ema_decay", 0.9999)}
    if cfg.get("use_aa") and "Train" in loaders:
        ops = loaders["Train"]["dataset"]["transform_ops"]
        pos = next((i + 1 for i, op in enumerate(ops) if "RandFlipImage" in op), len(ops))
        ops.insert(pos, {"AutoAugment": {}})
    return new


# -- schema -------------------------------------------------------------------------------------
NUM = (int, float)
OPT_STR = (str, type(None))
SCHEMA = {
    "Global": {
        "checkpoints": OPT_STR, "pretrained_model": OPT_STR, "output_dir": str, "device": str,
        "save_interval": int, "save_interval_iters": int, "save_interval_seconds": NUM,
        "eval_during_train": bool, "eval_interval": int, "start_eval_epoch": int, "epochs": int,
        "print_batch_step": int, "use_visualdl": bool, "image_shape": list, "save_inference_dir": str,
        "to_static": bool, "seed": (int, type(None)), "cpu_threads": int, "update_freq": int,
        "skip_bad_images": bool, "max_bad_images": int, "log_ranks": (str, int, list),
        "iter_per_epoch": (int, type(None)), "class_num": int, "infer_output_index": int,
        "nan_policy": str, "eval_mode": str,
    },
    "AMP": {"use_amp": bool, "level": str, "scale_loss": NUM, "use_dynamic_loss_scaling": bool,
            "use_promote": bool, "use_fp16_test": bool, "dtype": str},
    "EMA": {"decay": NUM},
}
TOP_SECTIONS = ("Global", "AMP", "EMA", "Arch", "Loss", "Optimizer", "DataLoader", "Metric", "Infer")
SAMPLER_KEYS = {"name": str, "batch_size": int, "drop_last": bool, "shuffle": bool}
LOADER_KEYS = {"num_workers": int, "use_shared_memory": bool, "persistent_workers": bool, "prefetch_factor": int}
INFER_KEYS = {"infer_imgs": (str, list), "batch_size": int, "transforms": list, "PostProcess": dict,
              "save_dir": OPT_STR}
POSTPROCESS_KEYS = {"name": str, "topk": int, "class_id_map_file": OPT_STR}


def _type_name(t):
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {type(None): "null", int: "int", float: "float", str: "string", bool: "bool", list: "list",
            dict: "mapping"}.get(t, t.__name__)


def _check_type(path, value, expected):
    exp = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in exp:
        ok = False
    else:
        ok = isinstance(value, exp) or (float in exp and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{path}: expected {_type_name(expected)}, got {type(value).__name__} {value!r}")


def _check_keys(path, section, schema):
    if section is None:
        return
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(section).__name__} {section!r}")
    for k, v in section.items():
        if k not in schema:
            hint = nearest(k, schema.keys())
            raise ConfigError(f"{path}.{k}: unknown key" + (f" (did you mean '{hint}'?)" if hint else
                                                            f"; valid keys: {', '.join(sorted(schema))}"))
        if v is not None or type(None) in (schema[k] if isinstance(schema[k], tuple) else (schema[k],)):
            _check_type(f"{path}.{k}", v, schema[k])


def check_component_list(path, items, registry, extra=()):
    """A list of one-key mappings ``[{Name: {kwargs}}]``: each name registered, each kwarg accepted."""
    import inspect
    if items is None:
        return
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a list of {{Name: {{options}}}} entries, got {type(items).__name__}")
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"{where}: expected a one-key mapping {{Name: {{options}}}}, got {item!r}")
        name, kwargs = next(iter(item.items()))
        cls = registry.get(name, where=where)
        if kwargs is None:
            continue
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{where}.{name}: options must be a mapping, got {kwargs!r}")
        check_kwargs(f"{where}.{name}", cls, kwargs, extra=extra)


def check_kwargs(where, fn, kwargs, extra=()):
    import inspect
    target = fn.__init__ if inspect.isclass(fn) else fn
    sig = inspect.signature(target)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    valid = [p for p in sig.parameters if p not in ("self", "args")] + list(extra)
    for k in kwargs:
        if k not in valid:
            hint = nearest(k, valid)
            raise ConfigError(f"{where}.{k}: unknown option" + (f" (did you mean '{hint}'?)" if hint else
                                                                f"; valid: {', '.join(valid)}"))


def validate(cfg):
    """Structure and type checks, with one-line errors naming the key and the nearest valid one."""
    for k in cfg:
        if k not in TOP_SECTIONS:
            hint = nearest(k, TOP_SECTIONS)
            raise ConfigError(f"{k}: unknown section" + (f" (did you mean '{hint}'?)" if hint else
                                                         f"; valid sections: {', '.join(TOP_SECTIONS)}"))
    for sec, schema in SCHEMA.items():
        _check_keys(sec, cfg.get(sec), schema)
    if "Arch" not in cfg or not isinstance(cfg["Arch"], dict) or "name" not in cfg["Arch"]:
        raise ConfigError("Arch.name: required (the model to build)")
    from ..arch.registry import get_model_factory
    get_model_factory(cfg["Arch"]["name"])
    from ..loss import LOSSES
    from ..metric import METRICS
    from ..data.preprocess import OPS, BATCH_OPS
    from ..data.dataset import DATASETS
    loss = cfg.get("Loss") or {}
    _check_keys("Loss", loss, {"Train": list, "Eval": list})
    for part in ("Train", "Eval"):
        check_component_list(f"Loss.{part}", loss.get(part), LOSSES, extra=("weight",))
    metric = cfg.get("Metric") or {}
    _check_keys("Metric", metric, {"Train": list, "Eval": list})
    for part in ("Train", "Eval"):
        check_component_list(f"Metric.{part}", metric.get(part), METRICS)
    if cfg.get("Optimizer") is not None:
        from ..optimizer import check_optimizer_config
        check_optimizer_config(cfg["Optimizer"])
    dl = cfg.get("DataLoader") or {}
    if not isinstance(dl, dict):
        raise ConfigError("DataLoader: expected a mapping with Train / Eval")
    for part, sub in dl.items():
        if part not in ("Train", "Eval", "Test"):
            hint = nearest(part, ("Train", "Eval"))
            raise ConfigError(f"DataLoader.{part}: unknown key" + (f" (did you mean '{hint}'?)" if hint else ""))
        where = f"DataLoader.{part}"
        _check_keys(where, sub, {"dataset": dict, "sampler": dict, "loader": dict})
        ds = dict((sub or {}).get("dataset") or {})
        if "name" not in ds:
            raise ConfigError(f"{where}.dataset.name: required")
        cls = DATASETS.get(ds.pop("name"), where=f"{where}.dataset.name")
        ops = ds.pop("transform_ops", None)
        bops = ds.pop("batch_transform_ops", None)
        check_kwargs(f"{where}.dataset", cls, ds, extra=("transform_ops",))
        check_component_list(f"{where}.dataset.transform_ops", ops, OPS)
        check_component_list(f"{where}.dataset.batch_transform_ops", bops, BATCH_OPS, extra=("class_num",))
        _check_keys(f"{where}.sampler", (sub or {}).get("sampler"), SAMPLER_KEYS)
        _check_keys(f"{where}.loader", (sub or {}).get("loader"), LOADER_KEYS)
    infer = cfg.get("Infer")
    if infer is not None:
        _check_keys("Infer", infer, INFER_KEYS)
        check_component_list("Infer.transforms", infer.get("transforms"), OPS)
        _check_keys("Infer.PostProcess", infer.get("PostProcess"), POSTPROCESS_KEYS)
    g = cfg.get("Global") or {}
    for key in ("epochs", "print_batch_step", "eval_interval", "save_interval"):
        if key in g and g[key] is not None and g[key] < 1:
            raise ConfigError(f"Global.{key}: must be >= 1, got {g[key]}")
    return cfg


# -- entry point --------------------------------------------------------------------------------
def get_config(path, overrides=None, world_size=None, show=False):
    """Load ``path`` (following ``_BASE_``), translate a legacy schema, apply ``-o`` overrides, validate."""
    if world_size is None:
        world_size = int(os.environ.get("PADDLE_TRAINERS_NUM", 1))
    cfg = load_yaml_with_bases(path)
    if is_legacy(cfg):
        cfg = translate_legacy(cfg, world_size)
    for item in overrides or []:
        apply_override(cfg, item)
    g = cfg.setdefault("Global", {}) or {}
    cfg["Global"] = g
    if "class_num" in g and isinstance(cfg.get("Arch"), dict) and "class_num" not in cfg["Arch"]:
        cfg["Arch"]["class_num"] = g["class_num"]
    validate(cfg)
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
