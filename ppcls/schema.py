"""The config schema: which sections exist, which keys each takes, their defaults, and who checks them.

``get_config`` loads a YAML file (``_BASE_``, ``-o`` overrides, release/2.0 translation: see
``ppcls.utils.config``), validates every section, and fills the defaults once, so the code reading
a config never repeats a default. Sections that name components are validated by the registry that
builds them (Arch by the model registry, Loss / Metric / DataLoader / Optimizer by theirs); the keys of
Global, AMP, EMA and Infer are listed here with the code that reads them. Keys accepted only because
PaddleClas configs carry them, and that change nothing here, are warned about once.
"""
import copy
import os

from .arch import validate_arch
from .arch.distillation import ARCH_NAME as DISTILLATION
from .data import validate_loader_section
from .data.preprocess import OPS
from .loss import validate_losses
from .metric import validate_metrics
from .optimizer import validate_optimizer
from .utils.config import check_keys, load_config, warn_compat
from .utils.errors import ConfigError, did_you_mean
from .utils.logger import logger, parse_log_ranks
from .utils.registry import split_entry

NUM = (int, float)
OPT_STR = (str, type(None))
OPT_INT = (int, type(None))

# key: (type, default). Readers: the engine (ppcls/engine), the exporter and the dygraph predictor
# (ppcls/inference/export.py, infer.py).
GLOBAL = {
    "checkpoints": (OPT_STR, None),             # engine: resume from this checkpoint prefix
    "pretrained_model": (OPT_STR, None),        # engine, export, infer: weights (path, URL, tag, True)
    "output_dir": (str, "./output/"),           # engine: <output_dir>/<Arch.name>/..., <output_dir>/vdl
    "device": (str, "auto"),                    # engine, infer: auto | cpu | gpu | ...
    "cpu_threads": (int, 0),                    # engine, infer: 0 = the available cores
    "epochs": (int, 120),
    "print_batch_step": (int, 10),
    "save_interval": (int, 1),
    "save_interval_iters": (int, 0),            # also save 'latest' every N iterations (0: off)
    "save_interval_seconds": (NUM, 0),          # ... or every S seconds (0: off)
    "eval_during_train": (bool, True),
    "eval_interval": (int, 1),
    "start_eval_epoch": (int, 0),
    "use_visualdl": (bool, False),
    "image_shape": (list, [3, 224, 224]),       # export's input shape; benchmark and probes
    "save_inference_dir": (str, "./inference"),  # export
    "backend_probe": (bool, True),              # export: time Paddle Inference vs onnxruntime -> backend.json
    "infer_output_index": (int, 0),             # export: which output of a dense model is served
    "to_static": (bool, False),                 # engine: train a paddle.jit.to_static program
    "seed": (OPT_INT, None),
    "update_freq": (int, 1),                    # gradient accumulation steps
    "skip_bad_images": (bool, True),
    "max_bad_images": (int, 1000),
    "class_num": (int, None),                   # copied to Arch.class_num when that is not set
    "eval_backend": (str, "dygraph"),           # engine: dygraph | inference | onnxruntime
    "report_dir": (OPT_STR, None),              # eval: confusion matrix, per-class table, mistakes
    "print_mem_info": (bool, False),            # engine: peak memory at the end of each train log line
    "log_ranks": ((str, int, list), None),      # logger: ranks printing INFO to the console (None: all)
    "iter_per_epoch": (OPT_INT, None),          # engine: iterations of an epoch (None: one pass over the list)
}
# PaddleClas keys that change nothing here (read by its engine, tools/*.py and ppcls/static)
GLOBAL_COMPAT = {
    "eval_mode": "only classification evaluation exists here",
    "train_mode": "only supervised training exists here (no FixMatch, MetaBIN, progressive modes)",
    "use_dali": "the loader is paddle.io.DataLoader (DALI is a GPU-only NVIDIA loader)",
    "use_multilabel": "the classifiers here are single-label",
    "distributed": "the worker count comes from paddle.distributed.launch",
    "is_distributed": "the worker count comes from paddle.distributed.launch",
    "export_for_fd": "the export always writes inference.yml",
    "uniform_output_enabled": "PaddleX's output layout is not produced here",
    "pdx_model_name": "PaddleX's output layout is not produced here",
    "hpi_config_path": "PaddleX's high-performance inference config is not produced here",
    "warmup_iter": "MetaBIN training is not part of this toolkit",
    "sim_block_size": "retrieval evaluation is not part of this toolkit",
    "re_ranking": "retrieval evaluation is not part of this toolkit",
    "retrieval_feature_from": "retrieval evaluation is not part of this toolkit",
    "feature_normalize": "retrieval evaluation is not part of this toolkit",
    "feature_binarize": "retrieval evaluation is not part of this toolkit",
}
# values of those keys that ask for what happens here anyway: accepted without a warning
GLOBAL_COMPAT_SAME = {"eval_mode": "classification", "train_mode": None, "use_dali": False,
                      "use_multilabel": False, "distributed": None, "is_distributed": None,
                      "export_for_fd": True, "uniform_output_enabled": False, "re_ranking": False}
AMP = {
    "use_amp": (bool, False), "level": (str, "O1"), "scale_loss": (NUM, 65536.0),
    "use_dynamic_loss_scaling": (bool, True), "use_promote": (bool, False), "use_fp16_test": (bool, False),
    "dtype": (str, "float16"),
}
EMA = {"decay": (NUM, 0.9999)}
INFER = {"infer_imgs": ((str, list), None), "batch_size": (int, 1), "transforms": (list, None),
         "PostProcess": (dict, None), "save_dir": (OPT_STR, None)}
POSTPROCESS = {"name": str, "topk": int, "class_id_map_file": OPT_STR,
               # DistillationPostProcess: the model (and its output key) whose result is post-processed by func
               "model_name": str, "key": (str, int), "func": str}
TOP_SECTIONS = ("Global", "AMP", "EMA", "Arch", "Loss", "Optimizer", "DataLoader", "Metric", "Infer")


def _types(table):
    return {k: t for k, (t, _) in table.items()}


def _same_as_here(key, value):
    if key not in GLOBAL_COMPAT_SAME:
        return False
    if key in ("distributed", "is_distributed"):
        # PaddleClas's engine writes Global.distributed back into the config it saves
        return value is None or value == (int(os.environ.get("PADDLE_TRAINERS_NUM", 1)) > 1)
    return value is None or value == GLOBAL_COMPAT_SAME[key]


def validate(cfg):
    """Structure, names and types of every section; one-line errors naming the key and the nearest
    valid one."""
    for k in cfg:
        if k not in TOP_SECTIONS:
            raise ConfigError(f"{k}: unknown section" + did_you_mean(k, TOP_SECTIONS, listing=True))
    g = cfg.get("Global") or {}
    for key, why in GLOBAL_COMPAT.items():
        if key in g and not _same_as_here(key, g[key]):
            warn_compat(f"Global.{key}", why)
    check_keys("Global", {k: v for k, v in g.items() if k not in GLOBAL_COMPAT}, _types(GLOBAL))
    check_keys("AMP", cfg.get("AMP"), _types(AMP))
    check_keys("EMA", cfg.get("EMA"), _types(EMA))
    validate_arch(cfg.get("Arch"))
    validate_losses(cfg.get("Loss"))
    validate_metrics(cfg.get("Metric"))
    if cfg.get("Optimizer") is not None:
        validate_optimizer(cfg["Optimizer"])
    dl = cfg.get("DataLoader") or {}
    if not isinstance(dl, dict):
        raise ConfigError("DataLoader: expected a mapping with Train / Eval")
    for part, section in dl.items():
        if part not in ("Train", "Eval"):
            raise ConfigError(f"DataLoader.{part}: unknown key" + did_you_mean(part, ("Train", "Eval"), listing=True))
        validate_loader_section(section, f"DataLoader.{part}")
    infer = cfg.get("Infer")
    if infer is not None:
        check_keys("Infer", infer, _types(INFER))
        OPS.validate_entries(infer.get("transforms"), "Infer.transforms")
        check_keys("Infer.PostProcess", infer.get("PostProcess"), POSTPROCESS)
    _validate_distillation(cfg)
    for key in ("epochs", "print_batch_step", "eval_interval", "save_interval", "update_freq", "iter_per_epoch"):
        if g.get(key) is not None and g[key] < 1:
            raise ConfigError(f"Global.{key}: must be >= 1, got {g[key]}")
    if g.get("log_ranks") is not None:
        parse_log_ranks(g["log_ranks"], "Global.log_ranks")
    if g.get("eval_backend", "dygraph") not in ("dygraph", "inference", "onnxruntime"):
        raise ConfigError(f"Global.eval_backend: dygraph, inference or onnxruntime, got {g['eval_backend']!r}")
    return cfg


def _model_names_in(options):
    pairs = options.get("model_name_pairs")
    names = list(options.get("model_names") or []) if isinstance(options.get("model_names"), list) else []
    for pair in pairs if isinstance(pairs, list) else []:
        names += list(pair) if isinstance(pair, (list, tuple)) else []
    return names


def _validate_distillation(cfg):
    """A DistillationModel gives one output per model in training and its infer_model_name model's alone in
    evaluation (that model is what is evaluated and exported): the losses, metrics and post-processing
    must fit those outputs and name models that Arch.models has. Checked before anything is built."""
    arch = cfg.get("Arch") or {}
    distill = arch.get("name") == DISTILLATION
    models = [next(iter(m)) for m in arch.get("models") or []] if distill else []
    infer = arch.get("infer_model_name")

    def check_name(name, where):
        if name not in models:
            raise ConfigError(f"{where}: {name!r} is not a model of Arch.models ({', '.join(map(repr, models))})"
                              + did_you_mean(name, models))
    for part in ("Train", "Eval"):
        for i, entry in enumerate((cfg.get("Loss") or {}).get(part) or []):
            name, options = split_entry(entry, f"Loss.{part}[{i}]")
            where = f"Loss.{part}[{i}].{name}"
            own = name.startswith("Distillation")
            if own and not distill:
                raise ConfigError(f"{where}: works on the outputs of Arch.name: {DISTILLATION}, not {arch.get('name')}")
            if distill and part == "Train" and not own:
                raise ConfigError(f"{where}: a {DISTILLATION} trains on one output per model; use the Distillation* "
                                  "losses (DistillationGTCELoss {model_names: [Student]} for the labels)")
            if distill and part == "Eval" and own:
                raise ConfigError(f"{where}: evaluation runs Arch.infer_model_name ({infer}) alone; use CELoss")
            for model in _model_names_in(options) if distill else ():
                check_name(model, f"{where}")
    if not distill:
        return
    for part in ("Train", "Eval"):
        for i, entry in enumerate((cfg.get("Metric") or {}).get(part) or []):
            name, options = split_entry(entry, f"Metric.{part}[{i}]")
            where = f"Metric.{part}[{i}].{name}"
            if name != "DistillationTopkAcc":
                if part == "Train":
                    raise ConfigError(f"{where}: a {DISTILLATION} trains on one output per model; use "
                                      "DistillationTopkAcc {model_key: Student, topk: [1, 5]}")
                continue
            key = options.get("model_key")
            if key is not None:
                check_name(key, f"{where}.model_key")
            if part == "Eval" and key not in (None, infer):
                logger.warning(f"{where}.model_key: {key!r}: evaluation runs Arch.infer_model_name ({infer!r}) "
                               "alone, so it reports that model")
    post = (cfg.get("Infer") or {}).get("PostProcess") or {}
    if post.get("name") == "DistillationPostProcess":
        check_name(post.get("model_name", "Student"), "Infer.PostProcess.model_name")


def resolve_defaults(cfg):
    """Every Global and AMP key present, with its default where the config has none (and EMA's decay
    when EMA is on). Returns ``cfg``."""
    g = cfg.setdefault("Global", {}) or {}
    cfg["Global"] = g
    for key, (_, default) in GLOBAL.items():
        if g.get(key) is None and default is not None:
            g[key] = copy.deepcopy(default)
        g.setdefault(key, None)
    amp = cfg.get("AMP") or {}
    cfg["AMP"] = {key: amp[key] if amp.get(key) is not None else default for key, (_, default) in AMP.items()}
    if cfg.get("EMA") is not None:
        cfg["EMA"] = {key: cfg["EMA"].get(key, default) for key, (_, default) in EMA.items()}
    return cfg


def get_config(path, overrides=None, world_size=None):
    """Load ``path`` (following ``_BASE_``; a path that does not exist is looked up among the installed
    configs), translate a release/2.0 file, apply ``-o`` overrides, validate, fill the defaults."""
    cfg = load_config(path, overrides, world_size)
    g = cfg.get("Global") or {}
    if g.get("class_num") is not None and isinstance(cfg.get("Arch"), dict) and "class_num" not in cfg["Arch"]:
        cfg["Arch"]["class_num"] = g["class_num"]
    validate(cfg)
    return resolve_defaults(cfg)
