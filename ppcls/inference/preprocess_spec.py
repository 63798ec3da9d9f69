"""The exported model's preprocessing as plain numbers that other runtimes follow (PaddleClas's deploy
config, the ONNX file's metadata_props): decode to RGB, an optional resize, an optional centre crop,
``(pixel * scale - mean) / std`` per channel, then CHW. Read from the ``PreProcess.transform_ops`` an
export records, each op built by this project's own operators first, so whatever they accept (a scale
written ``1.0/255.0`` or as a number, cv2 interpolation codes or names) is described as they run it.

Also the few fields of an ``inference.yml`` these writers need, read so that both its layouts work
(``model`` or ``Global.model_name``; ``PostProcess.Topk`` with or without ``main_indicator`` beside it)."""
import cv2
import numpy as np

from ..data.preprocess import create_operators
from ..data.preprocess.ops import parse_scale
from ..utils.errors import ConfigError
from ..utils.registry import split_entry

# NormalizeImage's defaults when a key is left out (checked against the op built from the same entry)
DEFAULT_SCALE = 1.0 / 255.0
DEFAULT_MEAN = [0.485, 0.456, 0.406]
DEFAULT_STD = [0.229, 0.224, 0.225]
INTERPOLATION_NAMES = {cv2.INTER_NEAREST: "nearest", cv2.INTER_LINEAR: "bilinear", cv2.INTER_CUBIC: "bicubic",
                       cv2.INTER_AREA: "area", cv2.INTER_LANCZOS4: "lanczos"}
NORMALIZE_FORMULA = "(pixel * scale - mean) / std"


def model_name(info):
    return (info.get("Global") or {}).get("model_name") or info.get("model") or "the model"


def label_list(info):
    names = ((info.get("PostProcess") or {}).get("Topk") or {}).get("label_list")
    return list(names) if names else None


def topk(info):
    return int(((info.get("PostProcess") or {}).get("Topk") or {}).get("topk") or 5)


def image_shape(info):
    shape = info.get("image_shape") or (info.get("Global") or {}).get("image_shape")
    return [int(d) for d in shape] if shape else None


def transform_ops(info):
    return (info.get("PreProcess") or {}).get("transform_ops") or []


def describe(ops, where="PreProcess.transform_ops"):
    """``{"color_order", "resize", "center_crop", "scale", "mean", "std", "layout"}`` for the transform
    ``ops`` (DecodeImage, ResizeImage, CropImage, NormalizeImage, ToCHWImage, in that order).
    ``resize``: None or ``{"resize_short": n}`` / ``{"size": [w, h]}`` with ``interpolation`` and
    ``backend``; ``center_crop``: None or ``[w, h]``. ConfigError names the op that cannot be described."""
    if not ops:
        raise ConfigError(f"{where}: empty; nothing records the model's preprocessing")
    spec = {"color_order": "RGB", "resize": None, "center_crop": None, "scale": 1.0, "mean": [0.0] * 3,
            "std": [1.0] * 3, "layout": "CHW"}
    stage = 0  # resize (1), crop (2), normalize (3), ToCHWImage (4): each at most once, in that order
    for i, entry in enumerate(ops):
        name, options = split_entry(entry, f"{where}.{i}")
        here = f"{where}.{i}.{name}"
        order = {"DecodeImage": 0, "ResizeImage": 1, "CropImage": 2, "NormalizeImage": 3, "ToCHWImage": 4}.get(name)
        if order is None:
            raise ConfigError(f"{here}: other runtimes get resize, centre crop and normalize only; this op has no "
                              "equivalent there")
        if order == 0:
            continue  # the predictor decodes (to RGB) itself
        if order <= stage:
            raise ConfigError(f"{here}: after a later step; other runtimes apply resize, centre crop, normalize, "
                              "CHW in that order")
        stage = order
        op = create_operators([entry], where)[0]
        if name == "ResizeImage":
            if op.interp is None:
                raise ConfigError(f"{here}.interpolation: 'random' picks a method per image; give a fixed one")
            spec["resize"] = dict({"resize_short": op.resize_short} if op.resize_short is not None
                                  else {"size": [int(v) for v in op.size]},
                                  interpolation=INTERPOLATION_NAMES[op.interp], backend=op.backend)
        elif name == "CropImage":
            spec["center_crop"] = [int(v) for v in op.size]
        elif name == "NormalizeImage":
            if options.get("channel_num", 3) != 3 or options.get("output_fp16"):
                raise ConfigError(f"{here}: channel_num 4 / output_fp16 have no equivalent in other runtimes")
            scale = parse_scale(DEFAULT_SCALE if options.get("scale") is None else options["scale"], f"{here}.scale")
            mean = [float(v) for v in (DEFAULT_MEAN if options.get("mean") is None else options["mean"])]
            std = [float(v) for v in (DEFAULT_STD if options.get("std") is None else options["std"])]
            # the op fuses its arithmetic into x * alpha + beta: what is described must be what it computes
            alpha, beta = scale / np.array(std), -np.array(mean) / np.array(std)
            if not (np.allclose(op.alpha, alpha, rtol=1e-6) and np.allclose(op.beta, beta, rtol=1e-6, atol=1e-7)):
                raise ConfigError(f"{here}: NormalizeImage's defaults differ from the described ones")
            spec.update(scale=scale, mean=mean, std=std)
    return spec


def steps(spec):
    """The preprocessing in words, in order."""
    out = [f"decode to {spec['color_order']} (HWC)"]
    r = spec["resize"]
    if r:
        target = f"short side {r['resize_short']} (aspect kept)" if "resize_short" in r else f"{r['size'][0]}x{r['size'][1]} (WxH)"
        out.append(f"resize to {target}, {r['interpolation']} ({r['backend']})")
    if spec["center_crop"]:
        out.append(f"centre crop {spec['center_crop'][0]}x{spec['center_crop'][1]} (WxH)")
    out.append(f"float32 {NORMALIZE_FORMULA} per channel")
    out.append("HWC to CHW, batch first (NCHW)")
    return out
