"""PaddleDetection configs: load one into ppdet's workspace with ``-o`` overrides, from a clean state.

ppdet keeps every loaded key in one process-wide ``global_config`` and merges each new file into it, so
a second config in the same process would inherit the first one's keys (a test building every config,
an API user switching detectors). ``load_det_config`` first puts the workspace back as it was when
ppdet and the zoo backbones were registered.
"""
import os

import yaml
from ppdet.core.config.schema import SchemaDict
from ppdet.core.workspace import global_config, load_config, merge_config

from ..utils.errors import ConfigError

_PRISTINE = None


def snapshot_workspace():
    """Remember the registered modules with no config loaded (called once all are registered)."""
    global _PRISTINE
    _PRISTINE = {k: (v.copy() if isinstance(v, SchemaDict) else v) for k, v in global_config.items()}


def reset_workspace():
    """Drop every key a config set; registered modules are back to their defaults."""
    if _PRISTINE is None:
        snapshot_workspace()
        return
    global_config.clear()
    for key, value in _PRISTINE.items():
        if isinstance(value, SchemaDict):
            fresh = value.copy()
            dict.clear(fresh)
            global_config[key] = fresh
        else:
            global_config[key] = value


def parse_overrides(opts):
    """``["a.b=1", "c=x=y"]`` -> nested dict; values are YAML (``null``, ``[1, 2]``), split at the first
    ``=`` (a value may contain ``=``). One-line error for an item without ``=`` or an empty key."""
    result = {}
    for item in opts or []:
        item = item.strip()
        if "=" not in item:
            raise ConfigError(f"-o {item}: expected key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"-o {item}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError as e:
            raise ConfigError(f"-o {item}: value is not valid YAML ({str(e).splitlines()[0]})")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return result


def load_det_config(path, overrides=None):
    """ppdet's ``global_config`` holding ``path`` (with its ``_BASE_`` files) and the overrides."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    if os.path.splitext(path)[1] not in (".yml", ".yaml"):
        raise ConfigError(f"{path}: a detection config is a .yml or .yaml file")
    reset_workspace()
    try:
        cfg = load_config(path)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: _BASE_ file not found: {e.filename}")
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})")
    if isinstance(overrides, (list, tuple)):
        overrides = parse_overrides(overrides)
    if overrides:
        merge_config(overrides)
    if "architecture" not in cfg:
        raise ConfigError(f"{path}: architecture: required (FasterRCNN, RetinaNet, MaskRCNN, ...)")
    if cfg.architecture not in global_config or not isinstance(global_config[cfg.architecture], SchemaDict):
        raise ConfigError(f"{path}: architecture: {cfg.architecture!r} is not a ppdet architecture")
    return cfg


def backbone_name(cfg):
    """The registered name of the detector's backbone (``FasterRCNN.backbone``), or None."""
    arch = global_config.get(cfg.architecture)
    value = arch["backbone"] if isinstance(arch, SchemaDict) and "backbone" in arch.schema else None
    if isinstance(value, dict):
        value = value.get("name")
    return value
