"""The deployed predictor: an exported model (tools/export_model.py) run by Paddle Inference (oneDNN
and a thread count on CPU; GPU, TensorRT and FP16 switches for GPU users) or by onnxruntime.

``Global.backend``: ``paddle``, ``onnxruntime``, or ``auto`` (the default of the deploy config): the
backend that the export's timed probe found faster on this machine (``backend.json`` beside the
model, see ``ppcls.inference.backend``); an INT8 folder (tools/quantize.py) runs in onnxruntime.
``use_onnx: True`` is the older spelling of ``backend: onnxruntime``."""
import os
import time

import numpy as np
import yaml

from ..utils.device import available_cores
from ..utils.errors import ConfigError
from ..utils.logger import logger
from .backend import LABELS, has_onnx_model, has_paddle_model, resolve_backend
from .labels import label_names
from .pipeline import Preprocess, Topk, format_result, list_images, load_batches

GLOBAL_DEFAULTS = {
    "infer_imgs": None, "inference_model_dir": "./inference", "batch_size": 1, "use_gpu": False, "gpu_mem": 8000,
    "enable_mkldnn": True, "cpu_num_threads": 0, "ir_optim": True, "use_tensorrt": False, "use_fp16": False,
    "use_onnx": False, "backend": "auto", "benchmark": False, "enable_benchmark": False, "max_images": 0,
}


def default_deploy_config():
    """The installed deploy config (the repository's deploy/configs/inference_cls.yaml)."""
    from ..utils.config import INSTALLED_CONFIGS
    return os.path.join(INSTALLED_CONFIGS, "deploy", "inference_cls.yaml")


def read_meta(model_dir):
    path = os.path.join(model_dir, "inference.yml")
    if not os.path.isfile(path):
        return {}
    with open(path, "r", encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


class Predictor:
    """``Predictor(settings, model_dir).run(batch)``: ``settings`` are the deploy config's Global keys
    (``backend``, ``use_onnx``, ``cpu_num_threads``, ``enable_mkldnn``, ``ir_optim``, GPU switches); a
    dict without ``backend`` runs Paddle Inference. ``self.backend`` and ``self.backend_reason`` say
    which backend runs and why (logged once)."""

    def __init__(self, g, model_dir, announce=None):
        self.model_dir = model_dir
        if not os.path.isdir(model_dir):
            raise ConfigError(f"Global.inference_model_dir: not found: {model_dir} (export a model with tools/export_model.py)")
        self.meta = read_meta(model_dir)
        self.backend, self.backend_reason = resolve_backend(g, model_dir)
        self.use_onnx = self.backend == "onnxruntime"
        threads = int(g.get("cpu_num_threads") or 0) or available_cores()
        precision = self.meta.get("precision", "fp32")
        if ("backend" in g) if announce is None else announce:  # a deploy config: say which backend runs and why
            logger.info(f"predictor backend: {LABELS[self.backend]} ({self.backend_reason}); {precision} model in "
                        f"{model_dir}, {threads} CPU threads")
        if self.use_onnx:
            self._init_onnxruntime(model_dir, threads)
        else:
            self._init_paddle(g, model_dir, threads)

    def _init_onnxruntime(self, model_dir, threads):
        path = os.path.join(model_dir, "inference.onnx")
        if not has_onnx_model(model_dir):
            raise ConfigError(f"{path} not found: convert the model first (bash deploy/paddle2onnx/convert.sh {model_dir})")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("Global.backend: onnxruntime is not installed (pip install onnxruntime)") from None
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.input_name = self.sess.get_inputs()[0].name

    def _init_paddle(self, g, model_dir, threads):
        if not has_paddle_model(model_dir):
            if self.meta.get("precision") == "int8" or has_onnx_model(model_dir):
                raise ConfigError(f"Global.inference_model_dir: {model_dir} holds an ONNX model only "
                                  f"({self.meta.get('precision', 'fp32')}, inference.onnx): use Global.backend: "
                                  "onnxruntime or auto")
            raise ConfigError(f"Global.inference_model_dir: {model_dir} holds no inference.json/.pdmodel + "
                              "inference.pdiparams (export a model with tools/export_model.py)")
        from paddle import inference
        if os.path.isfile(os.path.join(model_dir, "inference.json")):
            cfg = inference.Config(model_dir, "inference")
        else:
            cfg = inference.Config(os.path.join(model_dir, "inference.pdmodel"), os.path.join(model_dir, "inference.pdiparams"))
        if g.get("use_gpu"):
            cfg.enable_use_gpu(int(g.get("gpu_mem", 8000)), 0)
            if g.get("use_tensorrt"):
                precision = inference.PrecisionType.Half if g.get("use_fp16") else inference.PrecisionType.Float32
                cfg.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=int(g.get("batch_size", 1)),
                                           min_subgraph_size=30, precision_mode=precision)
        else:
            if g.get("use_fp16"):
                raise ConfigError("Global.use_fp16: needs use_gpu and use_tensorrt")
            cfg.disable_gpu()
            if g.get("enable_mkldnn", True):
                cfg.enable_mkldnn()
            else:
                cfg.disable_mkldnn()
            cfg.set_cpu_math_library_num_threads(threads)
        cfg.switch_ir_optim(bool(g.get("ir_optim", True)))
        cfg.disable_glog_info()
        self.pred = inference.create_predictor(cfg)
        self.inp = self.pred.get_input_handle(self.pred.get_input_names()[0])
        self.out = self.pred.get_output_handle(self.pred.get_output_names()[0])

    def check_input(self, batch):
        shape = self.meta.get("image_shape")
        if shape and list(batch.shape[1:]) != list(shape):
            raise ConfigError(f"input of shape {list(batch.shape[1:])} but the model expects {shape} "
                              f"(image_shape in {os.path.join(self.model_dir, 'inference.yml')}); check PreProcess")
        if batch.ndim != 4:
            raise ConfigError(f"input must be a batch of CHW images, got shape {list(batch.shape)}")

    def run(self, batch):
        self.check_input(batch)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.use_onnx:
            return self.sess.run(None, {self.input_name: batch})[0]
        self.inp.reshape(list(batch.shape))
        self.inp.copy_from_cpu(batch)
        self.pred.run()
        return self.out.copy_to_cpu()


def deploy_settings(config):
    """The deploy config's ``Global`` section with defaults; unknown keys are an error."""
    unknown = [k for k in (config.get("Global") or {}) if k not in GLOBAL_DEFAULTS]
    if unknown:
        from ..utils.errors import nearest
        hint = nearest(unknown[0], GLOBAL_DEFAULTS)
        raise ConfigError(f"Global.{unknown[0]}: unknown key" + (f" (did you mean '{hint}'?)" if hint else ""))
    g = dict(GLOBAL_DEFAULTS)
    g.update(config.get("Global") or {})
    return g


def build_pipeline(config, meta, model_dir=None):
    """(preprocess, topk) for an exported model: the transforms recorded in its inference.yml (else the
    deploy config's PreProcess), and top-k with the label list of the deploy config's class_id_map_file
    (else the one recorded at export)."""
    recorded = meta.get("PreProcess")
    if recorded is not None:
        ops = (recorded or {}).get("transform_ops")
        if not ops:  # written by an export from before every export recorded its preprocessing
            where = os.path.join(model_dir, "inference.yml") if model_dir else "inference.yml"
            raise ConfigError(f"{where}: PreProcess.transform_ops is empty; export the model again with "
                              "tools/export_model.py (it records the Infer or else the evaluation transforms), or "
                              "write the model's transforms there")
    else:
        ops = (config.get("PreProcess") or {}).get("transform_ops")
        if not ops:
            raise ConfigError("PreProcess.transform_ops: required (or export the model with tools/export_model.py, "
                              "which records them in inference.yml)")
    topk_cfg = dict((config.get("PostProcess") or {}).get("Topk") or {})
    recorded = (meta.get("PostProcess") or {}).get("Topk") or {}
    labels = label_names(topk_cfg.get("class_id_map_file")) or recorded.get("label_list") or None
    topk = Topk(topk_cfg.get("topk", recorded.get("topk", 5)), labels, apply_softmax=not meta.get("softmax", True))
    return Preprocess(ops), topk


def load_deploy(config):
    """(settings, predictor, preprocess, topk) from a deploy config (deploy/configs/inference_cls.yaml)."""
    g = deploy_settings(config)
    predictor = Predictor(g, g["inference_model_dir"])
    preprocess, topk = build_pipeline(config, predictor.meta, predictor.model_dir)
    return g, predictor, preprocess, topk


def predict_folder(config):
    """predict_cls.py: returns the list of results (and prints one line per image)."""
    g, predictor, preprocess, topk = load_deploy(config)
    files = list_images(g["infer_imgs"], int(g.get("max_images") or 0))
    skipped = []

    def on_skip(f, why):
        skipped.append(f)
        logger.warning(f"skipped unreadable image {f}: {why}")
    results, t_pre, t_inf, t_post, n = [], 0.0, 0.0, 0.0, 0
    t0 = time.perf_counter()
    for batch, names in load_batches(files, preprocess, int(g["batch_size"]), on_skip):
        t1 = time.perf_counter()
        out = predictor.run(batch)
        t2 = time.perf_counter()
        res = topk(out.reshape(out.shape[0], -1), names)
        t3 = time.perf_counter()
        t_pre += t1 - t0
        t_inf += t2 - t1
        t_post += t3 - t2
        n += len(names)
        for r in res:
            print(format_result(r), flush=True)
        results += res
        t0 = time.perf_counter()
    if skipped:
        logger.warning(f"{len(skipped)} of {len(files)} images could not be read and were skipped")
    if g.get("benchmark") or g.get("enable_benchmark"):
        if n:
            print(f"timing per image over {n} images: preprocess {1000 * t_pre / n:.3f} ms, "
                  f"inference {1000 * t_inf / n:.3f} ms, postprocess {1000 * t_post / n:.3f} ms")
    return results
