"""Top-k accuracy accumulated on the device."""
import paddle

from .registry import register_metric


@register_metric
class TopkAcc:
    def __init__(self, topk=(1, 5)):
        self.topk = [int(k) for k in (topk if isinstance(topk, (list, tuple)) else [topk])]
        self.reset()

    def reset(self):
        self._sel = None
        self.correct = paddle.zeros([len(self.topk)], dtype="float64")
        self.count = paddle.zeros([1], dtype="float64")

    def update(self, output, label):
        if isinstance(output, (list, tuple)):
            output = output[0]
        k_max = min(max(self.topk), output.shape[-1])
        if label.ndim == 2 and label.shape[-1] == output.shape[-1] and label.dtype != paddle.int64:
            label = label.argmax(axis=-1)  # soft targets (mixup): the dominant class
        label = label.reshape([-1, 1]).astype("int64")
        _, idx = paddle.topk(output, k=k_max, axis=-1)
        hits = (idx == label).astype("float64")
        cum = paddle.cumsum(hits, axis=-1).sum(axis=0)  # hits within the first j+1 predictions
        if self._sel is None:  # built once: no host-to-device copy per batch
            self._sel = paddle.to_tensor([min(k, k_max) - 1 for k in self.topk], dtype="int64")
        self.correct = self.correct + paddle.gather(cum, self._sel)
        self.count = self.count + float(label.shape[0])

    def state_tensors(self):
        return [self.correct, self.count]

    def set_state_tensors(self, tensors):
        self.correct, self.count = tensors

    def compute(self):
        n = float(self.count.numpy()[0])
        c = self.correct.numpy()
        return {f"top{k}": (float(c[i]) / n if n else 0.0) for i, k in enumerate(self.topk)}
