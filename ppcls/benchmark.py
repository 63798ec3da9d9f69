"""Throughput measurements: training steps (dygraph, to_static, AMP), dygraph inference, the exported
model in Paddle Inference (oneDNN on CPU) and onnxruntime, the input pipeline, and a real training
epoch through the engine.

Every figure is the median of repeated timed windows after warm-up, in images per second; the export,
the predictor and the ONNX conversion are the deployment's own code.
"""
import resource
import statistics
import tempfile
import time

import numpy as np
import paddle

from .arch import build_model
from .inference.export import export_model
from .inference.onnx import convert_to_onnx
from .inference.predictor import Predictor
from .utils.logger import logger

TRAIN_MODES = {"train": "dygraph", "train_static": "to_static", "amp_o1": "amp_o1", "amp_o2": "amp_o2"}
EXPORTED_MODES = ("predictor", "predictor_no_onednn", "onnx")
ALL_MODES = list(TRAIN_MODES) + ["infer"] + list(EXPORTED_MODES)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_rate(step, batch, warmup, windows, iters):
    """(median images/s, median seconds per step) over ``windows`` windows of ``iters`` steps."""
    for _ in range(warmup):
        step()
    rates, times = [], []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        dt = time.perf_counter() - t0
        rates.append(batch * iters / dt)
        times.append(dt / iters)
    return statistics.median(rates), statistics.median(times)


def _first(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def bench_train(name, batch, image_size, mode="dygraph", class_num=1000, warmup=2, windows=3, iters=3):
    """One optimizer step per call on a fixed random batch (the reader is measured apart)."""
    use_amp = mode.startswith("amp")
    if use_amp and not paddle.device.is_compiled_with_cuda():
        return None, "AMP needs a GPU (Paddle's autocast has no effect on CPU)"
    model = build_model({"name": name, "class_num": class_num})
    model.train()
    opt = paddle.optimizer.Momentum(0.01, parameters=model.parameters(), momentum=0.9)
    if mode == "amp_o2":
        model, opt = paddle.amp.decorate(model, opt, level="O2")
    forward = paddle.jit.to_static(model, full_graph=True) if mode == "to_static" else model
    scaler = paddle.amp.GradScaler(init_loss_scaling=1024) if use_amp else None
    x = paddle.randn([batch, 3, image_size, image_size])
    y = paddle.randint(0, class_num, [batch])
    loss_fn = paddle.nn.CrossEntropyLoss()

    def step():
        if use_amp:
            with paddle.amp.auto_cast(level="O2" if mode == "amp_o2" else "O1"):
                loss = loss_fn(_first(forward(x)), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss_fn(_first(forward(x)), y).backward()
            opt.step()
        opt.clear_grad()
    rate, t = median_rate(step, batch, warmup, windows, iters)
    return {"images_per_s": rate, "step_s": t}, None


def bench_infer(name, batch, image_size, class_num=1000, warmup=2, windows=3, iters=5):
    model = build_model({"name": name, "class_num": class_num})
    model.eval()
    x = paddle.randn([batch, 3, image_size, image_size])

    def step():
        with paddle.no_grad():
            _first(model(x)).numpy()
    rate, t = median_rate(step, batch, warmup, windows, iters)
    return {"images_per_s": rate, "step_s": t}, None


def export_for_bench(name, image_size, class_num=1000, out_dir=None):
    """The model with random weights, exported as a deployment exports it."""
    model = build_model({"name": name, "class_num": class_num})
    return export_model(model, out_dir or tempfile.mkdtemp(prefix="ppcls_bench_"), [3, image_size, image_size],
                        meta={"model": name})


def bench_exported(model_dir, batch, image_size, threads, mode, warmup=2, windows=3, iters=5):
    """The deployed predictor on a fixed batch: Paddle Inference (with / without oneDNN) or onnxruntime."""
    settings = {"cpu_num_threads": threads, "enable_mkldnn": mode != "predictor_no_onednn", "use_onnx": mode == "onnx"}
    if mode == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return None, "onnxruntime is not installed"
        convert_to_onnx(model_dir)
    predictor = Predictor(settings, model_dir)
    x = np.random.rand(batch, 3, image_size, image_size).astype("float32")
    rate, t = median_rate(lambda: predictor.run(x), batch, warmup, windows, iters)
    return {"images_per_s": rate, "step_s": t}, None


def bench_data(config, batch, workers, epochs=3):
    """The training pipeline of ``config`` (a validated config: its file list and transform ops)
    through the engine's DataLoader: images/s over whole epochs after the first (worker start)."""
    from .data import build_dataloader
    section = config["DataLoader"]["Train"]
    section["sampler"]["batch_size"] = batch
    section["loader"] = {"num_workers": workers, "use_shared_memory": True, "persistent_workers": True}
    loader, dataset, _ = build_dataloader(section, "Train", config["Arch"].get("class_num", 1000), seed=0)
    rates = []
    for epoch in range(epochs + 1):
        dataset.set_epoch(epoch)
        t0 = time.perf_counter()
        n = sum(images.shape[0] for images, _ in loader)
        if epoch > 0:
            rates.append(n / (time.perf_counter() - t0))
    return {"images_per_s": statistics.median(rates)}, None


def bench_train_pipeline(config):
    """One real training epoch through the engine with ``config``'s pipeline (nothing saved):
    images/s and the reader's share of each step after the first steps."""
    from .engine import Engine
    config = dict(config)
    config.pop("EMA", None)
    engine = Engine(config, "train")
    engine.checkpoints.save = lambda *args, **kwargs: None  # measuring the steps, not the disk
    t = engine.train().timing
    if not t.iters:
        return None, "too few iterations"
    batch = config["DataLoader"]["Train"]["sampler"]["batch_size"]
    return {"images_per_s": batch * t.iters / t.batch, "step_s": t.batch / t.iters,
            "reader_s": t.reader / t.iters, "reader_share": t.reader / t.batch}, None


def run_benchmarks(name, batch, image_size, modes, threads, config=None, workers=2, windows=3, iters=3):
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(threads)
    rows, export_dir = [], None
    for mode in modes:
        if mode in TRAIN_MODES:
            res, note = bench_train(name, batch, image_size, TRAIN_MODES[mode], windows=windows, iters=iters)
        elif mode == "infer":
            res, note = bench_infer(name, batch, image_size, windows=windows, iters=iters)
        elif mode in EXPORTED_MODES:
            export_dir = export_dir or export_for_bench(name, image_size)
            res, note = bench_exported(export_dir, batch, image_size, threads, mode, windows=windows, iters=iters)
        elif mode == "data":
            res, note = (None, "needs -c CONFIG (a training config whose pipeline to measure)") if config is None \
                else bench_data(config, batch, workers)
        else:
            raise ValueError(mode)
        rows.append({"model": name, "mode": mode, "batch": batch, "threads": threads,
                     "images_per_s": None if res is None else round(res["images_per_s"], 2),
                     "step_s": None if res is None or "step_s" not in res else round(res["step_s"], 4),
                     "peak_rss_mb": round(peak_rss_mb(), 1), "note": note})
        logger.info(f"{name} {mode} bs{batch} threads{threads}: "
                    + (f"{res['images_per_s']:.2f} img/s" if res else f"skipped ({note})"))
    return rows
