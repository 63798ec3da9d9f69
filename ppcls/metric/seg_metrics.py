"""IoU and Dice of the finest output (threshold 0.5), accumulated on the device over the whole set."""
import paddle

from .registry import register_metric


class _Overlap:
    def __init__(self, threshold=0.5):
        self.threshold = float(threshold)
        self.reset()

    def reset(self):
        self.sums = paddle.zeros([3], dtype="float64")  # intersection, prediction area, target area

    def update(self, output, mask):
        p = output[0] if isinstance(output, (list, tuple)) else output
        pred = (p > self.threshold).astype("float64")
        t = (mask > 0.5).astype("float64")
        self.sums = self.sums + paddle.stack([(pred * t).sum(), pred.sum(), t.sum()])

    def state_tensors(self):
        return [self.sums]

    def set_state_tensors(self, tensors):
        self.sums = tensors[0]


@register_metric
class SegIoU(_Overlap):
    def compute(self):
        inter, p, t = (float(v) for v in self.sums.numpy())
        union = p + t - inter
        return {"iou": inter / union if union else 1.0}


@register_metric
class SegDice(_Overlap):
    def compute(self):
        inter, p, t = (float(v) for v in self.sums.numpy())
        return {"dice": 2 * inter / (p + t) if (p + t) else 1.0}
