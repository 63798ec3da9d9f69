"""The served model: the exported predictor, preprocessing and top-k of a deploy config, exactly as
deploy/python/predict_cls.py builds them (``ppcls.inference.predictor.load_deploy``)."""
import os

import numpy as np

from ..inference.predictor import load_deploy
from ..utils.errors import ConfigError


class ServedModel:
    """Built (and afterwards run) in the batcher's worker thread; ``preprocess`` is also called from
    the decode threads (the transform ops keep no state between calls)."""

    def __init__(self, config):
        self.settings, self.predictor, self.preprocess, self.topk = load_deploy(config)
        meta = self.predictor.meta
        model_dir = self.settings["inference_model_dir"]
        if meta.get("dense_output"):
            raise ConfigError(f"{model_dir}: {meta.get('model')} returns dense maps; the service classifies "
                              "images (top-k of one output vector per image)")
        from ..inference.backend import LABELS
        self.backend_label = f"{LABELS[self.predictor.backend]}, {meta.get('precision', 'fp32')}"
        self.name = meta.get("model") or os.path.basename(os.path.normpath(model_dir))
        shape = meta.get("image_shape")
        if not shape:  # a model exported without inference.yml: the shape the preprocessing gives
            shape = list(self.preprocess(np.full((256, 256, 3), 128, np.uint8)).shape)
        self.input_shape = [int(s) for s in shape]

    def infer(self, batch):
        out = self.predictor.run(batch)
        ranked = self.topk(out.reshape(out.shape[0], -1), [None] * out.shape[0])
        return [{"class_ids": r["class_ids"], "scores": r["scores"], "label_names": r["label_names"]} for r in ranked]

    def warmup(self, max_batch):
        """Every batch size the batcher can form runs once, so no request pays for a first run."""
        for n in range(1, int(max_batch) + 1):
            self.infer(np.zeros([n] + self.input_shape, np.float32))
