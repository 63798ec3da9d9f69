"""The training loop: its state in one object, the steps of one epoch, and the saves inside it.

The loop's running sums stay on the device; the host reads them only at log steps (and at the end
of the epoch), so no step waits for the device otherwise.
"""
import time
from dataclasses import dataclass, field

import paddle

from ..utils import device as dev
from ..utils.errors import RunError
from .log import Timer


class NonFiniteLossError(RunError):
    pass


@dataclass
class TrainState:
    """Where a run is. ``iteration`` > 0: ``epoch`` was interrupted after that many batches."""
    epoch: int = 1
    iteration: int = 0
    global_step: int = 0
    best_metric: float = 0.0
    best_epoch: int = 0

    def states(self, epoch, iteration):
        """A checkpoint's ``.pdstates`` content at (epoch, iteration), with the random streams."""
        return dict(epoch=epoch, metric=self.best_metric, best_epoch=self.best_epoch, global_step=self.global_step,
                    iter=iteration, rng=dev.rng_state())

    @classmethod
    def from_states(cls, states):
        iteration = int(states.get("iter", 0))
        # an epoch-end checkpoint resumes at the next epoch, a mid-epoch one inside its own
        epoch = int(states["epoch"]) + (0 if iteration else 1)
        return cls(epoch=epoch, iteration=iteration, global_step=int(states.get("global_step", 0)),
                   best_metric=float(states.get("metric", 0.0)), best_epoch=int(states.get("best_epoch", 0)))


@dataclass
class EpochTiming:
    """Reader and batch time over an epoch's steps after the first two (worker start-up)."""
    reader: float = 0.0
    batch: float = 0.0
    iters: int = 0


@dataclass
class SavePolicy:
    """Mid-epoch saves of ``latest``: every ``every_iters`` iterations and/or ``every_seconds``."""
    every_iters: int = 0
    every_seconds: float = 0.0
    last: float = field(default_factory=time.time)

    def due(self, it):
        if self.every_iters and (it + 1) % self.every_iters == 0:
            return True
        return bool(self.every_seconds) and time.time() - self.last >= self.every_seconds


class TrainLoop:
    """One epoch of steps over ``loader``: forward, loss, backward, an optimizer step every
    ``update_freq`` batches, the schedule, EMA, running sums, log lines, mid-epoch saves."""

    def __init__(self, model, optimizer, schedule, loader, dataset, batch_ops, loss, metrics, amp,
                 ema, logger, checkpoints, update_freq, print_step, save_policy, rank, iters=None):
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.loader, self.dataset, self.batch_ops = loader, dataset, batch_ops
        self.loss, self.metrics, self.amp, self.ema = loss, metrics, amp, ema
        self.logger, self.checkpoints = logger, checkpoints
        self.update_freq, self.print_step, self.save_policy, self.rank = update_freq, print_step, save_policy, rank
        self.iters = iters  # of an epoch (Global.iter_per_epoch); None: the loader's length

    def _optimizer_step(self):
        self.amp.step(self.optimizer)
        self.optimizer.clear_grad()
        if self.schedule is not None and not getattr(self.schedule, "by_epoch", False):
            self.schedule.step()

    def run_epoch(self, state, train_model, timing):
        """Train ``state.epoch`` from batch ``state.iteration`` on; returns the epoch's averages."""
        epoch, skip = state.epoch, state.iteration
        train_model.train()
        self.metrics.reset()
        self.loader.batch_sampler.set_epoch(epoch)
        self.loader.batch_sampler.skip = skip  # resumed mid-epoch: those batches are not even loaded
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        iters = self.iters or len(self.loader)
        loss_sums, n_seen = {}, 0
        first_bad = paddle.to_tensor(-1, dtype="int64")
        batch_timer, reader_timer = Timer(), Timer()
        tic = time.time()
        for it, (images, labels) in enumerate(self.loader, start=skip):
            reader_time = time.time() - tic
            reader_timer.add(reader_time)
            bs = images.shape[0]
            images, targets = self.batch_ops(images, labels, epoch) if self.batch_ops is not None else (images, labels)
            with self.amp.autocast():
                out = train_model(images)
            losses = self.loss(out, targets)
            loss = losses["loss"] / self.update_freq if self.update_freq > 1 else losses["loss"]
            self.amp.backward(loss)
            if (it + 1) % self.update_freq == 0:
                self._optimizer_step()
                if self.ema is not None:
                    self.ema.update(self.model)
                state.global_step += 1
            finite = paddle.isfinite(losses["loss"])
            first_bad = paddle.where((first_bad < 0) & ~finite, paddle.to_tensor(it, dtype="int64"), first_bad)
            for k, v in losses.items():
                v = v.detach() * bs
                loss_sums[k] = v if k not in loss_sums else loss_sums[k] + v
            n_seen += bs
            if self.metrics:
                with paddle.no_grad():
                    self.metrics.update(out, labels)
            batch_time = time.time() - tic
            batch_timer.add(batch_time)
            if it - skip >= 2:
                timing.reader += reader_time
                timing.batch += batch_time
                timing.iters += 1
            last = it == iters - 1
            if it % self.print_step == 0 or last:
                self._check_finite(first_bad, epoch)
                values = self._averages(loss_sums, n_seen)
                self.logger.step(epoch, it, self.optimizer.get_lr(), values, batch_timer, reader_timer, bs,
                                 state.global_step)
                batch_timer.reset()
                reader_timer.reset()
            if self.rank == 0 and not last and self.save_policy.due(it):
                self._check_finite(first_bad, epoch)
                self.checkpoints.save("latest", state.states(epoch, it + 1))
                self.save_policy.last = time.time()
            if last:
                break  # Global.iter_per_epoch below the loader's length: the epoch ends here
            tic = time.time()
        if self.schedule is not None and getattr(self.schedule, "by_epoch", False):
            self.schedule.step()
        self._check_finite(first_bad, epoch)
        state.iteration = 0
        return self._averages(loss_sums, n_seen)

    def _averages(self, loss_sums, n_seen):
        metrics = self.metrics.compute() if self.metrics else {}
        losses = {k: float(v.numpy()) / max(1, n_seen) for k, v in loss_sums.items()}
        return list(metrics.items()) + list(losses.items())

    def _check_finite(self, first_bad, epoch):
        bad = int(first_bad.numpy())
        if bad >= 0:
            raise NonFiniteLossError(f"non-finite loss at epoch {epoch}, iteration {bad}: stopping; the last "
                                     f"saved checkpoint in {self.checkpoints.directory} is kept (lower the learning rate?)")
