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
from .pipeline import Preprocess, Topk, format_result, list_images, load_batches, result_savers

GLOBAL_DEFAULTS = {
    "infer_imgs": None, "inference_model_dir": "./inference", "batch_size": 1, "use_gpu": False, "gpu_mem": 8000,
    "enable_mkldnn": True, "cpu_num_threads": 0, "ir_optim": True, "use_tensorrt": False, "use_fp16": False,
    "use_onnx": False, "backend": "auto", "benchmark": False, "enable_benchmark": False, "max_images": 0,
    # the rest of PaddleClas's predict_cls.py keys
    "use_int8": False, "enable_profile": False, "use_npu": False, "use_xpu": False, "use_mlu": False,
    "model_name": None, "save_log_path": None,
}
BENCHMARK_ONLY = ("model_name", "save_log_path")  # they name and place the benchmark report


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
        if g.get("use_int8") and precision != "int8":
            raise ConfigError(f"Global.use_int8: True, but {model_dir} holds a {precision} model (make an INT8 one "
                              "with tools/quantize.py)")
        self.threads, self.precision = threads, precision
        if ("backend" in g) if announce is None else announce:  # a deploy config: say which backend runs and why
            logger.info(f"predictor backend: {LABELS[self.backend]} ({self.backend_reason}); {precision} model in "
                        f"{model_dir}, {threads} CPU threads")
        if self.use_onnx:
            for key in ("enable_profile", "use_npu", "use_xpu", "use_mlu"):
                if g.get(key):
                    logger.warning(f"Global.{key}: a Paddle Inference setting; this model runs in onnxruntime "
                                   "on the CPU")
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
        if g.get("use_gpu") and not _paddle_supports("gpu"):
            logger.warning("Global.use_gpu: this Paddle build has no CUDA (install paddlepaddle-gpu); "
                           "predicting on the CPU")
            g = dict(g, use_gpu=False)
        accelerator = None if g.get("use_gpu") else \
            next((d for d in ("npu", "xpu", "mlu") if g.get(f"use_{d}")), None)
        if accelerator is not None and not _paddle_supports(accelerator):
            logger.warning(f"Global.use_{accelerator}: this Paddle build has no {accelerator.upper()} support; "
                           "predicting on the CPU")
            accelerator = None
        if g.get("use_gpu"):
            cfg.enable_use_gpu(int(g.get("gpu_mem", 8000)), 0)
            if g.get("use_tensorrt"):
                precision = inference.PrecisionType.Half if g.get("use_fp16") else inference.PrecisionType.Float32
                cfg.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=int(g.get("batch_size", 1)),
                                           min_subgraph_size=30, precision_mode=precision)
        elif accelerator == "xpu":
            cfg.enable_xpu()
        elif accelerator is not None:
            cfg.enable_custom_device(accelerator)
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
        if g.get("enable_profile"):
            cfg.enable_profile()  # Paddle Inference prints its per-operator table when the predictor ends
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
    if not (g.get("benchmark") or g.get("enable_benchmark")):
        for key in BENCHMARK_ONLY:
            if g.get(key) is not None:
                logger.warning(f"Global.{key}: used by the benchmark report only; set Global.benchmark=True")
    return g


def _paddle_supports(device):
    import paddle
    if device == "gpu":
        return paddle.device.is_compiled_with_cuda()
    if device == "xpu":
        return paddle.device.is_compiled_with_xpu()
    return device in (paddle.device.get_all_custom_device_type() or [])


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
    savers = result_savers(config.get("PostProcess"))
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
        for save in savers:
            save(res)
        results += res
        t0 = time.perf_counter()
    if skipped:
        logger.warning(f"{len(skipped)} of {len(files)} images could not be read and were skipped")
    if g.get("benchmark") or g.get("enable_benchmark"):
        if n:
            print(f"timing per image over {n} images: preprocess {1000 * t_pre / n:.3f} ms, "
                  f"inference {1000 * t_inf / n:.3f} ms, postprocess {1000 * t_post / n:.3f} ms")
        if g.get("save_log_path"):
            write_benchmark_report(g["save_log_path"], g, predictor, n, (t_pre, t_inf, t_post),
                                   preprocess_shape(files, preprocess))
    return results


def preprocess_shape(files, preprocess):
    """The model input's CHW shape, from the first image that decodes."""
    from .pipeline import read_rgb
    for f in files:
        img = read_rgb(f)
        if img is not None:
            return list(preprocess(img).shape)
    return "dynamic"


def write_benchmark_report(path, g, predictor, n, times, shape):
    """Global.save_log_path: the benchmark report with the sections and field names of the auto_log
    report that PaddleClas's predict_cls.py writes there, so its benchmark scripts read it unchanged."""
    from ..utils.memory import peak_rss_bytes
    rss = peak_rss_bytes()
    per_image = [round(1000 * t / n, 4) if n else 0.0 for t in times]
    paddle_backend = predictor.backend != "onnxruntime"
    lines = [
        "----------------------- Conf info -----------------------",
        f"runtime_device: {'gpu' if g.get('use_gpu') else 'cpu'}",
        f"backend: {predictor.backend}",
        f"ir_optim: {bool(g.get('ir_optim', True))}",
        f"enable_tensorrt: {bool(g.get('use_tensorrt')) and paddle_backend}",
        f"enable_mkldnn: {bool(g.get('enable_mkldnn', True)) and paddle_backend and not g.get('use_gpu')}",
        f"cpu_math_library_num_threads: {predictor.threads}",
        "----------------------- Model info ----------------------",
        f"model_name: {g.get('model_name') or 'cls'}",
        f"precision: {'fp16' if g.get('use_fp16') else predictor.precision}",
        "----------------------- Data info -----------------------",
        f"batch_size: {g.get('batch_size', 1)}",
        f"input_shape: {shape}",
        f"data_num: {n}",
        "----------------------- Perf info -----------------------",
        f"cpu_rss(MB): {round(rss / 1024 ** 2, 4) if rss is not None else None}, gpu_rss(MB): None, gpu_util: None%",
        f"total time spent(s): {round(sum(times), 4)}",
        f"preprocess_time(ms): {per_image[0]}, inference_time(ms): {per_image[1]}, "
        f"postprocess_time(ms): {per_image[2]}",
    ]
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"[{stamp}] root INFO: {line}\n" for line in lines)
    logger.info(f"benchmark report written to {path}")
