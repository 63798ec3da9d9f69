"""The training / evaluation engine (PaddleClas's Engine, modes train and eval).

``Engine(config, mode)`` takes a validated config (``ppcls.schema.get_config``) and builds the model,
data, losses and metrics; ``train()`` runs the epochs with its collaborators (``TrainLoop`` for the
steps, ``Evaluator``, ``Checkpoints``, ``TrainLogger``, ``ModelEMA``) and returns a ``TrainResult``;
``eval()`` returns an ``EvalResult``.
"""
import contextlib
import os
import warnings
from dataclasses import dataclass

import paddle
import paddle.distributed as dist

from ..arch import DistillationModel, build_model, load_pretrained, output_class_num
from ..data import build_dataloader
from ..loss import build_loss
from ..metric import CombinedMetrics
from ..optimizer import build_optimizer
from ..utils import device as dev
from ..utils.config import dump_config
from ..utils.errors import ConfigError
from ..utils.logger import init_logger, logger
from ..utils.save_load import atomic_save
from .checkpoint import Checkpoints
from .ema import ModelEMA
from .evaluation import EvalResult, Evaluator
from .log import TrainLogger, visualdl_dir
from .loop import EpochTiming, SavePolicy, TrainLoop, TrainState

# Paddle warns on every BatchNorm forward in training mode that statistics are tracked; it is noise.
warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")

MODES = ("train", "eval")


@dataclass
class TrainResult:
    best_metric: float
    best_epoch: int
    last_eval: EvalResult = None
    timing: EpochTiming = None   # of the last epoch


class Amp:
    """Mixed precision as the AMP section asks, where the device has it (Paddle's autocast does
    nothing on CPU: it is turned off there, with a warning)."""

    def __init__(self, section, device):
        self.enabled = bool(section["use_amp"])
        self.level = str(section["level"]).upper()
        if self.level not in ("O1", "O2"):
            raise ConfigError(f"AMP.level: O1 or O2, got {section['level']!r}")
        self.dtype = section["dtype"]
        self.use_promote = bool(section["use_promote"])
        self.fp16_test = bool(section["use_fp16_test"])
        if self.enabled and device == "cpu":
            logger.warning("AMP.use_amp: mixed precision has no effect on CPU; training in float32")
            self.enabled = False
        self.scaler = None
        if self.enabled:
            self.scaler = paddle.amp.GradScaler(init_loss_scaling=float(section["scale_loss"]),
                                                use_dynamic_loss_scaling=bool(section["use_dynamic_loss_scaling"]))

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level=self.level, dtype=self.dtype, use_promote=self.use_promote)

    def eval_autocast(self):
        return self.autocast if self.enabled and self.fp16_test else None

    def backward(self, loss):
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer):
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def decorate(self, model, optimizer):
        if self.enabled and self.level == "O2":
            return paddle.amp.decorate(model, optimizer, level="O2", dtype=self.dtype, save_dtype="float32")
        return model, optimizer


def sync_batch_norm(model, use_sync_bn, world_size, device):
    """Arch.use_sync_bn: BatchNorm statistics over all workers when several GPUs train."""
    if not use_sync_bn:
        return model
    if world_size > 1 and device == "gpu":
        logger.info("Arch.use_sync_bn: BatchNorm layers synchronised across the workers (SyncBatchNorm)")
        return paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    logger.warning(f"Arch.use_sync_bn: needs several GPU workers; {world_size} {device} worker(s) train "
                   "with plain BatchNorm")
    return model


class Engine:
    def __init__(self, config, mode="train"):
        if mode not in MODES:
            raise ConfigError(f"mode: one of {', '.join(MODES)}, got {mode!r}")
        self.config, self.mode = config, mode
        g = self.settings = config["Global"]
        self.rank, self.world_size = dev.dist_info()
        self.arch_name = config["Arch"]["name"]
        self.output_dir = os.path.join(g["output_dir"], self.arch_name)
        init_logger(os.path.join(self.output_dir, f"{mode}.log"), g.get("log_ranks"))
        self.device = dev.select_device(g["device"])
        self.threads = dev.set_cpu_threads(g["cpu_threads"], self.world_size) if self.device == "cpu" else None
        if self.world_size > 1:
            dist.init_parallel_env()
        self.seed = g["seed"]
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
        self.class_num = output_class_num(config["Arch"])
        self.model = build_model(config["Arch"], training=mode == "train")
        if g["pretrained_model"]:
            load_pretrained(self.model, self.arch_name, g["pretrained_model"], where="Global.pretrained_model")
        self.eval_model = self._eval_model()
        self.amp = Amp(config["AMP"], self.device)
        self._build_data_and_losses()
        if mode == "train":
            self._build_optimization()

    def _eval_model(self):
        """What is evaluated, averaged by EMA and deployed: a DistillationModel's infer_model_name model alone."""
        return self.model.infer_model if isinstance(self.model, DistillationModel) else self.model

    def _build_data_and_losses(self):
        cfg, g = self.config, self.settings
        dl = cfg.get("DataLoader") or {}
        loader_args = dict(class_num=self.class_num, seed=self.seed, rank=self.rank, world_size=self.world_size,
                           skip_bad_images=g["skip_bad_images"], max_bad_images=g["max_bad_images"])
        self.train_loader = self.eval_loader = self.batch_ops = None
        if self.mode == "train":
            self.train_loader, self.train_dataset, self.batch_ops = build_dataloader(dl.get("Train"), "Train",
                                                                                     **loader_args)
        if dl.get("Eval") and (self.mode == "eval" or g["eval_during_train"]):
            self.eval_loader, self.eval_dataset, _ = build_dataloader(dl.get("Eval"), "Eval", **loader_args)
        if self.mode == "eval" and self.eval_loader is None:
            raise ConfigError("DataLoader.Eval: required for evaluation")
        loss_cfg = cfg.get("Loss") or {}
        self.train_loss = build_loss(loss_cfg.get("Train"), "Loss.Train") if self.mode == "train" else None
        if self.mode == "train" and self.train_loss is None:
            raise ConfigError("Loss.Train: required for training")
        metric_cfg = cfg.get("Metric") or {}
        train_metrics = metric_cfg.get("Train")
        if self.mode == "train" and train_metrics and self.batch_ops is not None:
            logger.warning("batch_transform_ops (mixup/cutmix) are on: train top-k metrics are not reported")
            train_metrics = None
        self.train_metrics = CombinedMetrics(train_metrics, "Metric.Train")
        self.evaluator = None
        if self.eval_loader is not None:
            self.evaluator = Evaluator(self.eval_loader, build_loss(loss_cfg.get("Eval"), "Loss.Eval"),
                                       CombinedMetrics(metric_cfg.get("Eval"), "Metric.Eval"), self.world_size,
                                       g["print_batch_step"], self.amp.eval_autocast())

    def _iters_per_epoch(self):
        """One pass over the train list, or fewer iterations where Global.iter_per_epoch asks (PaddleClas's
        key: its schedule and each epoch take that many steps; the rest of the list is not even loaded)."""
        g, full = self.settings, len(self.train_loader)
        wanted = g.get("iter_per_epoch")
        if wanted is None or wanted == full:
            return full
        if wanted > full:
            if not getattr(self, "_warned_iters", False):
                logger.warning(f"Global.iter_per_epoch={wanted} is more than one pass over the train list ({full} "
                               f"iterations): an epoch here is at most one pass, so it runs {full}")
                self._warned_iters = True
            return full
        return wanted

    def _build_optimization(self):
        """The optimizer and schedule, SyncBatchNorm / AMP decoration, EMA and the checkpoints."""
        g = self.settings
        iters = self._iters_per_epoch()
        self.update_freq = g["update_freq"]
        if self.update_freq > iters:
            logger.warning(f"Global.update_freq={self.update_freq} > iterations per epoch ({iters}): using 1")
            self.update_freq = 1
        model = sync_batch_norm(self.model, self.config["Arch"].get("use_sync_bn"), self.world_size, self.device)
        optimizer, self.schedule = build_optimizer(self.config["Optimizer"], model, g["epochs"],
                                                   max(1, iters // self.update_freq))
        self.model, self.optimizer = self.amp.decorate(model, optimizer)
        self.eval_model = self._eval_model()  # decorate may return another object
        self.ema = ModelEMA(self.eval_model, self.config["EMA"]["decay"]) if self.config.get("EMA") else None
        self.checkpoints = Checkpoints(self.output_dir, self.model, self.optimizer, self.ema, self.rank)

    # -- training -----------------------------------------------------------------------------
    def train(self):
        if self.mode != "train":
            raise ConfigError("Engine.train: build the engine with mode='train'")
        g = self.settings
        epochs, iters = g["epochs"], self._iters_per_epoch()
        schedule, ema = self.schedule, self.ema
        state, rng = TrainState(), None
        if g["checkpoints"]:
            states = self.checkpoints.restore(g["checkpoints"], self.arch_name)
            state, rng = TrainState.from_states(states), states.get("rng")
            logger.info(f"Finish load checkpoints from {states['loaded_from']} (resuming at epoch {state.epoch}"
                        + (f", iteration {state.iteration}" if state.iteration else "")
                        + f", best metric {state.best_metric})")
        train_model = paddle.jit.to_static(self.model, full_graph=True) if g["to_static"] else self.model
        if self.world_size > 1:
            train_model = paddle.DataParallel(train_model)
        log = TrainLogger(epochs, iters, type(schedule).__name__ if schedule is not None else "Const",
                          visualdl_dir(g["output_dir"], self.rank, g["use_visualdl"]),
                          memory_device=self.device if g.get("print_mem_info") else None)
        # the loop's model is the one EMA averages (a DistillationModel's student)
        loop = TrainLoop(self.eval_model, self.optimizer, schedule, self.train_loader, self.train_dataset,
                         self.batch_ops, self.train_loss, self.train_metrics, self.amp, ema, log, self.checkpoints,
                         self.update_freq, g["print_batch_step"], SavePolicy(g["save_interval_iters"], g["save_interval_seconds"]),
                         self.rank, iters)
        result = TrainResult(state.best_metric, state.best_epoch)
        # mid-epoch resume (and unseeded runs) continue the saved random streams; seeded runs
        # reseed at every epoch start, so an epoch-boundary resume replays exactly
        restore_rng = rng is not None and (state.iteration > 0 or self.seed is None)
        first = state.epoch
        try:
            for epoch in range(first, epochs + 1):
                state.epoch = epoch
                if epoch == first and restore_rng:
                    dev.set_rng_state(rng)
                elif self.seed is not None:
                    dev.seed_everything(self.seed * 1000 + epoch * 7 + self.rank)
                result.timing = EpochTiming()
                log.epoch(epoch, loop.run_epoch(state, train_model, result.timing))
                is_best = self._evaluate_epoch(state, ema, log, result)
                if self.rank == 0:
                    # one step, written once under latest and hard-linked under the other names
                    names = ["latest"] + (["best_model"] if is_best else []) \
                        + ([f"epoch_{epoch}"] if epoch % g["save_interval"] == 0 else [])
                    self.checkpoints.save(names, state.states(epoch, 0))
                    if is_best and self.eval_model is not self.model:
                        self._save_student("best_model")
        finally:
            log.close()
        bad = getattr(self.train_dataset, "bad_count", 0)
        if bad:
            logger.warning(f"{bad} unreadable training images were skipped (see the warnings above)")
        logger.info(f"best metric {state.best_metric} at epoch {state.best_epoch}")
        result.best_metric, result.best_epoch = state.best_metric, state.best_epoch
        return result

    def _save_student(self, prefix):
        """``<prefix>_student.pdparams``: a DistillationModel's infer_model_name model alone, loadable by
        that model's own config (PaddleClas saves the best model's student so)."""
        path = os.path.join(self.output_dir, f"{prefix}_student.pdparams")
        atomic_save(self.eval_model.state_dict(), path)
        logger.info(f"Already save {self.model.infer_model_name} model in {path}")

    def _evaluate_epoch(self, state, ema, log, result):
        """Evaluate after ``state.epoch`` when due; updates the best metric; True when it improved."""
        g, epoch = self.settings, state.epoch
        if self.evaluator is None or not g["eval_during_train"] or epoch % g["eval_interval"] \
                or epoch < g["start_eval_epoch"]:
            return False
        # every rank joins the gather when the confusion matrix goes to VisualDL (only rank 0 writes it)
        result.last_eval = self.evaluator.run(self.eval_model, epoch, collect=g["use_visualdl"])
        metric = result.last_eval.main
        ema_eval = None
        if ema is not None:
            ema_eval = self.evaluator.run(ema.model, epoch, tag="EMA ")
            metric = max(metric, ema_eval.main)
        improved = metric > state.best_metric
        if improved:
            state.best_metric, state.best_epoch = metric, epoch
        log.best(epoch, state.best_metric)
        log.evaluation(epoch, result.last_eval, ema_eval)
        if g["use_visualdl"] and self.rank == 0 and result.last_eval.outputs.ndim == 2:
            from ..visual.report import confusion_matrix, confusion_matrix_image
            outputs = result.last_eval.outputs
            cm = confusion_matrix(result.last_eval.labels, outputs.argmax(1), outputs.shape[1])
            log.image("eval/confusion_matrix", confusion_matrix_image(cm, self._class_names(), f"epoch {epoch}"), epoch)
        return improved

    # -- evaluation ---------------------------------------------------------------------------
    def _class_names(self):
        from ..inference.labels import label_names
        post = (self.config.get("Infer") or {}).get("PostProcess") or {}
        return label_names(post.get("class_id_map_file"))

    def _sample_images(self):
        """What the report's gallery shows per eval sample: a file path, or the image itself (CIFAR)."""
        ds = self.eval_dataset
        return ds.images if getattr(ds, "images", None) is not None else [s[0] for s in ds.samples]

    def eval(self):
        """Evaluate the model over the eval set (dygraph, or the exported graph with
        ``Global.eval_backend``); with ``Global.report_dir`` also write the evaluation report."""
        g = self.settings
        forward = self.eval_model
        if g["eval_backend"] != "dygraph":
            from .static_eval import ExportedForward
            sample = next(iter(self.eval_loader))[0]
            forward = ExportedForward(self.eval_model, list(sample.shape[1:]), g["eval_backend"], self.threads or 0,
                                      use_gpu=self.device == "gpu")
        try:
            result = self.evaluator.run(forward, 0, collect=bool(g["report_dir"]))
        finally:
            if forward is not self.eval_model:
                forward.close()
        if g["report_dir"] and self.rank == 0:
            from ..visual.report import write_report
            s = write_report(g["report_dir"], result.labels, result.outputs, self._class_names(), self._sample_images(),
                             num_classes=result.outputs.shape[1], logits=True)
            logger.info(f"evaluation report in {g['report_dir']}: top-1 {s['top1']:.5f}, macro F1 {s['macro_f1']:.5f} "
                        f"({', '.join(sorted(s['files']))})")
        return result
