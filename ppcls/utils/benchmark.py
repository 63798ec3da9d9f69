"""Throughput measurements: training steps (dygraph, to_static, AMP), dygraph inference, the exported
Paddle Inference predictor (oneDNN on CPU), onnxruntime, and the input pipeline.

Every figure is the median of repeated timed windows after warm-up, in images per second.
"""
import os
import resource
import statistics
import tempfile
import time

import numpy as np
import paddle

from .logger import logger


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median_rate(step, batch, warmup, windows, iters):
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


def _build(name, class_num, image_size):
    from ..arch import build_model
    return build_model({"name": name, "class_num": class_num})


def bench_train(name, batch, image_size, mode="dygraph", class_num=1000, warmup=2, windows=3, iters=3):
    """One optimizer step per call on a fixed random batch (reader cost is measured separately)."""
    model = _build(name, class_num, image_size)
    model.train()
    opt = paddle.optimizer.Momentum(0.01, parameters=model.parameters(), momentum=0.9)
    x = paddle.randn([batch, 3, image_size, image_size])
    y = paddle.randint(0, class_num, [batch])
    loss_fn = paddle.nn.CrossEntropyLoss()
    forward = model
    if mode == "to_static":
        forward = paddle.jit.to_static(model, full_graph=True)
    use_amp = mode.startswith("amp")
    if use_amp and not paddle.device.is_compiled_with_cuda():
        return None, "AMP needs a GPU (Paddle's autocast has no effect on CPU)"
    scaler = paddle.amp.GradScaler(init_loss_scaling=1024) if use_amp else None
    level = "O2" if mode == "amp_o2" else "O1"
    if mode == "amp_o2":
        model, opt = paddle.amp.decorate(model, opt, level="O2")
        forward = model

    def step():
        if use_amp:
            with paddle.amp.auto_cast(level=level):
                out = forward(x)
                loss = loss_fn(out if not isinstance(out, list) else out[0], y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            out = forward(x)
            loss = loss_fn(out if not isinstance(out, list) else out[0], y)
            loss.backward()
            opt.step()
        opt.clear_grad()
    rate, t = _median_rate(step, batch, warmup, windows, iters)
    return {"images_per_s": rate, "step_s": t}, None


def bench_infer(name, batch, image_size, class_num=1000, warmup=2, windows=3, iters=5):
    model = _build(name, class_num, image_size)
    model.eval()
    x = paddle.randn([batch, 3, image_size, image_size])

    def step():
        with paddle.no_grad():
            out = model(x)
            (out[0] if isinstance(out, list) else out).numpy()
    rate, t = _median_rate(step, batch, warmup, windows, iters)
    return {"images_per_s": rate, "step_s": t}, None


def export_for_bench(name, image_size, class_num, out_dir, model=None):
    model = model if model is not None else _build(name, class_num, image_size)
    model.eval()

    class Finest(paddle.nn.Layer):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            out = self.m(x)
            return out[0] if isinstance(out, (list, tuple)) else out
    spec = [paddle.static.InputSpec([None, 3, image_size, image_size], "float32", "x")]
    static = paddle.jit.to_static(Finest(model), input_spec=spec, full_graph=True)
    prefix = os.path.join(out_dir, "inference")
    paddle.jit.save(static, prefix)
    return out_dir


def make_predictor(model_dir, threads, mkldnn=True):
    from paddle import inference
    cfg = inference.Config(model_dir, "inference")
    cfg.disable_gpu()
    if mkldnn:
        cfg.enable_mkldnn()
    else:
        cfg.disable_mkldnn()
    cfg.set_cpu_math_library_num_threads(threads)
    cfg.switch_ir_optim(True)
    cfg.disable_glog_info()
    return inference.create_predictor(cfg)


def bench_predictor(model_dir, batch, image_size, threads, mkldnn=True, warmup=2, windows=3, iters=5):
    pred = make_predictor(model_dir, threads, mkldnn)
    inp = pred.get_input_handle(pred.get_input_names()[0])
    out = pred.get_output_handle(pred.get_output_names()[0])
    x = np.random.rand(batch, 3, image_size, image_size).astype("float32")

    def step():
        inp.copy_from_cpu(x)
        pred.run()
        out.copy_to_cpu()
    rate, t = _median_rate(step, batch, warmup, windows, iters)
    return {"images_per_s": rate, "step_s": t}, None


def bench_onnx(model_dir, batch, image_size, threads, warmup=2, windows=3, iters=5):
    import subprocess
    import sys
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime is not installed"
    onnx_path = os.path.join(model_dir, "inference.onnx")
    if not os.path.exists(onnx_path):
        r = subprocess.run([sys.executable, "-m", "paddle2onnx.command", "--model_dir", model_dir,
                            "--model_filename", "inference.json", "--params_filename", "inference.pdiparams",
                            "--save_file", onnx_path, "--opset_version", "11"], capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(onnx_path):
            r = subprocess.run(["paddle2onnx", "--model_dir", model_dir, "--model_filename", "inference.json",
                                "--params_filename", "inference.pdiparams", "--save_file", onnx_path,
                                "--opset_version", "11"], capture_output=True, text=True)
        if not os.path.exists(onnx_path):
            return None, "paddle2onnx failed: " + (r.stderr or r.stdout).strip().splitlines()[-1][:200]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.rand(batch, 3, image_size, image_size).astype("float32")
    rate, t = _median_rate(lambda: sess.run(None, {name: x}), batch, warmup, windows, iters)
    return {"images_per_s": rate, "step_s": t}, None


def make_jpeg_list(root, n=64, size=(500, 375), quality=90, seed=0):
    """Real-size photographs stand-ins: smooth colour fields with noise, JPEG quality 90."""
    import cv2
    rng = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    with open(os.path.join(root, "list.txt"), "w") as f:
        for i in range(n):
            base = np.stack([(xx * rng.uniform(0.2, 0.6) + yy * rng.uniform(0.1, 0.5) + rng.uniform(0, 255)) % 256
                             for _ in range(3)], -1)
            img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
            name = f"{i:04d}.jpg"
            cv2.imwrite(os.path.join(root, name), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            f.write(f"{name} {i % 10}\n")
    return os.path.join(root, "list.txt")


def bench_data(config_path, batch, workers, n_images=64, epochs=3):
    """The config's training pipeline (its transform ops) over real-size JPEGs, through the same
    DataLoader the engine uses."""
    from ..data import build_dataloader
    from .config import get_config
    tmp = tempfile.mkdtemp(prefix="ppcls_bench_data_")
    lst = make_jpeg_list(tmp, n_images)
    cfg = get_config(config_path, [f"DataLoader.Train.dataset.image_root={tmp}",
                                   f"DataLoader.Train.dataset.cls_label_path={lst}"])
    section = cfg["DataLoader"]["Train"]
    section["sampler"]["batch_size"] = batch
    section["loader"] = {"num_workers": workers, "use_shared_memory": True, "persistent_workers": True}
    loader, dataset, _ = build_dataloader(section, "Train", 10, seed=0)
    rates = []
    it_count = 0
    for epoch in range(epochs + 1):
        dataset.set_epoch(epoch)
        t0 = time.perf_counter()
        n = 0
        for images, _ in loader:
            n += images.shape[0]
            it_count += 1
        dt = time.perf_counter() - t0
        if epoch > 0:  # the first pass starts the workers
            rates.append(n / dt)
    return {"images_per_s": statistics.median(rates)}, None


def run_benchmarks(name, batch, image_size, modes, threads, config=None, workers=2, windows=3, iters=3):
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(threads)
    rows = []
    export_dir = None
    for mode in modes:
        note = None
        if mode in ("train", "train_static", "amp_o1", "amp_o2"):
            res, note = bench_train(name, batch, image_size,
                                    {"train": "dygraph", "train_static": "to_static"}.get(mode, mode),
                                    windows=windows, iters=iters)
        elif mode == "infer":
            res, note = bench_infer(name, batch, image_size, windows=windows, iters=iters)
        elif mode in ("predictor", "predictor_no_onednn", "onnx"):
            if export_dir is None:
                export_dir = export_for_bench(name, image_size, 1000, tempfile.mkdtemp(prefix="ppcls_bench_"))
            if mode == "onnx":
                res, note = bench_onnx(export_dir, batch, image_size, threads, windows=windows, iters=iters)
            else:
                res, note = bench_predictor(export_dir, batch, image_size, threads, mkldnn=(mode == "predictor"),
                                           windows=windows, iters=iters)
        elif mode == "data":
            if config is None:
                res, note = None, "needs --config (a training config whose pipeline to measure)"
            else:
                res, note = bench_data(config, batch, workers)
        else:
            raise ValueError(mode)
        rows.append({"model": name, "mode": mode, "batch": batch, "threads": threads,
                     "images_per_s": None if res is None else round(res["images_per_s"], 2),
                     "step_s": None if res is None or "step_s" not in res else round(res["step_s"], 4),
                     "peak_rss_mb": round(peak_rss_mb(), 1), "note": note})
        logger.info(f"{name} {mode} bs{batch} threads{threads}: "
                    + (f"{res['images_per_s']:.2f} img/s" if res else f"skipped ({note})"))
    return rows


def bench_train_pipeline(config_path, name, batch, workers, image_count=96, threads=None):
    """A real training epoch through the engine on real-size JPEGs with the config's pipeline:
    images/s and the reader's share of each step (reader_cost / batch_cost, after the first steps)."""
    from ..engine import Engine
    from .config import get_config
    tmp = tempfile.mkdtemp(prefix="ppcls_bench_pipe_")
    lst = make_jpeg_list(tmp, image_count)
    overrides = [f"Arch.name={name}", "Arch.class_num=10", "Global.epochs=1", "Global.eval_during_train=False",
                 f"Global.output_dir={tmp}/out", "Global.print_batch_step=1000", "Global.device=cpu",
                 f"DataLoader.Train.dataset.image_root={tmp}", f"DataLoader.Train.dataset.cls_label_path={lst}",
                 f"DataLoader.Train.sampler.batch_size={batch}", f"DataLoader.Train.loader.num_workers={workers}",
                 "DataLoader.Train.dataset.batch_transform_ops=null"]
    if threads:
        overrides.append(f"Global.cpu_threads={threads}")
    cfg = get_config(config_path, overrides)
    cfg.pop("EMA", None)
    eng = Engine(cfg, "train")
    eng._save = lambda *a, **k: None  # measuring steps, not disk
    eng.train()
    t = eng.epoch_timing
    if not t["iters"]:
        return None, "too few iterations"
    return {"images_per_s": batch * t["iters"] / t["batch"], "step_s": t["batch"] / t["iters"],
            "reader_s": t["reader"] / t["iters"], "reader_share": t["reader"] / t["batch"]}, None
