"""tools/infer.py: dygraph prediction with the config's Infer section; same output lines as the
deployed predictor."""
import paddle
import paddle.nn.functional as F

from ..arch import build_model
from ..utils import device as dev
from ..utils.errors import ConfigError
from ..utils.logger import logger
from ..utils.save_load import load_pretrained
from .export import read_label_list
from .pipeline import Preprocess, Topk, format_result, list_images, load_batches


def infer(config):
    g = config.get("Global", {})
    dev.select_device(g.get("device", "auto"))
    dev.set_cpu_threads(g.get("cpu_threads", 0))
    infer_cfg = config.get("Infer") or {}
    if not infer_cfg.get("transforms"):
        raise ConfigError("Infer.transforms: required")
    arch = {k: v for k, v in config["Arch"].items() if k != "infer_add_softmax"}
    model = build_model(arch)
    if g.get("pretrained_model"):
        load_pretrained(model, g["pretrained_model"])
    else:
        logger.warning("Global.pretrained_model is not set: predicting with random weights")
    model.eval()
    post = infer_cfg.get("PostProcess") or {}
    lm = read_label_list(post.get("class_id_map_file"))
    labels = [lm.get(i, "") for i in range(max(lm) + 1)] if lm else None
    topk = Topk(post.get("topk", 5), labels)
    pre = Preprocess(infer_cfg["transforms"])
    files = list_images(infer_cfg.get("infer_imgs"))
    results = []
    for batch, names in load_batches(files, pre, int(infer_cfg.get("batch_size", 1)),
                                     lambda f, why: logger.warning(f"skipped unreadable image {f}: {why}")):
        with paddle.no_grad():
            out = model(paddle.to_tensor(batch))
            if isinstance(out, (list, tuple)):
                raise ConfigError(f"{config['Arch']['name']} is a dense model: tools/infer.py predicts classes")
            probs = F.softmax(out, axis=-1).numpy()
        res = topk(probs, names)
        for r in res:
            print(format_result(r), flush=True)
        results += res
    return results
