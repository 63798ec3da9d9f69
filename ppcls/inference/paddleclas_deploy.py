"""``inference_cls.yaml`` beside an export: a PaddleClas 2.6 deploy config (the schema of its
deploy/configs/inference_cls.yaml) with the model's own preprocessing and labels, so PaddleClas's
unmodified predictor runs the export:

    python -m paddleclas.deploy.python.predict_cls -c EXPORT/inference_cls.yaml \\
        -o Global.inference_model_dir=EXPORT -o Global.infer_imgs=IMAGES

It runs ``inference.onnx`` (``use_onnx: True``): PaddleClas 2.6's Paddle Inference route fails on every
Paddle 3 ``inference.json`` model at create_predictor ("Not find predictor_id 0 and pass_name
memory_optimize_pass", from its unconditional ``enable_memory_optim()``). Without an ONNX file the config
says ``use_onnx: False`` and its header says how to convert; ``convert_to_onnx`` then switches it on.
The labels go to ``class_id_map.txt`` beside it (``id name`` lines), named by absolute path because
PaddleClas resolves paths against the working directory. This project's predict_cls.py reads the file too."""
import os

import yaml

from ..utils.errors import ConfigError
from ..utils.logger import logger
from . import preprocess_spec

CONFIG_FILE = "inference_cls.yaml"
LABEL_FILE = "class_id_map.txt"
HEADER = """\
# PaddleClas 2.6 deploy config for the model in this folder, written by this project's export
# (ppcls.inference.paddleclas_deploy); the preprocessing and labels are the model's own.
#   python -m paddleclas.deploy.python.predict_cls -c {folder}/inference_cls.yaml \\
#       -o Global.inference_model_dir={folder} -o Global.infer_imgs=IMAGES
# use_onnx: True runs inference.onnx in onnxruntime. PaddleClas 2.6's Paddle Inference route cannot load a
# Paddle 3 inference.json model ("Not find predictor_id 0 and pass_name memory_optimize_pass" at
# create_predictor); without inference.onnx convert first: bash deploy/paddle2onnx/convert.sh {folder}
# To also sort the images into save_dir/<class id>/ add under PostProcess:  SavePreLabel: {{save_dir: ./pre_label/}}
"""


def _paddleclas_ops(spec):
    """PaddleClas 2.6 deploy ops for a ``preprocess_spec.describe`` result. Its NormalizeImage with
    order 'chw' expects a CHW input (it does not transpose), so normalize in HWC, then ToCHWImage."""
    ops = []
    r = spec["resize"]
    if r:
        # PaddleClas's PIL resize has no 'area'; PIL's box filter is what this project's pil backend runs for it
        interp = "box" if r["backend"] == "pil" and r["interpolation"] == "area" else r["interpolation"]
        target = {"resize_short": r["resize_short"]} if "resize_short" in r else {"size": list(r["size"])}
        ops.append({"ResizeImage": dict(target, interpolation=interp, backend=r["backend"])})
    if spec["center_crop"]:
        ops.append({"CropImage": {"size": list(spec["center_crop"])}})
    ops.append({"NormalizeImage": {"scale": spec["scale"], "mean": spec["mean"], "std": spec["std"], "order": "",
                                   "channel_num": 3}})
    ops.append({"ToCHWImage": None})
    return ops


def paddleclas_config(model_dir, info, infer_imgs=None, label_file=None):
    """The deploy config (a dict) for the export in ``model_dir`` described by the inference.yml dict ``info``."""
    spec = preprocess_spec.describe(preprocess_spec.transform_ops(info),
                                    f"{os.path.join(model_dir, 'inference.yml')}: PreProcess.transform_ops")
    onnx_path, params = os.path.join(model_dir, "inference.onnx"), os.path.join(model_dir, "inference.pdiparams")
    # an inference.onnx older than the parameters is an earlier export's (an export without the probe keeps it)
    has_onnx = os.path.isfile(onnx_path) and (not os.path.isfile(params) or os.path.getmtime(onnx_path) >= os.path.getmtime(params))
    return {
        "Global": {"infer_imgs": infer_imgs or "./images", "inference_model_dir": os.path.abspath(model_dir),
                   "batch_size": 1, "use_gpu": False, "enable_mkldnn": True,
                   "cpu_num_threads": 0,  # onnxruntime's default (its own thread count) and all cores here
                   "enable_benchmark": False, "use_fp16": False, "ir_optim": True, "use_tensorrt": False,
                   "gpu_mem": 8000, "enable_profile": False, "use_onnx": has_onnx},
        "PreProcess": {"transform_ops": _paddleclas_ops(spec)},
        "PostProcess": {"main_indicator": "Topk",
                        "Topk": {"topk": preprocess_spec.topk(info),
                                 "class_id_map_file": os.path.abspath(label_file) if label_file else None}},
    }


class _Dumper(yaml.SafeDumper):
    """Block mappings, lists on one line (mean: [0.485, 0.456, 0.406]), as PaddleClas's configs are written."""


_Dumper.add_representer(list, lambda dumper, value: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", value, flow_style=not any(isinstance(v, (dict, list)) for v in value)))


def _dump(path, config, folder):
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEADER.format(folder=folder))
        yaml.dump(config, f, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_paddleclas_config(model_dir, info, infer_imgs=None):
    """Write ``model_dir/inference_cls.yaml`` (and ``class_id_map.txt`` when the model has labels).
    A dense model (no class scores) or preprocessing PaddleClas has no ops for is skipped with a warning
    naming why. Returns the config's path, or None when skipped."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if info.get("dense_output"):
        logger.info(f"{path} not written: a dense model, and PaddleClas's predict_cls prints class top-k")
        return None
    labels = preprocess_spec.label_list(info)
    label_file = os.path.join(model_dir, LABEL_FILE) if labels else None
    try:
        config = paddleclas_config(model_dir, info, infer_imgs, label_file)
    except ConfigError as e:
        logger.warning(f"{path} not written: PaddleClas 2.6 has no equivalent of the preprocessing ({e})")
        return None
    if labels:
        with open(label_file, "w", encoding="utf-8") as f:
            f.writelines(f"{i} {name or ''}\n" for i, name in enumerate(labels))
    elif os.path.isfile(os.path.join(model_dir, LABEL_FILE)):
        os.remove(os.path.join(model_dir, LABEL_FILE))  # an earlier export's labels, not this model's
    _dump(path, config, model_dir)
    return path


def mark_onnx(model_dir):
    """After ``inference.onnx`` appears in ``model_dir``: its inference_cls.yaml (if any) runs it."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, "r", encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    if (config.get("Global") or {}).get("use_onnx") is True:
        return path
    config.setdefault("Global", {})["use_onnx"] = True
    _dump(path, config, model_dir)
    logger.info(f"{path}: use_onnx: True (inference.onnx written)")
    return path
