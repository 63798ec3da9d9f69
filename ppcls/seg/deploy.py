"""Export of a PaddleSeg model to Paddle Inference, and the predictor that runs the export.

The export is ``paddle.jit.to_static`` + ``paddle.jit.save`` of the model followed by the output op
(``argmax``: the class map, int32 [N, 1, H, W]; ``softmax``; ``none``: the scores), with PaddleSeg's
``deploy.yaml`` beside it (the evaluation transforms, the file names, the output op), which is what
PaddleSeg's own deploy code reads. ``SegPredictor`` applies those transforms with PaddleSeg's classes,
runs Paddle Inference and maps the masks back to each image's size as PaddleSeg's dygraph predict does.
"""
import os

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import yaml

from ..utils.errors import ConfigError

OUTPUT_OPS = ("argmax", "softmax", "none")
MODEL_PREFIX = "model"


class _WithOutputOp(nn.Layer):
    def __init__(self, model, output_op):
        super().__init__()
        self.model = model
        self.output_op = output_op

    def forward(self, x):
        logit = self.model(x)[0]
        if self.output_op == "argmax":
            return paddle.argmax(logit, axis=1, keepdim=True, dtype="int32")
        if self.output_op == "softmax":
            return F.softmax(logit, axis=1)
        return logit


def export_model(model, save_dir, transforms, input_shape=None, output_op="argmax"):
    """Save ``model`` (eval mode) under ``save_dir`` with ``deploy.yaml``; returns the files written.
    ``input_shape``: [N, C, H, W] (-1 or None: any size), by default [-1, 3, -1, -1]."""
    if output_op not in OUTPUT_OPS:
        raise ConfigError(f"--output_op: {output_op!r}; choose one of {', '.join(OUTPUT_OPS)}")
    shape = [-1, 3, -1, -1] if not input_shape else [int(s) if s is not None else -1 for s in input_shape]
    if len(shape) != 4:
        raise ConfigError(f"--input_shape: four numbers N C H W, got {input_shape}")
    os.makedirs(save_dir, exist_ok=True)
    model.eval()
    wrapped = _WithOutputOp(model, output_op)
    wrapped.eval()
    spec = [paddle.static.InputSpec([None if s < 0 else s for s in shape], "float32", "x")]
    prefix = os.path.join(save_dir, MODEL_PREFIX)
    try:
        paddle.jit.save(paddle.jit.to_static(wrapped, input_spec=spec, full_graph=True), prefix)
    except (ValueError, TypeError) as e:
        if shape[2] > 0 and shape[3] > 0:
            raise
        # a network that checks its input sides in Python cannot be traced with unknown sides
        reason = str(e).strip().splitlines()[0][:160]
        raise ConfigError(f"{type(model).__name__} cannot be exported with any input size ({reason}); "
                          f"give one: --input_shape -1 3 H W") from None
    model_file = next(f"{MODEL_PREFIX}{ext}" for ext in (".json", ".pdmodel") if os.path.isfile(prefix + ext))
    deploy = {"Deploy": {"model": model_file, "params": f"{MODEL_PREFIX}.pdiparams",
                         "transforms": transforms, "output_op": output_op, "input_shape": shape}}
    with open(os.path.join(save_dir, "deploy.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(deploy, f, sort_keys=False)
    return [model_file, f"{MODEL_PREFIX}.pdiparams", "deploy.yaml"]


def read_deploy(model_dir):
    path = os.path.join(model_dir, "deploy.yaml")
    if not os.path.isfile(path):
        raise ConfigError(f"--model_dir: {model_dir} holds no deploy.yaml (export a model with `ppcls seg export`)")
    with open(path, "r", encoding="utf-8") as f:
        deploy = (yaml.safe_load(f) or {}).get("Deploy")
    if not isinstance(deploy, dict) or "model" not in deploy or "params" not in deploy:
        raise ConfigError(f"{path}: no Deploy section with model and params")
    for key in ("model", "params"):
        if not os.path.isfile(os.path.join(model_dir, deploy[key])):
            raise ConfigError(f"{path}: Deploy.{key} {deploy[key]} not found in {model_dir}")
    return deploy


def build_transforms(transforms):
    """PaddleSeg's ``Compose`` of a config's transform list (``[{type: Normalize, ...}, ...]``)."""
    from paddleseg.cvlibs import manager
    from paddleseg.transforms import Compose
    ops = []
    for i, t in enumerate(transforms or []):
        t = dict(t)
        kind = t.pop("type", None)
        if kind not in manager.TRANSFORMS.components_dict:
            raise ConfigError(f"transforms[{i}].type: unknown transform {kind!r}")
        ops.append(manager.TRANSFORMS[kind](**t))
    return Compose(ops)


class SegPredictor:
    """Masks from an exported model: ``predict(paths)`` -> one uint8 [H, W] class map per image, at the
    image's own size."""

    def __init__(self, model_dir, enable_mkldnn=True, cpu_threads=None, use_gpu=False):
        from paddle import inference
        self.deploy = read_deploy(model_dir)
        if self.deploy.get("output_op", "argmax") != "argmax":
            raise ConfigError(f"{model_dir}: exported with output_op {self.deploy['output_op']}; the predictor needs argmax")
        self.transforms = build_transforms(self.deploy.get("transforms"))
        cfg = inference.Config(os.path.join(model_dir, self.deploy["model"]), os.path.join(model_dir, self.deploy["params"]))
        if use_gpu:
            cfg.enable_use_gpu(1000, 0)
        else:
            cfg.disable_gpu()
            if enable_mkldnn:
                cfg.enable_mkldnn()
            else:
                cfg.disable_mkldnn()
            if not cpu_threads:
                cpu_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            cfg.set_cpu_math_library_num_threads(int(cpu_threads))
        cfg.disable_glog_info()
        self.predictor = inference.create_predictor(cfg)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def predict_one(self, path):
        from paddleseg.core.infer import reverse_transform
        if not os.path.isfile(path):
            raise ConfigError(f"image not found: {path}")
        data = self.transforms({"img": path})
        batch = np.ascontiguousarray(data["img"][None], dtype=np.float32)
        fixed = self.deploy.get("input_shape") or [-1, 3, -1, -1]
        if any(0 < want != got for want, got in zip(fixed[2:], batch.shape[2:])):
            raise ConfigError(f"{path}: {batch.shape[3]}x{batch.shape[2]} after the transforms, but the model was "
                              f"exported for {fixed[3]}x{fixed[2]} (export with --input_shape -1 3 -1 -1 or resize)")
        self.input.reshape(list(batch.shape))
        self.input.copy_from_cpu(batch)
        try:
            self.predictor.run()
        except NotImplementedError as e:
            # Paddle 3.3's oneDNN kernels lack some attributes of a graph traced with unknown sides
            # (ReXUNet's x2 up-sampling by scale factor): the plain CPU kernels run it
            raise ConfigError(f"Paddle Inference with oneDNN cannot run this export ({str(e).strip().splitlines()[0][:120]}); "
                              "predict with --disable_mkldnn, or export with --input_shape -1 3 H W") from None
        pred = paddle.to_tensor(self.output.copy_to_cpu().astype("int32"))
        pred = reverse_transform(pred, data.get("trans_info", []), mode="nearest")
        return pred.numpy()[0, 0].astype(np.uint8)

    def predict(self, paths):
        return [self.predict_one(p) for p in paths]
