"""Throughput measurements: training steps (dygraph, to_static, AMP), dygraph inference, the exported
model in Paddle Inference (oneDNN on CPU) and onnxruntime, its INT8 quantization in onnxruntime, the
input pipeline, and a real training epoch through the engine.

Every figure is the median of repeated timed windows after warm-up, in images per second; the export,
the predictor, the ONNX conversion and the quantization are the deployment's own code. The inference
modes (infer, predictor, predictor_no_onednn, onnx, int8) of one model and batch size are timed in
alternating windows (A B C D A B C D ...), so that the machine's drift affects all of them alike and
their ratios hold even on a shared machine. Models have random weights; the int8 mode calibrates on
random images (a speed measurement, not an accuracy one: tools/quantize.py calibrates on real data).
"""
import os
import resource
import shutil
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
EXPORTED_MODES = ("predictor", "predictor_no_onednn", "onnx", "int8")
ALL_MODES = list(TRAIN_MODES) + ["infer"] + list(EXPORTED_MODES)
INFERENCE_MODES = ("infer",) + EXPORTED_MODES
MODE_LABELS = {"infer": "dygraph", "predictor": "Paddle Inference", "predictor_no_onednn": "Paddle Inference (no oneDNN)",
               "onnx": "onnxruntime", "int8": "onnxruntime INT8"}
INT8_NOTE = "random weights, calibrated on random images (speed only)"


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


def export_for_bench(name, image_size, class_num=1000, out_dir=None):
    """The model with random weights, exported as a deployment exports it."""
    model = build_model({"name": name, "class_num": class_num})
    return export_model(model, out_dir or tempfile.mkdtemp(prefix="ppcls_bench_"), [3, image_size, image_size],
                        meta={"model": name})


def quantize_for_bench(model_dir, image_size, calib_images=8, threads=1):
    """``model_dir``'s export as an INT8 folder beside it, calibrated on random images."""
    import onnx
    from .inference.quantize import fp32_onnx, head_nodes, prepare, quantize_onnx, tune_conv_kernels, write_int8_folder
    work = model_dir.rstrip("/") + "_int8_work"
    fp32 = fp32_onnx(model_dir, os.path.join(work, "fp32"))
    rng = np.random.RandomState(0)
    batches = [rng.rand(min(4, calib_images), 3, image_size, image_size).astype("float32")
               for _ in range(max(1, calib_images // 4))]
    # no Conv(Concat) split: it follows the ranges of trained weights on real images (a digits-trained ReXNet_1_0
    # has none, an RLA net splits at its hidden state), which random weights on noise do not show
    prepared, _ = prepare(fp32, os.path.join(work, "prepared.onnx"), calib_batches=batches, split_ratio=0)
    # the classifier head stays float32 as tools/quantize.py leaves it by default
    int8 = quantize_onnx(prepared, os.path.join(work, "int8.onnx"), batches, calib_method="minmax",
                         fp32_nodes=head_nodes(onnx.load(prepared)))
    qdq = onnx.load(int8)  # each Conv on the int8 kernel and group count faster here, as tools/quantize.py chooses
    if any(tune_conv_kernels(qdq, onnx.load(prepared), threads)):
        onnx.save(qdq, int8)
    out = write_int8_folder(int8, model_dir.rstrip("/") + "_int8", model_dir,
                            {"method": "onnxruntime QDQ, per-channel", "calibration": INT8_NOTE})
    shutil.rmtree(work, ignore_errors=True)
    return out


def _runner(mode, model_dir, threads):
    """(fn(x), note) running ``model_dir`` as the deployed predictor does in ``mode``."""
    if mode in ("onnx", "int8"):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return None, "onnxruntime is not installed"
    if mode == "onnx":
        convert_to_onnx(model_dir)
    settings = {"cpu_num_threads": threads, "enable_mkldnn": mode != "predictor_no_onednn",
                "backend": "onnxruntime" if mode in ("onnx", "int8") else "paddle"}
    return Predictor(settings, model_dir, announce=False).run, (INT8_NOTE if mode == "int8" else None)


def bench_inference_modes(name, batch, image_size, modes, threads, class_num=1000, warmup=2, windows=3, iters=3,
                          export_dir=None):
    """{mode: (result or None, note)} for the inference ``modes`` of one model, timed in alternating
    windows: each window runs ``iters`` steps of one mode, the modes take turns, and each mode's
    figure is its median window."""
    runners, out = {}, {}
    model = build_model({"name": name, "class_num": class_num})
    model.eval()
    exported = [m for m in modes if m != "infer"]
    if exported:
        export_dir = export_dir or export_for_bench(name, image_size, class_num)
    for mode in modes:
        if mode == "infer":
            def dygraph(x, model=model):
                with paddle.no_grad():
                    return _first(model(paddle.to_tensor(x))).numpy()
            runners[mode], note = dygraph, None
        elif mode == "int8":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                out[mode] = (None, "onnxruntime is not installed")
                continue
            runners[mode], note = _runner("int8", quantize_for_bench(export_dir, image_size, threads=threads), threads)
        else:
            fn, note = _runner(mode, export_dir, threads)
            if fn is None:
                out[mode] = (None, note)
                continue
            runners[mode] = fn
        out[mode] = (None, note)
    x = np.random.rand(batch, 3, image_size, image_size).astype("float32")
    for fn in runners.values():
        for _ in range(warmup):
            fn(x)
    rates = {m: [] for m in runners}
    for _ in range(windows):
        for mode, fn in runners.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                fn(x)
            rates[mode].append(time.perf_counter() - t0)
    for mode, times in rates.items():
        t = statistics.median(times) / iters
        out[mode] = ({"images_per_s": batch / t, "step_s": t}, out[mode][1])
    return out


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


def _row(name, mode, batch, threads, res, note):
    return {"model": name, "mode": mode, "batch": batch, "threads": threads,
            "images_per_s": None if res is None else round(res["images_per_s"], 2),
            "step_s": None if res is None or "step_s" not in res else round(res["step_s"], 4),
            "peak_rss_mb": round(peak_rss_mb(), 1), "note": note}


def run_benchmarks(name, batch, image_size, modes, threads, config=None, workers=2, windows=3, iters=3):
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(threads)
    rows = []
    inference = [m for m in modes if m in INFERENCE_MODES]
    measured = {}
    if inference:
        export_dir = export_for_bench(name, image_size) if any(m != "infer" for m in inference) else None
        try:
            measured = bench_inference_modes(name, batch, image_size, inference, threads, windows=windows, iters=iters,
                                             export_dir=export_dir)
        finally:
            if export_dir:
                shutil.rmtree(export_dir, ignore_errors=True)
                shutil.rmtree(export_dir.rstrip("/") + "_int8", ignore_errors=True)
    for mode in modes:
        if mode in measured:
            res, note = measured[mode]
        elif mode in TRAIN_MODES:
            res, note = bench_train(name, batch, image_size, TRAIN_MODES[mode], windows=windows, iters=iters)
        elif mode == "data":
            res, note = (None, "needs -c CONFIG (a training config whose pipeline to measure)") if config is None \
                else bench_data(config, batch, workers)
        else:
            raise ValueError(mode)
        rows.append(_row(name, mode, batch, threads, res, note))
        logger.info(f"{name} {mode} bs{batch} threads{threads}: "
                    + (f"{res['images_per_s']:.2f} img/s" if res else f"skipped ({note})"))
    return rows


# -- the inference comparison: table, markdown, chart ------------------------------------------------------
def comparison(rows):
    """{(model, batch, threads): {mode: images/s}} of the inference modes in ``rows``."""
    table = {}
    for r in rows:
        if r["mode"] in INFERENCE_MODES and r["images_per_s"] is not None:
            table.setdefault((r["model"], r["batch"], r["threads"]), {})[r["mode"]] = r["images_per_s"]
    return table


def comparison_lines(rows):
    """One line per model and batch size: every inference mode's images/s and its ratio to the fastest."""
    lines = []
    for (model, batch, threads), by_mode in comparison(rows).items():
        if len(by_mode) < 2:
            continue
        best = max(by_mode.values())
        fastest = max(by_mode, key=by_mode.get)
        cells = [f"{MODE_LABELS[m]} {v:.1f} ({v / best:.2f}x)" for m, v in
                 sorted(by_mode.items(), key=lambda kv: INFERENCE_MODES.index(kv[0]))]
        lines.append(f"{model} bs{batch} threads{threads}: " + " | ".join(cells) + f"  -> fastest: {MODE_LABELS[fastest]}")
    return lines


def markdown_table(rows, modes=("infer", "predictor", "onnx", "int8")):
    """The README's throughput table: one row per model, ``bs 1 / 8`` cells per mode, and the INT8
    speed-up over fp32 onnxruntime."""
    table = comparison(rows)
    models = list(dict.fromkeys(k[0] for k in table))
    batches = sorted({k[1] for k in table})
    head = "| model | " + " | ".join(f"{MODE_LABELS[m]} bs {' / '.join(map(str, batches))}" for m in modes)
    head += " | INT8 / fp32 onnxruntime | fastest |" if "int8" in modes and "onnx" in modes else " | fastest |"
    lines = [head, "|---|" + "---:|" * (len(modes) + (1 if "int8" in modes and "onnx" in modes else 0)) + "---|"]
    for model in models:
        cells = []
        per_batch = [next((v for k, v in table.items() if k[0] == model and k[1] == b), {}) for b in batches]
        for m in modes:
            cells.append(" / ".join(f"{d[m]:.1f}" if m in d else "–" for d in per_batch))
        extra = []
        if "int8" in modes and "onnx" in modes:
            extra.append(" / ".join(f"{d['int8'] / d['onnx']:.2f}x" if "int8" in d and "onnx" in d else "–"
                                    for d in per_batch))
        fastest = " / ".join(MODE_LABELS[max(d, key=d.get)] if d else "–" for d in per_batch)
        lines.append(f"| {model} | " + " | ".join(cells + extra) + f" | {fastest} |")
    return "\n".join(lines) + "\n"


def write_chart(rows, path, title=None, image_size=224):
    """A PNG bar chart of the inference modes: one group per model and batch size, images/s."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    table = comparison(rows)
    if not table:
        raise ValueError("no inference-mode rows to chart")
    modes = [m for m in INFERENCE_MODES if any(m in d for d in table.values())]
    groups = list(table)
    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) + 2), 4.2), dpi=120)
    colors = {"infer": "#9e9e9e", "predictor": "#1f77b4", "predictor_no_onednn": "#aec7e8", "onnx": "#ff7f0e",
              "int8": "#2ca02c"}
    for i, m in enumerate(modes):
        xs = [g + (i - (len(modes) - 1) / 2) * width for g in range(len(groups))]
        vals = [table[k].get(m, 0.0) for k in groups]
        bars = ax.bar(xs, vals, width, label=MODE_LABELS[m], color=colors.get(m))
        for b, v in zip(bars, vals):
            if v:
                ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{v:.0f}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{k[0]}\nbs {k[1]}" for k in groups], fontsize=8)
    ax.set_ylabel("images / s")
    threads = sorted({k[2] for k in groups})
    ax.set_title(title or f"CPU inference throughput ({', '.join(map(str, threads))} threads, "
                          f"{image_size}x{image_size}, random weights)", fontsize=10)
    ax.legend(fontsize=7, ncol=len(modes))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
