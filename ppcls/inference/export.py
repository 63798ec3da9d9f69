"""tools/export_model.py: ``paddle.jit.to_static`` + ``paddle.jit.save`` with a dynamic batch
dimension, plus ``inference.yml`` (the preprocessing and post-processing the model expects)."""
import os

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import yaml

from ..arch import build_model
from ..utils.errors import ConfigError
from ..utils.logger import logger
from ..utils.save_load import load_pretrained


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


def read_label_list(path):
    """``id name`` lines (split at the first space) -> {id: name}."""
    if not path:
        return {}
    if not os.path.isfile(path):
        raise ConfigError(f"class_id_map_file not found: {path}")
    labels = {}
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(" ", 1)
            try:
                labels[int(parts[0])] = parts[1] if len(parts) > 1 else ""
            except ValueError:
                raise ConfigError(f"{path}:{lineno}: expected 'class_id name'") from None
    return labels


def export(config):
    g = config.get("Global", {})
    arch = dict(config["Arch"])
    add_softmax = arch.pop("infer_add_softmax", True)
    model = build_model(arch)
    if g.get("pretrained_model"):
        load_pretrained(model, g["pretrained_model"])
    else:
        logger.warning("Global.pretrained_model is not set: exporting randomly initialised weights")
    model.eval()
    probe = model(paddle.zeros([1] + list(g.get("image_shape", [3, 224, 224]))))
    dense = isinstance(probe, (list, tuple))
    wrapped = ExportModel(model, add_softmax=add_softmax and not dense, output_index=int(g.get("infer_output_index", 0)))
    wrapped.eval()
    shape = list(g.get("image_shape", [3, 224, 224]))
    out_dir = g.get("save_inference_dir", "./inference")
    os.makedirs(out_dir, exist_ok=True)
    static = paddle.jit.to_static(wrapped, input_spec=[paddle.static.InputSpec([None] + shape, "float32", "x")],
                                  full_graph=True)
    prefix = os.path.join(out_dir, "inference")
    paddle.jit.save(static, prefix)
    infer = config.get("Infer") or {}
    ops = [op for op in (infer.get("transforms") or []) if "DecodeImage" not in op]
    post = dict(infer.get("PostProcess") or {"name": "Topk", "topk": 5})
    labels = read_label_list(post.pop("class_id_map_file", None))
    meta = {"model": config["Arch"]["name"], "image_shape": shape, "dense_output": dense,
            "softmax": bool(add_softmax and not dense),
            "PreProcess": {"transform_ops": ops},
            "PostProcess": {"main_indicator": "Topk",
                            "Topk": {"topk": int(post.get("topk", 5)),
                                     "label_list": [labels[k] for k in sorted(labels)] if labels else None}}}
    with open(os.path.join(out_dir, "inference.yml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(meta, f, sort_keys=False, allow_unicode=True)
    logger.info(f'Export succeeded! The inference model exported has been saved in "{prefix}".')
    return out_dir
