"""tools/infer.py and ``ppcls predict``: prediction with the same preprocessing and output lines as
the deployed predictor, by the dygraph model or (``Global.eval_backend: inference | onnxruntime``) by
the model exported to a temporary folder and run by the deploy predictor."""
import shutil
import tempfile

import paddle
import paddle.nn.functional as F

from ..arch import DistillationModel, build_model, load_pretrained
from ..utils import device as dev
from ..utils.errors import ConfigError
from ..utils.logger import logger
from .labels import label_names
from .pipeline import Preprocess, Topk, format_result, list_images, load_batches
from .postprocess import DistillationPostProcess, build_postprocess


def _dygraph_probs(model, name):
    def probs(out):
        if isinstance(out, (list, tuple)):
            raise ConfigError(f"{name} is a dense model: prediction gives classes")
        return F.softmax(out, axis=-1).numpy()

    def run(batch):
        with paddle.no_grad():
            out = model(paddle.to_tensor(batch))
        # a DistillationModel: every model's probabilities, for its post-processing to choose from
        return {k: probs(v) for k, v in out.items()} if isinstance(out, dict) else probs(out)
    return run


def predict_images(model, files, transforms, topk=5, labels=None, batch_size=1, name="the model", run=None,
                   post=None):
    """Top-k results (and one printed line) per readable image; unreadable ones are skipped, counted.
    ``run``: batch -> class probabilities (default: the dygraph ``model`` and a softmax); ``post``: the
    post-processing (default: Topk with ``topk`` and ``labels``)."""
    if run is None:
        model.eval()
        run = _dygraph_probs(model, name)
    pre, post = Preprocess(transforms), post or Topk(topk, labels)
    results, skipped = [], []

    def on_skip(f, why):
        skipped.append(f)
        logger.warning(f"skipped unreadable image {f}: {why}")
    for batch, names in load_batches(files, pre, batch_size, on_skip):
        res = post(run(batch), names)
        for r in res:
            print(format_result(r), flush=True)
        results += res
    if skipped:
        logger.warning(f"{len(skipped)} of {len(files)} images could not be read and were skipped")
    return results


def model_from_config(config, purpose="predicting"):
    """(model in eval mode, Arch.name) of a config: its device and CPU threads set, the Arch built, the
    weights of Global.pretrained_model loaded (a warning without them)."""
    g = config.get("Global") or {}
    dev.select_device(g.get("device") or "auto")
    dev.set_cpu_threads(g.get("cpu_threads") or 0)
    arch = {k: v for k, v in config["Arch"].items() if k != "infer_add_softmax"}
    model = build_model(arch, training=False)
    if g.get("pretrained_model"):
        load_pretrained(model, arch["name"], g["pretrained_model"], where="Global.pretrained_model")
    else:
        logger.warning(f"Global.pretrained_model is not set: {purpose} with randomly initialised weights")
    model.eval()
    return model, arch["name"]


def infer(config):
    """tools/infer.py: the config's model and weights on ``Infer.infer_imgs``."""
    g = config["Global"]
    infer_cfg = config.get("Infer") or {}
    if not infer_cfg.get("transforms"):
        raise ConfigError("Infer.transforms: required")
    model, name = model_from_config(config)
    post = infer_cfg.get("PostProcess") or {}
    labels = label_names(post.get("class_id_map_file"))
    post_fn = build_postprocess(post, labels)
    exported_model = model
    if isinstance(model, DistillationModel):
        if not isinstance(post_fn, DistillationPostProcess):  # plain Topk: of the model the export keeps
            post_fn = DistillationPostProcess(model.infer_model_name, topk=post.get("topk") or 5, label_list=labels)
        exported_model = model.sub_model(post_fn.model_name)
        name = f"{name} {post_fn.model_name} ({model.arch_names[post_fn.model_name]})"
    files = list_images(infer_cfg.get("infer_imgs"))
    args = (files, infer_cfg["transforms"], post.get("topk", 5), labels, int(infer_cfg.get("batch_size", 1)), name)
    backend = g.get("eval_backend") or "dygraph"
    if backend == "dygraph":
        return predict_images(model, *args, post=post_fn)
    if backend not in ("inference", "onnxruntime"):
        raise ConfigError(f"Global.eval_backend: dygraph, inference or onnxruntime, got {backend!r}")
    with ExportedPredictor(exported_model, sample_shape(files, infer_cfg["transforms"]), backend,
                           int(g.get("cpu_threads") or 0), use_gpu=paddle.device.get_device().startswith("gpu"),
                           name=name) as exported:
        return predict_images(exported_model, *args, run=exported.run, post=post_fn)


def sample_shape(files, transforms):
    """[C, H, W] that ``transforms`` give the first readable image of ``files``."""
    from .pipeline import read_rgb
    pre = Preprocess(transforms)
    for f in files:
        img = read_rgb(f)
        if img is not None:
            return list(pre(img).shape)
    raise ConfigError(f"Infer.infer_imgs: none of the {len(files)} images can be read")


class ExportedPredictor:
    """The dygraph ``model`` exported (softmax added) to a temporary folder and run by the deploy
    predictor: Paddle Inference (``backend="inference"``) or onnxruntime. A context manager: the
    folder is removed on exit."""

    def __init__(self, model, sample_shape, backend, threads=0, use_gpu=False, name="the model", add_softmax=True,
                 purpose="predicting"):
        from .export import export_model
        from .predictor import Predictor, read_meta
        model.eval()
        self.directory = tempfile.mkdtemp(prefix="ppcls_exported_")
        try:
            export_model(model, self.directory, sample_shape, add_softmax=add_softmax, meta={"model": name})
            if read_meta(self.directory).get("dense_output"):
                raise ConfigError(f"Global.eval_backend: {name} returns several outputs; the exported fast path "
                                  "handles classifiers (use eval_backend: dygraph)")
            if backend == "onnxruntime":
                from .onnx import convert_to_onnx
                convert_to_onnx(self.directory)
            self.predictor = Predictor({"backend": "onnxruntime" if backend == "onnxruntime" else "paddle",
                                        "cpu_num_threads": threads, "use_gpu": use_gpu}, self.directory, announce=False)
        except BaseException:
            self.close()
            raise
        logger.info(f"{purpose} with the exported model in "
                    f"{'onnxruntime' if backend == 'onnxruntime' else 'Paddle Inference'} ({self.directory})")

    def run(self, batch):
        return self.predictor.run(batch)

    def close(self):
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

