"""Evaluation on the deployment's fast path (``Global.eval_backend: inference | onnxruntime``): the
model is exported to a temporary folder and the deploy predictor runs it, batch by batch, in place of
the dygraph forward; losses and metrics are computed exactly as for dygraph."""
import shutil
import tempfile

import paddle

from ..inference.export import export_model
from ..inference.onnx import convert_to_onnx
from ..inference.predictor import Predictor
from ..utils.errors import ConfigError
from ..utils.logger import logger


class ExportedForward:
    """A callable from an image batch to the exported model's logits, for ``Evaluator.run``."""

    def __init__(self, model, sample_shape, backend, threads=0, use_gpu=False):
        model.eval()
        with paddle.no_grad():
            if isinstance(model(paddle.zeros([1] + list(sample_shape))), (list, tuple)):
                raise ConfigError("Global.eval_backend: the exported fast path evaluates classifiers; "
                                  "this model returns several outputs (use eval_backend: dygraph)")
        self.directory = tempfile.mkdtemp(prefix="ppcls_eval_")
        export_model(model, self.directory, sample_shape, add_softmax=False)  # logits, as dygraph
        if backend == "onnxruntime":
            convert_to_onnx(self.directory)
        self.predictor = Predictor({"use_onnx": backend == "onnxruntime", "cpu_num_threads": threads,
                                    "use_gpu": use_gpu}, self.directory)
        logger.info(f"evaluating the exported model with {'onnxruntime' if backend == 'onnxruntime' else 'Paddle Inference'}"
                    f" ({self.directory})")

    def __call__(self, images):
        return paddle.to_tensor(self.predictor.run(images.numpy()))

    def close(self):
        shutil.rmtree(self.directory, ignore_errors=True)
