"""tools/infer.py and ``ppcls predict``: dygraph prediction with the same preprocessing and output
lines as the deployed predictor."""
import paddle
import paddle.nn.functional as F

from ..arch import build_model
from ..utils import device as dev
from ..utils.errors import ConfigError
from ..utils.logger import logger
from .labels import label_names
from .pipeline import Preprocess, Topk, format_result, list_images, load_batches


def predict_images(model, files, transforms, topk=5, labels=None, batch_size=1, name="the model"):
    """Top-k results (and one printed line) per readable image; unreadable ones are skipped, counted."""
    model.eval()
    pre, post = Preprocess(transforms), Topk(topk, labels)
    results, skipped = [], []

    def on_skip(f, why):
        skipped.append(f)
        logger.warning(f"skipped unreadable image {f}: {why}")
    for batch, names in load_batches(files, pre, batch_size, on_skip):
        with paddle.no_grad():
            out = model(paddle.to_tensor(batch))
        if isinstance(out, (list, tuple)):
            raise ConfigError(f"{name} is a dense model: prediction gives classes")
        res = post(F.softmax(out, axis=-1).numpy(), names)
        for r in res:
            print(format_result(r), flush=True)
        results += res
    if skipped:
        logger.warning(f"{len(skipped)} of {len(files)} images could not be read and were skipped")
    return results


def infer(config):
    """tools/infer.py: the config's model and weights on ``Infer.infer_imgs``."""
    g = config["Global"]
    dev.select_device(g.get("device") or "auto")
    dev.set_cpu_threads(g.get("cpu_threads") or 0)
    infer_cfg = config.get("Infer") or {}
    if not infer_cfg.get("transforms"):
        raise ConfigError("Infer.transforms: required")
    arch = {k: v for k, v in config["Arch"].items() if k != "infer_add_softmax"}
    model = build_model(arch)
    if g.get("pretrained_model"):
        from ..arch.weights import load_weights
        load_weights(model, arch["name"], g["pretrained_model"], where="Global.pretrained_model")
    else:
        logger.warning("Global.pretrained_model is not set: predicting with random weights")
    post = infer_cfg.get("PostProcess") or {}
    return predict_images(model, list_images(infer_cfg.get("infer_imgs")), infer_cfg["transforms"], post.get("topk", 5),
                          label_names(post.get("class_id_map_file")), int(infer_cfg.get("batch_size", 1)), arch["name"])
