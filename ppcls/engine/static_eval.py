"""Evaluation on the deployment's fast path (``Global.eval_backend: inference | onnxruntime``): the
model is exported to a temporary folder and the deploy predictor runs it, batch by batch, in place of
the dygraph forward; losses and metrics are computed exactly as for dygraph."""
import paddle

from ..inference.infer import ExportedPredictor


class ExportedForward:
    """A callable from an image batch to the exported model's logits (no softmax, as dygraph), for
    ``Evaluator.run``."""

    def __init__(self, model, sample_shape, backend, threads=0, use_gpu=False):
        self.exported = ExportedPredictor(model, sample_shape, backend, threads, use_gpu, add_softmax=False,
                                          purpose="evaluating")

    def __call__(self, images):
        return paddle.to_tensor(self.exported.run(images.numpy()))

    def close(self):
        self.exported.close()
