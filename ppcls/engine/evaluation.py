"""Evaluation over the whole eval set: losses and metrics accumulated on the device, summed (never
averaged) across workers so every sample counts once, as in a single-process run."""
import time
from dataclasses import dataclass, field

import numpy as np
import paddle
import paddle.distributed as dist

from .log import Timer, eval_step_line, eval_summary_line


@dataclass
class EvalResult:
    main: float                      # the first metric (top-1), or minus the loss without metrics
    metrics: dict
    losses: dict
    samples: int
    # with collect=True: every sample's output row and label, in dataset order (all ranks gathered)
    outputs: np.ndarray = field(default=None, repr=False)
    labels: np.ndarray = field(default=None, repr=False)


def _gather_rows(local, world_size):
    """Rows of every rank, interleaved back into dataset order (rank r holds samples r, r + W, ...)."""
    if world_size <= 1:
        return local
    counts = []
    dist.all_gather(counts, paddle.to_tensor([local.shape[0]], dtype="int64"))
    counts = [int(c.numpy()[0]) for c in counts]
    longest = max(counts)
    padded = np.zeros((longest,) + local.shape[1:], dtype=local.dtype)
    padded[:local.shape[0]] = local
    parts = []
    dist.all_gather(parts, paddle.to_tensor(padded))
    out = np.zeros((sum(counts),) + local.shape[1:], dtype=local.dtype)
    for r, (part, n) in enumerate(zip(parts, counts)):
        out[r::world_size][:n] = part.numpy()[:n]
    return out


class Evaluator:
    def __init__(self, loader, loss, metrics, world_size=1, print_step=10, autocast=None):
        self.loader, self.loss, self.metrics = loader, loss, metrics
        self.world_size = world_size
        self.print_step = print_step
        self.autocast = autocast  # a context manager factory for fp16 evaluation, or None

    @paddle.no_grad()
    def run(self, forward, epoch=0, tag="", collect=False):
        """Evaluate ``forward`` (a model, or any callable from an image batch to outputs)."""
        was_training = getattr(forward, "training", False)
        if hasattr(forward, "eval"):
            forward.eval()
        self.metrics.reset()
        loss_sums, outputs, labels_seen = {}, [], []
        count = paddle.zeros([1], dtype="float64")
        iters = len(self.loader)
        batch_timer, reader_timer = Timer(), Timer()
        tic = time.time()
        for it, (images, labels) in enumerate(self.loader):
            reader_timer.add(time.time() - tic)
            bs = images.shape[0]
            if self.autocast is not None:
                with self.autocast():
                    out = forward(images)
            else:
                out = forward(images)
            if self.loss is not None:
                for k, v in self.loss(out, labels).items():
                    v = v.astype("float64") * bs
                    loss_sums[k] = v if k not in loss_sums else loss_sums[k] + v
            count = count + float(bs)
            self.metrics.update(out, labels)
            if collect:
                outputs.append((out[0] if isinstance(out, (list, tuple)) else out).astype("float32"))
                labels_seen.append(labels.reshape([-1]))
            batch_timer.add(time.time() - tic)
            if it % self.print_step == 0 and it < iters - 1:
                n = float(count.numpy()[0])
                current = {k: float(v.numpy()) / n for k, v in loss_sums.items()}
                eval_step_line(epoch, it, iters, list(current.items()) + list(self.metrics.compute().items()),
                               batch_timer, reader_timer, bs)
                batch_timer.reset()
                reader_timer.reset()
            tic = time.time()
        if self.world_size > 1:
            dist.all_reduce(count)
            for v in loss_sums.values():
                dist.all_reduce(v)
            self.metrics.all_reduce()
        total = float(count.numpy()[0])
        losses = {k: float(v.numpy().reshape(-1)[0]) / max(total, 1.0) for k, v in loss_sums.items()}
        metrics = self.metrics.compute()
        eval_summary_line(epoch, tag, list(losses.items()) + list(metrics.items()), int(total))
        if was_training:
            forward.train()
        main = next(iter(metrics.values())) if metrics else -losses.get("loss", 0.0)
        result = EvalResult(main, metrics, losses, int(total))
        if collect:
            result.outputs = _gather_rows(paddle.concat(outputs).numpy(), self.world_size)
            result.labels = _gather_rows(paddle.concat(labels_seen).numpy(), self.world_size)
        return result
