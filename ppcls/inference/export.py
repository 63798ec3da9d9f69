"""Export to Paddle Inference: ``paddle.jit.to_static`` + ``paddle.jit.save`` with a dynamic batch
dimension, plus ``inference.yml`` (the preprocessing and post-processing the model expects: the
``Infer`` transforms, or without them the evaluation's, so every export deploys)."""
import copy
import os

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import yaml

from ..arch import DistillationModel, build_model, load_pretrained
from ..data.preprocess.ops import interpolation_flag, parse_scale
from ..utils.errors import ConfigError
from ..utils.logger import logger
from ..utils.registry import split_entry
from .labels import label_names


class ExportModel(nn.Layer):
    """Picks the output a deployment needs: logits (optionally softmaxed) of a classifier, or one
    output (the finest by default) of a dense model that returns several."""

    def __init__(self, model, add_softmax=True, output_index=0):
        super().__init__()
        self.model = model
        self.add_softmax = add_softmax
        self.output_index = output_index

    def forward(self, x):
        out = self.model(x)
        if isinstance(out, (list, tuple)):
            return out[self.output_index]
        return F.softmax(out, axis=-1) if self.add_softmax else out


def export_model(model, out_dir, image_shape, add_softmax=True, output_index=0, meta=None):
    """Save ``model`` (eval mode) as ``out_dir/inference.json`` + ``.pdiparams`` with input ``x`` of
    shape [N] + image_shape, and ``inference.yml`` with ``meta`` plus what the export decided
    (whether the output is dense, whether it is softmaxed). Returns ``out_dir``."""
    model.eval()
    shape = list(image_shape)
    dense = isinstance(model(paddle.zeros([1] + shape)), (list, tuple))
    wrapped = ExportModel(model, add_softmax=add_softmax and not dense, output_index=output_index)
    wrapped.eval()
    os.makedirs(out_dir, exist_ok=True)
    stale = os.path.join(out_dir, "backend.json")
    if os.path.isfile(stale):
        os.remove(stale)  # an earlier export's probe measured another model
    static = paddle.jit.to_static(wrapped, input_spec=[paddle.static.InputSpec([None] + shape, "float32", "x")],
                                  full_graph=True)
    paddle.jit.save(static, os.path.join(out_dir, "inference"))
    info = dict(meta or {}, image_shape=shape, dense_output=dense, softmax=bool(add_softmax and not dense))
    with open(os.path.join(out_dir, "inference.yml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(info, f, sort_keys=False, allow_unicode=True)
    return out_dir


# What the deployed predictor's decoder (pipeline.read_rgb, the service's decode_rgb) does: every image
# becomes HWC uint8 RGB at full size. A DecodeImage asking for anything else cannot be recorded.
PREDICTOR_DECODE = {"to_rgb": True, "channel_first": False, "reduce": 1}
EVAL_TRANSFORMS = "DataLoader.Eval.dataset.transform_ops"


def _ends_chw(ops):
    """Whether ``ops`` leave the image CHW, as the datasets decide it (ppcls.data.dataset.common):
    a ToCHWImage, or a NormalizeImage with order 'chw' (its default)."""
    for op in ops:
        name, options = split_entry(op, "transform_ops")
        if name == "ToCHWImage" or (name == "NormalizeImage" and options.get("order", "chw") == "chw"):
            return True
    return False


def deploy_transforms(config):
    """``(transform_ops, where)``: the preprocessing inference.yml records, and the config key it came
    from. ``Infer.transforms`` when set, else the evaluation's (``DataLoader.Eval``), which is what the
    model was measured with; DecodeImage is left out (the predictor decodes) and a ToCHWImage is added
    where the ops end HWC (the datasets transpose after them). Never empty."""
    infer = config.get("Infer") or {}
    loader = ((config.get("DataLoader") or {}).get("Eval") or {}).get("dataset") or {}
    if infer.get("transforms"):
        ops, where = infer["transforms"], "Infer.transforms"
    elif loader.get("transform_ops"):
        ops, where = loader["transform_ops"], EVAL_TRANSFORMS
    else:
        raise ConfigError(f"Infer.transforms and {EVAL_TRANSFORMS}: neither is set, so the export cannot record the "
                          "preprocessing the model expects in inference.yml; give one of them")
    recorded = []
    for i, op in enumerate(ops):
        name, options = split_entry(op, f"{where}.{i}")
        if name != "DecodeImage":
            recorded.append(copy.deepcopy(op))
            continue
        for key, value in PREDICTOR_DECODE.items():
            given = options.get(key, value)
            if given != value:
                raise ConfigError(f"{where}.{i}.DecodeImage.{key}: {given!r} cannot be deployed: the predictor and the "
                                  f"service decode every image with {key}: {value!r}")
    if not _ends_chw(recorded):
        recorded.append({"ToCHWImage": None})
    return recorded, where


# cv2 codes -> the interpolation names both PaddleX (upper case, per backend) and ResizeImage here read;
# lanczos and PIL's box filter have no name both read, so such an op is recorded as the config gives it
PORTABLE_INTERPOLATION = {"cv2": {0: "NEAREST", 1: "LINEAR", 2: "BICUBIC", 3: "AREA"},
                          "pil": {0: "NEAREST", 1: "BILINEAR", 2: "BICUBIC"}}


def _portable_op(name, options, where):
    """One op as both this project's preprocessing and PaddleX's read it: numbers where configs may give
    fraction strings, interpolation names both know, NormalizeImage laid out HWC (PaddleX transposes in a
    separate ToCHWImage). Returns ``(op, needs_chw)``: whether a ToCHWImage must follow."""
    if name == "NormalizeImage":
        out = dict(options)
        out["scale"] = parse_scale(1.0 / 255.0 if options.get("scale") is None else options["scale"],
                                   f"{where}.NormalizeImage.scale")
        for key, default in (("mean", [0.485, 0.456, 0.406]), ("std", [0.229, 0.224, 0.225])):
            value = default if options.get(key) is None else options[key]
            out[key] = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
        order = options.get("order", "chw")
        out["order"] = "" if order in ("chw", "hwc", "") else order
        return {name: out}, order == "chw"
    if name == "ResizeImage" and options.get("interpolation") is not None:
        backend = options.get("backend", "cv2")
        code = interpolation_flag(options["interpolation"], f"{where}.ResizeImage")
        portable = PORTABLE_INTERPOLATION.get(backend, {}).get(code)
        if portable is not None:
            return {name: dict(options, interpolation=portable)}, False
    return {name: copy.deepcopy(options) if options else None}, False


def portable_transforms(transform_ops, image_shape=None, where="PreProcess.transform_ops"):
    """The preprocessing as inference.yml records it, readable by this project's predictor and by PaddleX 3's
    image-classification predictor alike: the same computation, with numbers instead of fraction strings,
    NormalizeImage HWC followed by ToCHWImage, and the resize written out. Ops without a geometric step
    (only NormalizeImage / ToCHWImage: images already at the model's size, as the digits config has) get
    a ResizeImage to ``image_shape`` (C, H, W) first, which leaves an image of that size untouched: PaddleX's
    predictor (paddlex/inference/models/image_classification/predictor.py) always runs a resize. Ops it
    does not know are kept as given: this project's predictor runs them; ``ppcls.paddlex.check_export``
    names them."""
    recorded = []
    for i, op in enumerate(transform_ops):
        name, options = split_entry(op, f"{where}.{i}")
        converted, needs_chw = _portable_op(name, options, f"{where}.{i}")
        recorded.append(converted)
        if needs_chw:
            if i + 1 < len(transform_ops):
                recorded[-1] = copy.deepcopy(op)  # ops after it expect CHW: only the original layout keeps that
            else:
                recorded.append({"ToCHWImage": None})
    names = {next(iter(op)) for op in recorded}
    if names <= {"NormalizeImage", "ToCHWImage"} and image_shape is not None and len(image_shape) == 3:
        recorded.insert(0, {"ResizeImage": {"size": [int(image_shape[2]), int(image_shape[1])]}})
    return recorded


def deploy_meta(config, transform_ops=None, where="PreProcess.transform_ops"):
    """The model name, preprocessing (``deploy_transforms``, unless given, in ``portable_transforms`` form)
    and post-processing (top-k and the label list) that inference.yml records, in the layout PaddleX 3
    reads (``Global.model_name``; ``PostProcess`` holding only ``Topk``, each key of which it builds as an
    op). ``model`` repeats the name for the readers of older exports (the service)."""
    infer = config.get("Infer") or {}
    post = dict(infer.get("PostProcess") or {"name": "Topk", "topk": 5})
    if transform_ops is None:
        transform_ops, where = deploy_transforms(config)
    name = config["Arch"]["name"]
    image_shape = (config.get("Global") or {}).get("image_shape") or [3, 224, 224]
    return {"Global": {"model_name": name},
            "model": name,
            "PreProcess": {"transform_ops": portable_transforms(transform_ops, image_shape, where)},
            "PostProcess": {"Topk": {"topk": int(post.get("topk", 5)),
                                     "label_list": label_names(post.get("class_id_map_file"))}}}


def export(config, out_dir=None, probe=None):
    """tools/export_model.py: the config's model with its weights, to ``Global.save_inference_dir``.
    With ``probe`` (default: ``Global.backend_probe``, on in a validated config) Paddle Inference and
    onnxruntime are timed on the exported model (it is converted to inference.onnx for that) and the
    result is stored as ``backend.json``, which the deploy predictor's ``backend: auto`` follows."""
    g = config["Global"]
    # before any work: a config that cannot deploy fails first
    transform_ops, where = deploy_transforms(config)
    meta = deploy_meta(config, transform_ops, where)
    if where == EVAL_TRANSFORMS:
        logger.info(f"Infer.transforms is not set: inference.yml records the evaluation's preprocessing ({where} "
                    f"without DecodeImage, ending CHW, the resize written out): "
                    f"{[next(iter(op)) for op in meta['PreProcess']['transform_ops']]}")
    arch = dict(config["Arch"])
    add_softmax = arch.pop("infer_add_softmax", True)
    model = build_model(arch, training=False)
    if g.get("pretrained_model"):
        load_pretrained(model, arch["name"], g["pretrained_model"], where="Global.pretrained_model")
    else:
        logger.warning("Global.pretrained_model is not set: exporting randomly initialised weights")
    if isinstance(model, DistillationModel):
        # only the model infer_model_name names is deployed: its parameters, its outputs
        name = model.infer_model_name
        meta["model"] = meta["Global"]["model_name"] = model.arch_names[name]
        logger.info(f"DistillationModel: exporting {name} ({meta['model']}, Arch.infer_model_name) alone")
        model = model.infer_model
    out_dir = out_dir or g.get("save_inference_dir") or "./inference"
    export_model(model, out_dir, g.get("image_shape") or [3, 224, 224], add_softmax, int(g.get("infer_output_index") or 0),
                 meta)
    logger.info(f'Export succeeded! The inference model exported has been saved in "{os.path.join(out_dir, "inference")}".')
    if g.get("backend_probe") if probe is None else probe:
        from .backend import LABELS
        from .probe import probe_backends
        stale = os.path.join(out_dir, "inference.onnx")
        if os.path.isfile(stale):
            os.remove(stale)  # an earlier export's conversion: the probe converts this model afresh
        result = probe_backends(out_dir, threads=int(g.get("cpu_threads") or 0))
        logger.info(f"backend probe ({result['threads']} threads): {result['reason']}; "
                    f"backend: auto will use {LABELS[result['backend']]} (per batch: "
                    + ", ".join(f"{b}: {LABELS[v]}" for b, v in result["by_batch"].items())
                    + f"), stored in {os.path.join(out_dir, 'backend.json')}")
    from .paddleclas_deploy import write_paddleclas_config
    from .predictor import read_meta
    write_paddleclas_config(out_dir, read_meta(out_dir), infer_imgs=(config.get("Infer") or {}).get("infer_imgs"))
    return out_dir
