"""A self-describing ONNX file: the model name, labels, input shape, output kind and preprocessing
(``preprocess_spec``) in the model's ``metadata_props``, every value JSON, so onnxruntime in any
language needs nothing but the .onnx file (deploy/onnxruntime/predict_plain.py reads them). Written by
every route that makes an ONNX file: ``convert_to_onnx`` (export's probe, ``ppcls onnx``,
deploy/paddle2onnx) and the INT8 quantizer.

Keys: ``model_name``, ``labels`` (list indexed by class id, or null), ``input_shape`` ([C, H, W]),
``input_layout`` ("NCHW"), ``output`` ("probabilities", "logits" or "dense"), ``precision``,
``color_order``, ``resize``, ``center_crop``, ``scale``, ``mean``, ``std``, ``normalize`` (the
formula), ``preprocess_steps`` (the steps in words); ``preprocess_error`` instead of the preprocessing
keys when the recorded transforms have no plain equivalent."""
import json

from ..utils.errors import ConfigError
from ..utils.logger import logger
from . import preprocess_spec

PREPROCESS_KEYS = ("color_order", "resize", "center_crop", "scale", "mean", "std", "normalize", "preprocess_steps")
KEYS = ("model_name", "labels", "input_shape", "input_layout", "output", "precision", "preprocess_error") + PREPROCESS_KEYS


def metadata(info, where="inference.yml"):
    """The metadata_props (key -> JSON text) of the model that the inference.yml dict ``info`` describes."""
    if info.get("dense_output"):
        output = "dense"
    else:
        output = "probabilities" if info.get("softmax", True) else "logits"
    props = {"model_name": preprocess_spec.model_name(info), "labels": preprocess_spec.label_list(info),
             "input_shape": preprocess_spec.image_shape(info), "input_layout": "NCHW", "output": output,
             "precision": info.get("precision", "fp32")}
    try:
        spec = preprocess_spec.describe(preprocess_spec.transform_ops(info), f"{where}: PreProcess.transform_ops")
    except ConfigError as e:
        # an export always records its preprocessing; none at all is a timing model (the benchmark's own)
        (logger.warning if preprocess_spec.transform_ops(info) else logger.info)(
            f"ONNX metadata: no preprocessing recorded ({e})")
        props["preprocess_error"] = str(e)
    else:
        props.update({k: spec[k] for k in ("color_order", "resize", "center_crop", "scale", "mean", "std")},
                     normalize=preprocess_spec.NORMALIZE_FORMULA, preprocess_steps=preprocess_spec.steps(spec))
    return {k: json.dumps(v, ensure_ascii=False) for k, v in props.items()}


def write_onnx_metadata(onnx_path, info, where="inference.yml"):
    """Replace this module's keys in ``onnx_path``'s metadata_props (other keys stay). Returns the props."""
    import onnx
    props = metadata(info, where)
    model = onnx.load(onnx_path)
    kept = [p for p in model.metadata_props if p.key not in KEYS]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, onnx_path)
    return props


def read_onnx_metadata(onnx_path):
    """``{key: value}`` of an ONNX file's metadata_props written here (values decoded from JSON)."""
    import onnx
    model = onnx.load(onnx_path, load_external_data=False)
    return {p.key: json.loads(p.value) for p in model.metadata_props if p.key in KEYS}
