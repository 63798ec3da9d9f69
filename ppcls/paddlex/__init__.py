"""Exports of this project in PaddleX 3.7. Install: ``bash tools/install_extras.sh paddlex`` (PaddleX 3.7.2 with
--no-deps, beside this project's numpy 2.4 and OpenCV), or ``pip install "paddlex[cv]==3.7.2"`` (its own pins:
numpy < 2.4, opencv-contrib-python 4.10).

    import ppcls.paddlex
    ppcls.paddlex.register()                  # every zoo model name, once per process
    import paddlex
    model = paddlex.create_model(model_name="DLA46_c", model_dir="inference/DLA46_c")
    for result in model.predict(["digit.png"]):
        print(result["class_ids"], result["scores"], result["label_names"])

``register`` binds every model name of the zoo to PaddleX's own image-classification predictor
(``ClasRunnerPredictor``) for the ``paddle_static`` engine (inference.json / .pdiparams) and the
``onnxruntime`` engine (inference.onnx: the INT8 folder of tools/quantize.py runs there), so
``create_model`` and PaddleX's ``image_classification`` pipeline take a zoo export by its model name. (The
dense models, DLAUp_* and ReXUNet, are registered too but export maps, not class scores: ``check_export``
refuses them.)
That predictor reads the export's inference.yml as tools/export_model.py writes it (see
``ppcls.inference.export.portable_transforms``). ``check_export`` names, in one line, what in a model
folder PaddleX would fail on (an export from before that layout, an op PaddleX lacks, an ONNX-only folder
asked for Paddle Inference); ``create_model`` checks, then calls PaddleX's.

Importing this module does not import PaddleX; ``register`` does, after the version check.
``import ppcls`` never imports this module.
"""
import os

import yaml

from ..utils.errors import ConfigError
from .compat import INSTALL_HINT, REQUIRED_PADDLEX, apply_fixes, check_paddlex_version, require_paddlex

# the engines whose runner reads a local model folder with the file names an export writes
ENGINES = ("paddle_static", "onnxruntime")
# what ClasRunnerPredictor (paddlex/inference/models/image_classification/predictor.py) builds from
# inference.yml: these preprocessing ops only, run in this order whatever order the file lists, the resize
# and the transpose always
ORDER = ("ResizeImage", "CropImage", "NormalizeImage", "ToCHWImage")
INTERPOLATIONS = {"cv2": ("NEAREST", "LINEAR", "BICUBIC", "AREA", "LANCZOS4"),
                  "pil": ("NEAREST", "BILINEAR", "BICUBIC", "BOX", "LANCZOS4")}
NORMALIZE_KEYS = ("scale", "mean", "std", "order", "channel_num")
RESIZE_KEYS = ("size", "resize_short", "interpolation", "backend")

_registered = set()


def register(model_names=None):
    """Bind ``model_names`` (default: every model of the zoo, ``ppcls.arch.list_models()``) to PaddleX's
    image-classification predictor; returns the names bound. Calling it again binds nothing twice."""
    require_paddlex()
    apply_fixes()
    from paddlex.inference.models.bindings import register_predictor_binding_map
    from paddlex.inference.models.image_classification import ClasRunnerPredictor

    if model_names is None:
        from ..arch import list_models
        model_names = list_models()
    names = [n for n in model_names if n not in _registered]
    if names:
        register_predictor_binding_map(ClasRunnerPredictor, {engine: names for engine in ENGINES})
        _registered.update(names)
    return list(model_names)


def _fail(where, message):
    raise ConfigError(f"{where}: {message}")


def check_export(model_dir, engine=None):
    """The folder's inference.yml, after checking that PaddleX's image-classification predictor reads it as
    this project's predictor does (and, for ``engine`` None / "paddle" / "paddle_static", that the folder
    holds a Paddle model). Raises ConfigError, one line naming the file and key, otherwise."""
    path = os.path.join(model_dir, "inference.yml")
    if not os.path.isfile(path):
        _fail(model_dir, "no inference.yml (export the model with tools/export_model.py)")
    with open(path, "r", encoding="utf-8") as f:
        meta = yaml.safe_load(f) or {}
    again = "export the model again with tools/export_model.py"
    if not (meta.get("Global") or {}).get("model_name"):
        _fail(path, f"Global.model_name is missing (an export from before PaddleX-readable inference.yml); {again}")
    if meta.get("dense_output"):
        _fail(path, f"{meta['Global']['model_name']} returns dense maps; PaddleX's image-classification predictor "
                    "takes class scores")
    if not meta.get("softmax", True):
        _fail(path, "softmax: false (exported with Arch.infer_add_softmax: False): PaddleX would report the "
                    "logits as scores; export with the softmax")
    post = meta.get("PostProcess") or {}
    for key in post:
        if key != "Topk":
            _fail(path, f"PostProcess.{key}: PaddleX builds every PostProcess key as an op and knows Topk only; "
                        f"{again}")
    if "Topk" not in post:
        _fail(path, "PostProcess.Topk: required by PaddleX's image-classification predictor")
    ops = (meta.get("PreProcess") or {}).get("transform_ops") or []
    names = []
    for i, op in enumerate(ops):
        where = f"PreProcess.transform_ops.{i}"
        if not isinstance(op, dict) or len(op) != 1:
            _fail(path, f"{where}: expected a one-key mapping, got {op!r}")
        name, options = next(iter(op.items()))
        options = options or {}
        if name not in ORDER:
            _fail(path, f"{where}.{name}: PaddleX's image-classification predictor runs {', '.join(ORDER)} only")
        if name in names:
            _fail(path, f"{where}.{name}: given twice; PaddleX runs each op once")
        if names and ORDER.index(name) < ORDER.index(names[-1]):
            _fail(path, f"{where}.{name}: after {names[-1]}; PaddleX runs them in the order {', '.join(ORDER)}")
        names.append(name)
        if name == "NormalizeImage":
            _check_normalize(path, f"{where}.{name}", options, again)
        elif name == "ResizeImage":
            _check_resize(path, f"{where}.{name}", options)
    if "ResizeImage" not in names:
        _fail(path, f"PreProcess.transform_ops: no ResizeImage, which PaddleX always runs; {again}")
    if "ToCHWImage" not in names:
        _fail(path, "PreProcess.transform_ops: no ToCHWImage; PaddleX's NormalizeImage leaves the image HWC")
    if engine in (None, "paddle", "paddle_static"):
        from ..inference.backend import has_onnx_model, has_paddle_model
        if not has_paddle_model(model_dir):
            hint = " (ONNX only: pass engine=\"onnxruntime\")" if has_onnx_model(model_dir) else ""
            _fail(model_dir, f"holds no inference.json/.pdmodel + inference.pdiparams{hint}")
    return meta


def _check_normalize(path, where, options, again):
    for key in options:
        if key not in NORMALIZE_KEYS:
            _fail(path, f"{where}.{key}: PaddleX's NormalizeImage has no such option")
    scale = options.get("scale", 1 / 255)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        _fail(path, f"{where}.scale: {scale!r} is not a number (PaddleX divides by it); {again}")
    if options.get("order", "") != "":
        _fail(path, f"{where}.order: {options['order']!r}; PaddleX takes '' (HWC, then ToCHWImage); {again}")
    if options.get("channel_num", 3) != 3:
        _fail(path, f"{where}.channel_num: PaddleX takes 3 only")


def _check_resize(path, where, options):
    for key in options:
        if key not in RESIZE_KEYS:
            _fail(path, f"{where}.{key}: PaddleX's ResizeImage has no such option")
    backend = options.get("backend", "cv2")
    if backend not in INTERPOLATIONS:
        _fail(path, f"{where}.backend: {backend!r}; PaddleX takes cv2 or pil")
    interp = options.get("interpolation", "LINEAR" if backend == "cv2" else "BILINEAR")
    if not isinstance(interp, str) or interp.upper() not in INTERPOLATIONS[backend]:
        _fail(path, f"{where}.interpolation: {interp!r}; PaddleX's {backend} resize takes "
                    f"{', '.join(INTERPOLATIONS[backend])}")


def create_model(model_dir, engine=None, **kwargs):
    """``paddlex.create_model`` for a zoo export: the model name from its inference.yml, the folder checked
    first (``check_export``), the onnxruntime engine when the folder holds an ONNX model only (an INT8
    folder), and the zoo registered."""
    if engine is None:
        from ..inference.backend import has_onnx_model, has_paddle_model
        if not has_paddle_model(model_dir) and has_onnx_model(model_dir):
            engine = "onnxruntime"
    meta = check_export(model_dir, engine)
    register()
    import paddlex
    if engine is not None:
        kwargs["engine"] = engine
    return paddlex.create_model(model_name=meta["Global"]["model_name"], model_dir=model_dir, **kwargs)


__all__ = ["register", "check_export", "create_model", "require_paddlex", "check_paddlex_version", "apply_fixes",
           "REQUIRED_PADDLEX", "INSTALL_HINT", "ENGINES"]
