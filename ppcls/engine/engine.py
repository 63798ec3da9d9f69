"""The training / evaluation engine (PaddleClas's Engine, modes train and eval)."""
import datetime
import math
import os
import time
import warnings

import numpy as np
import paddle
import paddle.distributed as dist

from ..arch import build_model
from ..data import build_dataloader
from ..loss import build_loss
from ..metric import CombinedMetrics
from ..optimizer import build_optimizer
from ..utils import device as dev
from ..utils.config import dump_config
from ..utils.errors import ConfigError
from ..utils.logger import init_logger, logger
from ..utils.save_load import load_pretrained, load_state_file
from .checkpoint import load_checkpoint, portable_optimizer_state, restore_optimizer_state, save_checkpoint
from .ema import ModelEMA


# Paddle warns on every BatchNorm forward in training mode that statistics are tracked; it is noise.
warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")


class NonFiniteLossError(ConfigError):
    pass


class _Timer:
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


class Engine:
    def __init__(self, config, mode="train"):
        if mode not in ("train", "eval", "infer", "export"):
            raise ValueError(mode)
        self.config = config
        self.mode = mode
        g = config.setdefault("Global", {})
        self.g = g
        self.rank, self.world_size = dev.dist_info()
        self.arch_name = config["Arch"]["name"]
        self.output_dir = os.path.join(g.get("output_dir", "./output/"), self.arch_name)
        init_logger(os.path.join(self.output_dir, f"{mode}.log") if mode in ("train", "eval") else None)
        self.device = dev.select_device(g.get("device", "auto"))
        self.threads = dev.set_cpu_threads(g.get("cpu_threads", 0), self.world_size) if self.device == "cpu" else None
        if self.world_size > 1:
            dist.init_parallel_env()
        seed = g.get("seed")
        self.seed = None if seed is None else int(seed)
        if self.seed is not None:
            dev.seed_everything(self.seed + self.rank)
            if self.world_size > 1:
                logger.info(f"Set random seed to ({self.seed} + $PADDLE_TRAINER_ID) for different trainer")
        logger.info(f"train with paddle {paddle.__version__} and device {paddle.get_device()}"
                    + (f" ({self.threads} CPU threads)" if self.threads else "")
                    + (f", {self.world_size} workers" if self.world_size > 1 else ""))
        if mode == "train":
            for line in dump_config(config):
                logger.info(line)
        self.class_num = config["Arch"].get("class_num", 1000)
        self.model = build_model(config["Arch"])
        if g.get("pretrained_model"):
            load_pretrained(self.model, g["pretrained_model"])
        self._build_amp(config.get("AMP"))
        if mode in ("train", "eval"):
            self._build_data_and_losses()

    # -- construction -----------------------------------------------------------------------
    def _build_amp(self, amp):
        amp = amp or {}
        self.use_amp = bool(amp.get("use_amp", False)) if amp else False
        self.amp_level = str(amp.get("level", "O1")).upper()
        if self.amp_level not in ("O1", "O2"):
            raise ConfigError(f"AMP.level: O1 or O2, got {amp.get('level')!r}")
        self.amp_dtype = amp.get("dtype", "float16")
        self.use_fp16_test = bool(amp.get("use_fp16_test", False))
        if self.use_amp and self.device == "cpu":
            logger.warning("AMP.use_amp: mixed precision has no effect on CPU; training in float32")
            self.use_amp = False
        self.scaler = None
        if self.use_amp:
            self.scaler = paddle.amp.GradScaler(init_loss_scaling=float(amp.get("scale_loss", 65536.0)),
                                                use_dynamic_loss_scaling=bool(amp.get("use_dynamic_loss_scaling", True)))

    def _build_data_and_losses(self):
        cfg, g = self.config, self.g
        dl = cfg.get("DataLoader") or {}
        skip = g.get("skip_bad_images", True)
        max_bad = g.get("max_bad_images", 1000)
        self.train_loader = self.eval_loader = None
        if self.mode == "train":
            self.train_loader, self.train_dataset, self.batch_ops = build_dataloader(
                dl.get("Train"), "Train", self.class_num, self.seed, self.rank, self.world_size, skip, max_bad)
        if dl.get("Eval") and (self.mode == "eval" or g.get("eval_during_train", True)):
            self.eval_loader, self.eval_dataset, _ = build_dataloader(
                dl.get("Eval"), "Eval", self.class_num, self.seed, self.rank, self.world_size, skip, max_bad)
        if self.mode == "eval" and self.eval_loader is None:
            raise ConfigError("DataLoader.Eval: required for evaluation")
        loss_cfg = cfg.get("Loss") or {}
        self.train_loss = build_loss(loss_cfg.get("Train"), "Loss.Train") if self.mode == "train" else None
        self.eval_loss = build_loss(loss_cfg.get("Eval"), "Loss.Eval")
        if self.mode == "train" and self.train_loss is None:
            raise ConfigError("Loss.Train: required for training")
        metric_cfg = cfg.get("Metric") or {}
        train_metrics = metric_cfg.get("Train")
        if self.mode == "train" and train_metrics and self.batch_ops is not None:
            logger.warning("batch_transform_ops (mixup/cutmix) are on: train top-k metrics are not reported")
            train_metrics = None
        self.train_metrics = CombinedMetrics(train_metrics, "Metric.Train")
        self.eval_metrics = CombinedMetrics(metric_cfg.get("Eval"), "Metric.Eval")

    # -- helpers ------------------------------------------------------------------------------
    def _forward(self, model, images):
        if self.use_amp:
            with paddle.amp.auto_cast(level=self.amp_level, dtype=self.amp_dtype):
                return model(images)
        return model(images)

    @staticmethod
    def _sched_name(lr):
        return type(lr).__name__ if lr is not None else "Const"

    def _lr_value(self):
        return self.optimizer.get_lr()

    # -- training -----------------------------------------------------------------------------
    def train(self):
        g = self.g
        epochs = int(g.get("epochs", 1))
        iters = len(self.train_loader)
        update_freq = int(g.get("update_freq", 1))
        if update_freq > iters:
            logger.warning(f"Global.update_freq={update_freq} > iterations per epoch ({iters}): using 1")
            update_freq = 1
        self.optimizer, self.lr_sched = build_optimizer(self.config["Optimizer"], self.model, epochs,
                                                        max(1, iters // update_freq))
        if self.use_amp and self.amp_level == "O2":
            self.model, self.optimizer = paddle.amp.decorate(self.model, self.optimizer, level="O2",
                                                             dtype=self.amp_dtype, save_dtype="float32")
        ema = ModelEMA(self.model, self.config["EMA"].get("decay", 0.9999)) if self.config.get("EMA") else None
        start_epoch, best, best_epoch, global_step = 1, 0.0, 0, 0
        resume_iter, rng = 0, None
        if g.get("checkpoints"):
            model_state, opt_state, states, ema_state = load_checkpoint(g["checkpoints"])
            self._check_fits(model_state, g["checkpoints"] + ".pdparams")
            self.model.set_state_dict(model_state)
            self.optimizer.set_state_dict(restore_optimizer_state(opt_state, self.model))
            if ema is not None and ema_state is not None:
                ema.set_state_dict(ema_state)
            best = float(states.get("metric", 0.0))
            best_epoch = int(states.get("best_epoch", 0))
            global_step = int(states.get("global_step", 0))
            resume_iter = int(states.get("iter", 0))
            start_epoch = int(states["epoch"]) + (0 if resume_iter else 1)
            rng = states.get("rng")
            logger.info(f"Finish load checkpoints from {states['loaded_from']} (resuming at epoch {start_epoch}"
                        + (f", iteration {resume_iter}" if resume_iter else "") + f", best metric {best})")
        model = self.model
        if g.get("to_static"):
            model = paddle.jit.to_static(model, full_graph=True)
        if self.world_size > 1:
            model = paddle.DataParallel(model)
        self.train_model = model
        writer = None
        if g.get("use_visualdl") and self.rank == 0:
            from visualdl import LogWriter
            writer = LogWriter(logdir=os.path.join(g.get("output_dir", "./output/"), "vdl"))
        print_step = int(g.get("print_batch_step", 10))
        save_iters = int(g.get("save_interval_iters", 0) or 0)
        save_seconds = float(g.get("save_interval_seconds", 0) or 0)
        self._last_time_save = time.time()
        try:
            # mid-epoch resume (and unseeded runs) continue the saved random streams; seeded runs
            # reseed at every epoch start, so an epoch-boundary resume replays exactly
            restore_rng = rng is not None and (resume_iter > 0 or self.seed is None)
            for epoch in range(start_epoch, epochs + 1):
                if epoch == start_epoch and restore_rng:
                    dev.set_rng_state(rng)
                elif self.seed is not None:
                    dev.seed_everything(self.seed * 1000 + epoch * 7 + self.rank)
                global_step = self._train_epoch(epoch, epochs, iters, update_freq, print_step, writer, ema,
                                                global_step, best, best_epoch,
                                                resume_iter if epoch == start_epoch else 0, save_iters, save_seconds)
                do_eval = self.eval_loader is not None and g.get("eval_during_train", True) and \
                    epoch % int(g.get("eval_interval", 1)) == 0 and epoch >= int(g.get("start_eval_epoch", 0))
                is_best = False
                if do_eval:
                    metric = self.evaluate(epoch)
                    if ema is not None:
                        metric_ema = self.evaluate(epoch, model=ema.model, tag="EMA ")
                        if writer is not None:
                            writer.add_scalar("eval_acc_ema", metric_ema, epoch)
                        metric = max(metric, metric_ema)
                    if metric > best:
                        best, best_epoch, is_best = metric, epoch, True
                    logger.info(f"[Eval][Epoch {epoch}][best metric: {best}]")
                    if writer is not None:
                        writer.add_scalar("eval_acc", self._last_eval["_main"], epoch)
                        for k, v in self._last_eval.items():
                            if k != "_main":
                                writer.add_scalar(f"eval_{k}", v, epoch)
                        writer.flush()
                if self.rank == 0:
                    states = dict(epoch=epoch, metric=best, best_epoch=best_epoch, global_step=global_step,
                                  iter=0, rng=dev.rng_state())
                    if is_best:
                        self._save("best_model", states, ema)
                    if epoch % int(g.get("save_interval", 1)) == 0:
                        self._save(f"epoch_{epoch}", states, ema)
                    self._save("latest", states, ema)
        finally:
            if writer is not None:
                writer.close()
        bad = getattr(self.train_dataset, "bad_count", 0)
        if bad:
            logger.warning(f"{bad} unreadable training images were skipped (see the warnings above)")
        logger.info(f"best metric {best} at epoch {best_epoch}")
        return best

    def _check_fits(self, state, path):
        target = self.model.state_dict()
        common = [k for k in target if k in state]
        bad = [k for k in common if list(np.shape(state[k])) != list(target[k].shape)]
        if not common or bad or len(common) < len(target):
            raise ConfigError(f"{path} is not a checkpoint of {self.arch_name} with this Arch config "
                              f"({len(common)}/{len(target)} keys match, {len(bad)} mis-shaped)")

    def _save(self, name, states, ema):
        prefix = os.path.join(self.output_dir, name)
        opt_state = portable_optimizer_state(self.optimizer.state_dict(), self.model)
        save_checkpoint(prefix, self.model.state_dict(), opt_state, states,
                        ema.state_dict() if ema is not None else None)
        logger.info(f"Already save model in {prefix}")

    def _train_epoch(self, epoch, epochs, iters, update_freq, print_step, writer, ema, global_step,
                     best, best_epoch, skip_iters, save_iters, save_seconds):
        model = self.train_model
        model.train()
        self.train_metrics.reset()
        sampler = self.train_loader.batch_sampler
        sampler.set_epoch(epoch)
        sampler.skip = skip_iters  # resumed mid-epoch: those batches are not even loaded
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(epoch)
        loss_sums, n_seen = {}, 0
        first_bad = paddle.to_tensor(-1, dtype="int64")
        batch_timer, reader_timer = _Timer(), _Timer()
        # whole-epoch reader/batch time after the first iterations (worker start-up), for benchmarks
        self.epoch_timing = {"reader": 0.0, "batch": 0.0, "iters": 0}
        tic = time.time()
        sched_name = self._sched_name(self.lr_sched)
        for it, (images, labels) in enumerate(self.train_loader, start=skip_iters):
            reader_time = time.time() - tic
            reader_timer.add(reader_time)
            bs = images.shape[0]
            if self.batch_ops is not None:
                images, targets = self.batch_ops(images, labels, epoch)
            else:
                targets = labels
            out = self._forward(model, images)
            losses = self.train_loss(out, targets)
            loss = losses["loss"]
            if update_freq > 1:
                loss = loss / update_freq
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
            if (it + 1) % update_freq == 0:
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.optimizer.clear_grad()
                if self.lr_sched is not None and not getattr(self.lr_sched, "by_epoch", False):
                    self.lr_sched.step()
                if ema is not None:
                    ema.update(self.model)
                global_step += 1
            # running sums stay on the device: no host sync outside log steps
            finite = paddle.isfinite(losses["loss"])
            first_bad = paddle.where((first_bad < 0) & ~finite, paddle.to_tensor(it, dtype="int64"), first_bad)
            for k, v in losses.items():
                v = v.detach() * bs
                loss_sums[k] = v if k not in loss_sums else loss_sums[k] + v
            n_seen += bs
            if self.train_metrics:
                with paddle.no_grad():
                    self.train_metrics.update(out, labels)
            batch_time = time.time() - tic
            batch_timer.add(batch_time)
            if it - skip_iters >= 2:
                self.epoch_timing["reader"] += reader_time
                self.epoch_timing["batch"] += batch_time
                self.epoch_timing["iters"] += 1
            last = it == iters - 1
            if it % print_step == 0 or last:
                self._check_finite(first_bad, epoch)
                self._log_train(epoch, epochs, it, iters, sched_name, loss_sums, n_seen, batch_timer,
                                reader_timer, bs, global_step, writer)
                batch_timer.reset()
                reader_timer.reset()
            if self.rank == 0 and not last and ((save_iters and (it + 1) % save_iters == 0) or
                                                (save_seconds and time.time() - self._last_time_save >= save_seconds)):
                self._check_finite(first_bad, epoch)
                states = dict(epoch=epoch, metric=best, best_epoch=best_epoch, global_step=global_step,
                              iter=it + 1, rng=dev.rng_state())
                self._save("latest", states, ema)
                self._last_time_save = time.time()
            tic = time.time()
        if self.lr_sched is not None and getattr(self.lr_sched, "by_epoch", False):
            self.lr_sched.step()
        self._check_finite(first_bad, epoch)
        avg = {k: float(v.numpy()) / max(1, n_seen) for k, v in loss_sums.items()}
        metrics = self.train_metrics.compute() if self.train_metrics else {}
        parts = [f"{k}: {v:.5f}" for k, v in list(metrics.items()) + list(avg.items())]
        logger.info(f"[Train][Epoch {epoch}/{epochs}][Avg]" + ", ".join(parts))
        return global_step

    def _check_finite(self, first_bad, epoch):
        bad = int(first_bad.numpy())
        if bad >= 0:
            raise NonFiniteLossError(f"non-finite loss at epoch {epoch}, iteration {bad}: stopping; the last "
                                     f"saved checkpoint in {self.output_dir} is kept (lower the learning rate?)")

    def _log_train(self, epoch, epochs, it, iters, sched_name, loss_sums, n_seen, batch_timer, reader_timer,
                   bs, global_step, writer):
        lr = self._lr_value()
        metrics = self.train_metrics.compute() if self.train_metrics else {}
        losses = {k: float(v.numpy()) / max(1, n_seen) for k, v in loss_sums.items()}
        vals = list(metrics.items()) + list(losses.items())
        bc = batch_timer.avg
        remaining = (iters - it - 1) + (epochs - epoch) * iters
        eta = datetime.timedelta(seconds=int(remaining * bc))
        ips = bs / bc if bc > 0 else 0.0
        logger.info(f"[Train][Epoch {epoch}/{epochs}][Iter: {it}/{iters}]lr({sched_name}): {lr:.8f}, "
                    + "".join(f"{k}: {v:.5f}, " for k, v in vals)
                    + f"batch_cost: {bc:.5f}s, reader_cost: {reader_timer.avg:.5f}, ips: {ips:.5f} samples/s, eta: {eta}")
        if writer is not None:
            writer.add_scalar(f"lr({sched_name})", lr, global_step)
            for k, v in vals:
                writer.add_scalar(f"train_{k}", v, global_step)

    # -- evaluation ---------------------------------------------------------------------------
    @paddle.no_grad()
    def evaluate(self, epoch=0, model=None, tag=""):
        model = model if model is not None else self.model
        was_training = model.training
        model.eval()
        self.eval_metrics.reset()
        loss_sums = {}
        count = paddle.zeros([1], dtype="float64")
        iters = len(self.eval_loader)
        print_step = int(self.g.get("print_batch_step", 10))
        batch_timer, reader_timer = _Timer(), _Timer()
        tic = time.time()
        for it, (images, labels) in enumerate(self.eval_loader):
            reader_timer.add(time.time() - tic)
            bs = images.shape[0]
            if self.use_amp and self.use_fp16_test:
                with paddle.amp.auto_cast(level=self.amp_level, dtype=self.amp_dtype):
                    out = model(images)
            else:
                out = model(images)
            if self.eval_loss is not None:
                for k, v in self.eval_loss(out, labels).items():
                    v = v.astype("float64") * bs
                    loss_sums[k] = v if k not in loss_sums else loss_sums[k] + v
            count = count + float(bs)
            self.eval_metrics.update(out, labels)
            batch_timer.add(time.time() - tic)
            if it % print_step == 0 and it < iters - 1:
                m = self.eval_metrics.compute()
                cur = {k: float(v.numpy()) / float(count.numpy()[0]) for k, v in loss_sums.items()}
                logger.info(f"[Eval][Epoch {epoch}][Iter: {it}/{iters}]"
                            + "".join(f"{k}: {v:.5f}, " for k, v in list(cur.items()) + list(m.items()))
                            + f"batch_cost: {batch_timer.avg:.5f}s, reader_cost: {reader_timer.avg:.5f}, "
                            f"ips: {bs / max(batch_timer.avg, 1e-9):.5f} images/sec")
                batch_timer.reset()
                reader_timer.reset()
            tic = time.time()
        # every sample counted once across workers: sum counts and sums, never average means
        if self.world_size > 1:
            dist.all_reduce(count)
            for v in loss_sums.values():
                dist.all_reduce(v)
            self.eval_metrics.all_reduce()
        total = float(count.numpy()[0])
        losses = {k: float(v.numpy()[0] if v.ndim else v.numpy()) / max(total, 1.0) for k, v in loss_sums.items()}
        metrics = self.eval_metrics.compute()
        logger.info(f"[Eval][Epoch {epoch}][Avg]{tag}" + ", ".join(f"{k}: {v:.5f}" for k, v in
                                                                   list(losses.items()) + list(metrics.items()))
                    + f" ({int(total)} samples)")
        if was_training:
            model.train()
        main = next(iter(metrics.values())) if metrics else -losses.get("loss", 0.0)
        self._last_eval = dict(_main=main, **{k: v for k, v in metrics.items()}, **losses)
        self.eval_result = dict(samples=int(total), **metrics, **losses)
        return main

    def eval(self):
        return self.evaluate(0)
