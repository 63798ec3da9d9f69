"""What a run reports: PaddleClas-format log lines and VisualDL scalars (rank 0 writes VisualDL).

    [Train][Epoch 3/120][Iter: 10/5005]lr(Cosine): 0.10000000, top1: ..., loss: ..., batch_cost: ...s,
        reader_cost: ..., ips: ... samples/s, eta: 1:02:03[, max_mem_reserved: ... MB, max_mem_allocated: ... MB]
    [Train][Epoch 3/120][Avg]top1: ..., loss: ...
    [Eval][Epoch 3][Avg]CELoss: ..., loss: ..., top1: ..., top5: ... (5000 samples)
    [Eval][Epoch 3][best metric: 0.76]
"""
import datetime
import os

from ..utils.logger import logger
from ..utils.memory import peak_rss_bytes


class Timer:
    """Running mean of durations since the last reset."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.total, self.count = 0.0, 0

    def add(self, v):
        self.total += v
        self.count += 1

    @property
    def avg(self):
        return self.total / self.count if self.count else 0.0


def peak_memory(device):
    """Global.print_mem_info's suffix of a train log line: the peak device memory on a GPU, in
    PaddleClas's words, else the peak resident memory of this process (the host's own counters: no
    device sync). None where the platform gives no reading."""
    if device == "gpu":
        import paddle
        mb = 1024 ** 2
        return (f", max_mem_reserved: {paddle.device.cuda.max_memory_reserved() / mb:.2f} MB, "
                f"max_mem_allocated: {paddle.device.cuda.max_memory_allocated() / mb:.2f} MB")
    peak = peak_rss_bytes()
    if peak is None:
        return None
    return f", max_mem_rss: {peak / 1024 ** 2:.2f} MB"


def _fmt(values):
    return ", ".join(f"{k}: {v:.5f}" for k, v in values)


class TrainLogger:
    def __init__(self, epochs, iters, sched_name, visualdl_dir=None, memory_device=None):
        """``memory_device``: Global.print_mem_info is on, training on that device."""
        self.epochs, self.iters, self.sched_name = epochs, iters, sched_name
        self.memory_device = memory_device
        if memory_device is not None and peak_memory(memory_device) is None:
            logger.warning("Global.print_mem_info: this platform gives no peak memory reading (pip install psutil)")
            self.memory_device = None
        self.writer = None
        if visualdl_dir:
            from visualdl import LogWriter
            self.writer = LogWriter(logdir=visualdl_dir)

    def step(self, epoch, it, lr, values, batch_timer, reader_timer, batch_size, global_step):
        bc = batch_timer.avg
        remaining = (self.iters - it - 1) + (self.epochs - epoch) * self.iters
        eta = datetime.timedelta(seconds=int(remaining * bc))
        ips = batch_size / bc if bc > 0 else 0.0
        logger.info(f"[Train][Epoch {epoch}/{self.epochs}][Iter: {it}/{self.iters}]lr({self.sched_name}): {lr:.8f}, "
                    + "".join(f"{k}: {v:.5f}, " for k, v in values)
                    + f"batch_cost: {bc:.5f}s, reader_cost: {reader_timer.avg:.5f}, ips: {ips:.5f} samples/s, eta: {eta}"
                    + (peak_memory(self.memory_device) if self.memory_device is not None else ""))
        self.scalar(f"lr({self.sched_name})", lr, global_step)
        for k, v in values:
            self.scalar(f"train_{k}", v, global_step)

    def epoch(self, epoch, values):
        logger.info(f"[Train][Epoch {epoch}/{self.epochs}][Avg]" + _fmt(values))

    def best(self, epoch, best):
        logger.info(f"[Eval][Epoch {epoch}][best metric: {best}]")

    def evaluation(self, epoch, result, ema=None):
        """VisualDL records of an epoch's evaluation (the log lines are the evaluator's)."""
        self.scalar("eval_acc", result.main, epoch)
        for k, v in list(result.metrics.items()) + list(result.losses.items()):
            self.scalar(f"eval_{k}", v, epoch)
        if ema is not None:
            self.scalar("eval_acc_ema", ema.main, epoch)
        if self.writer is not None:
            self.writer.flush()

    def image(self, tag, image, step):
        if self.writer is not None:
            self.writer.add_image(tag, image, step)

    def scalar(self, tag, value, step):
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def close(self):
        if self.writer is not None:
            self.writer.close()


def eval_step_line(epoch, it, iters, values, batch_timer, reader_timer, batch_size):
    logger.info(f"[Eval][Epoch {epoch}][Iter: {it}/{iters}]" + "".join(f"{k}: {v:.5f}, " for k, v in values)
                + f"batch_cost: {batch_timer.avg:.5f}s, reader_cost: {reader_timer.avg:.5f}, "
                f"ips: {batch_size / max(batch_timer.avg, 1e-9):.5f} images/sec")


def eval_summary_line(epoch, tag, values, samples):
    logger.info(f"[Eval][Epoch {epoch}][Avg]{tag}" + _fmt(values) + f" ({samples} samples)")


def visualdl_dir(output_root, rank, enabled):
    return os.path.join(output_root, "vdl") if enabled and rank == 0 else None
