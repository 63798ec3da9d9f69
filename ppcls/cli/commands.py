"""The ``ppcls`` subcommands. Each takes the parsed arguments and calls the package; ``ARGUMENTS``
holds, per subcommand, the function that declares its arguments."""
import json
import os

from ..utils.errors import ConfigError

ARGUMENTS = {}


def arguments(fn_name):
    def deco(add):
        ARGUMENTS[fn_name] = add
        return add
    return deco


def _config_arguments(p):
    p.add_argument("-c", "--config", required=True, help="YAML config file (or an installed one: DLA/DLA60.yaml)")
    p.add_argument("-o", "--override", action="append", default=[],
                   help="override a config value: -o Global.epochs=10 (repeatable)")
    p.add_argument("-p", "--profiler_options", default=None,
                   help="accepted for PaddleClas compatibility; it has no effect")


def _config(args):
    from ..schema import get_config
    if args.profiler_options:
        from ..utils.config import warn_compat
        warn_compat("-p/--profiler_options", "use paddle.profiler around the run instead")
    return get_config(args.config, args.override)


# -- training and evaluation --------------------------------------------------------------------------
for _name in ("train", "evaluate", "infer", "export"):
    ARGUMENTS[_name] = _config_arguments


def train(args):
    """Train with a config: ppcls train -c CONFIG [-o key=value ...] (under paddle.distributed.launch too)."""
    from ..engine import Engine
    return Engine(_config(args), "train").train()


def evaluate(args):
    """Evaluate over the config's eval set: ppcls eval -c CONFIG -o Global.pretrained_model=PATH."""
    from ..engine import Engine
    return Engine(_config(args), "eval").eval()


def infer(args):
    """Predict the config's Infer.infer_imgs with the dygraph model."""
    from ..inference.infer import infer as run
    return run(_config(args))


def export(args):
    """Export the config's model and weights (Global.pretrained_model) to Global.save_inference_dir."""
    from ..inference.export import export as run
    return run(_config(args))


# -- deployment ---------------------------------------------------------------------------------------
@arguments("onnx")
def _onnx_arguments(p):
    p.add_argument("model_dir", help="an exported model folder (inference.json + inference.pdiparams)")
    p.add_argument("--opset", type=int, default=11)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs Paddle Inference check")


def onnx(args):
    """Convert an exported model to inference.onnx (dynamic batch) and compare it with Paddle Inference."""
    from ..inference.onnx import compare_backends, convert_to_onnx
    out = convert_to_onnx(args.model_dir, args.opset)
    print(f"wrote {out}")
    if not args.no_check:
        diff, ok = compare_backends(args.model_dir)
        print(f"onnxruntime vs Paddle Inference: max abs diff {diff:.3g}")
        if not ok:
            raise ConfigError(f"{out}: onnxruntime output differs from Paddle Inference by {diff:.3g}")
    return out


@arguments("deploy")
def _deploy_arguments(p):
    p.add_argument("-c", "--config", default=None,
                   help="deploy config (default: the installed deploy/configs/inference_cls.yaml)")
    p.add_argument("-o", "--override", action="append", default=[], help="-o Global.inference_model_dir=DIR ...")


def deploy(args):
    """Classify images with an exported model: the deploy predictor (deploy/python/predict_cls.py)."""
    from ..inference.predictor import default_deploy_config, predict_folder
    from ..utils.config import apply_override, load_yaml_with_bases
    cfg = load_yaml_with_bases(args.config or default_deploy_config())
    for item in args.override:
        apply_override(cfg, item)
    return predict_folder(cfg)


@arguments("quantize")
def _quantize_arguments(p):
    _config_arguments(p)
    p.add_argument("--model-dir", required=True, help="the fp32 export (tools/export_model.py) to quantize")
    p.add_argument("--out", required=True, help="folder for the INT8 model (inference.onnx, inference.yml, backend.json)")
    p.add_argument("--calib-images", type=int, default=64, help="train-list images to calibrate on (default: %(default)s)")
    p.add_argument("--calib-method", default="percentile",
                   help="activation ranges: percentile (default: the 99.999th percentile of |x|), minmax or entropy")
    p.add_argument("--fp32-ops", default="", help="comma list of op types to keep in float32, e.g. Sigmoid,Mul")
    p.add_argument("--int8-ops", default="",
                   help="comma list of the only op types to quantize, e.g. Conv,MatMul,Gemm (default: all that can be)")
    p.add_argument("--calib-select", default="random",
                   help="how calibration images are chosen: random (a seeded uniform choice; default) or stratified "
                        "(the classes take turns)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration choice (default: %(default)s)")
    p.add_argument("--calib-trials", type=int, default=1,
                   help="calibrate on this many seeded choices of images and keep the one whose top-1 differs least "
                        "from fp32 on held-out train images (default: %(default)s)")
    p.add_argument("--sensitivity", action="store_true",
                   help="rank the int8 layers by the error each causes and keep the fewest most sensitive in float32 "
                        "that hold held-out top-1 flips within --max-drop (0.5 when not set)")
    p.add_argument("--max-fp32-layers", type=int, default=8, help="--sensitivity keeps at most this many layers in float32")
    p.add_argument("--holdout-images", type=int, default=1000,
                   help="--sensitivity and --calib-trials measure on this many train images that are not calibration images")
    p.add_argument("--max-drop", type=float, default=None,
                   help="refuse (exit 3, --out untouched) when int8 top-1 is more than this many points below fp32")
    p.add_argument("--int8-head", action="store_true",
                   help="quantize the classifier head too (default: its last layer and softmax stay float32, so the "
                        "logits are not rounded to int8 steps)")
    p.add_argument("--keep-bn", action="store_true",
                   help="leave BatchNorms that follow no Conv as they are (default: rewrite them as 1x1 depthwise Conv)")
    p.add_argument("--keep-avgpool", action="store_true",
                   help="leave AveragePools as they are (default: each one whose windows all average the same number "
                        "of values becomes the identical depthwise Conv, which onnxruntime runs faster in int8)")
    p.add_argument("--no-split-concat", action="store_true",
                   help="keep Conv(Concat) whole even where the inputs' ranges differ by more than 4x")
    p.add_argument("--no-pad-channels", action="store_true",
                   help="keep channel counts as they are (default: regions between dense Convs get zero channels up to "
                        "the counts onnxruntime's int8 kernels run fastest at, exact in float32)")
    p.add_argument("--no-kernel-choice", action="store_true",
                   help="keep every int8 Conv on onnxruntime's symmetric kernels and its groups (default: each dense "
                        "Conv gets the kernel timed faster on this machine, e.g. AMX's, and a grouped Conv the group "
                        "count timed faster; exact either way)")
    p.add_argument("--reference-eval", action="store_true",
                   help="also evaluate the int8 model's QDQ graph as written (onnxruntime without graph optimisation: "
                        "Quantize / DequantizeLinear in float, no int8 kernels) and count the images the int8 kernels "
                        "move against it")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")


def quantize(args):
    """INT8 post-training quantization of an exported model (onnxruntime, QDQ, per-channel weights),
    calibrated on the config's train list, evaluated fp32 vs int8 on its eval list:
    ppcls quantize -c CONFIG --model-dir inference/X --out inference/X_int8 --calib-images 200"""
    from ..inference.quantize import quantize as run
    def op_list(text):
        return tuple(t.strip() for t in text.split(",") if t.strip())
    r = run(_config(args), args.model_dir, args.out, calib_images=args.calib_images, calib_method=args.calib_method,
            fp32_op_types=op_list(args.fp32_ops), int8_op_types=op_list(args.int8_ops) or None, threads=args.threads,
            bn_as_conv=not args.keep_bn, pool_as_conv=not args.keep_avgpool, split_concat=not args.no_split_concat, calib_select=args.calib_select,
            seed=args.seed, sensitivity_sweep=args.sensitivity, max_drop=args.max_drop,
            max_fp32_layers=args.max_fp32_layers, holdout_images=args.holdout_images, calib_trials=args.calib_trials,
            int8_head=args.int8_head, pad=not args.no_pad_channels, kernel_choice=not args.no_kernel_choice,
            reference_eval=args.reference_eval)
    speed = ", ".join(f"{v:.2f}x at batch {b}" for b, v in r["speedup"].items())
    kept = f"; {len(r['fp32_layers'])} layer(s) kept in float32" if r["fp32_layers"] else ""
    print(f"int8 over fp32 speed (onnxruntime, {r['threads']} threads): {speed}{kept}", flush=True)
    print(f"fp32 top1: {r['fp32_top1']:.5f} int8 top1: {r['int8_top1']:.5f}", flush=True)
    return r


# -- models and weights -------------------------------------------------------------------------------
@arguments("convert")
def _convert_arguments(p):
    p.add_argument("-a", "--arch", required=True, help="registered model name (Arch.name)")
    p.add_argument("--src", required=True,
                   help="a checkpoint: .pth/.pth.tar/.pt/.bin/.ckpt (torch), .safetensors, a Hugging Face model "
                        "folder, MXNet/Gluon .params, or .npz")
    p.add_argument("--dst", required=True, help="output .pdparams path")
    p.add_argument("--class-num", type=int, default=None, help="class count of the checkpoint's classifier")
    p.add_argument("--layout", default=None, help="the source layout (default: detected from the keys)")


def convert(args):
    """Convert another implementation's checkpoint (its layout detected from the keys) to .pdparams."""
    from ..arch.convert import convert_checkpoint
    kwargs = {} if args.class_num is None else {"class_num": args.class_num}
    dst, n, dropped = convert_checkpoint(args.arch, args.src, args.dst, kwargs, layout=args.layout)
    print(f"converted {n} tensors to {dst}" + (f"; dropped {len(dropped)} unused keys" if dropped else ""))
    return dst


@arguments("models")
def _models_arguments(p):
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'DLA*' or '*ECA*'")
    p.add_argument("--json", action="store_true", help="one JSON list")


def _count(n, unit=""):
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n}{unit}"


def models(args):
    """Every registered model (or those matching PATTERN) with its parameters, MACs and weights."""
    from ..arch import CARDS, list_models
    from ..arch.weights import default_weights, weights_of
    names = list_models(args.pattern)
    if not names:
        raise ConfigError(f"no registered model matches {args.pattern!r} (ppcls models lists them all)")
    rows = []
    for name in names:
        card = CARDS[name]
        default = default_weights(name)
        rows.append({"name": name, "family": card.family, "params": card.params, "macs": card.macs,
                     "input_size": card.input_size,
                     "weights": [f"{w.tag}{'*' if w is default else ''}{' (manual)' if w.source is None else ''}"
                                 for w in weights_of(name)]})
    if args.json:
        print(json.dumps(rows))
        return rows
    print(f"{'model':<30}{'family':<19}{'params':>9}{'MACs':>10}{'input':>7}  weights (* default)")
    for r in rows:
        print(f"{r['name']:<30}{r['family']:<19}{_count(r['params']):>9}{_count(r['macs']):>10}{r['input_size']:>7}  "
              + (", ".join(r["weights"]) or "-"))
    return rows


@arguments("predict")
def _predict_arguments(p):
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", required=True, help="a registered model name")
    p.add_argument("--pretrained", default=None,
                   help="True (the default weights), a tag (e.g. timm_in1k), a file or folder, or a URL")
    p.add_argument("--class-num", type=int, default=None, help="classes of the weights' classifier")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--labels", default=None, help="label file: 'class_id name' lines")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")


def _eval_transforms(name, weights):
    """The published eval transform of ``weights`` (else ImageNet's 256 / 224, or 32x32 for CIFAR nets)."""
    from ..arch import CARDS
    from ..arch.weights import EvalTransform
    t = weights.eval if weights is not None else EvalTransform()
    size = CARDS[name].input_size if name in CARDS else 224
    resize = {"resize_short": t.resize_short, "interpolation": t.interpolation} if size >= 224 else {"size": size}
    return [{"ResizeImage": resize}, {"CropImage": {"size": t.crop if size >= 224 else size}},
            {"NormalizeImage": {"scale": 1.0 / 255.0, "mean": list(t.mean), "std": list(t.std), "order": ""}}]


def predict(args):
    """Classify images with a registered model and its weights, without a config file:
    ppcls predict --model DLA34 --pretrained True cat.jpg dog.jpg"""
    from ..arch import build_model
    from ..arch.weights import find_weights, load_weights
    from ..inference.infer import predict_images
    from ..inference.labels import label_names
    from ..inference.pipeline import list_images
    from ..utils import device as dev
    from ..utils.logger import logger
    dev.select_device(args.device)
    dev.set_cpu_threads(0)
    pretrained = True if args.pretrained in ("True", "true", "default") else args.pretrained
    options = {} if args.class_num is None else {"class_num": args.class_num}
    model = build_model(dict(options, name=args.model))
    weights = None
    if pretrained:
        load_weights(model, args.model, pretrained, where="--pretrained")
        is_tag = pretrained is True or not (os.path.exists(pretrained) or "://" in pretrained)
        weights = find_weights(args.model, pretrained) if is_tag else None
    else:
        logger.warning(f"--pretrained not given: predicting with randomly initialised {args.model} weights")
    files = [f for path in args.images for f in list_images(path)]
    return predict_images(model, files, _eval_transforms(args.model, weights), args.topk, label_names(args.labels),
                          args.batch_size, args.model)


@arguments("flops")
def _flops_arguments(p):
    p.add_argument("-a", "--arch", help="a registered model name (see --list)")
    p.add_argument("-i", "--input-size", type=int, default=224, help="square input side (default 224)")
    p.add_argument("--class-num", type=int, default=None)
    p.add_argument("-o", "--option", action="append", default=[], help="a model option, e.g. -o rla_channel=12")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--list", action="store_true", help="list the registered model names")


def flops(args):
    """Exact trainable parameters, conv+linear MACs per image, and the RLA-Net paper's two figures in
    its units: params / 2^20 'M', FLOPs by its profiler's rule / 2^30 'G' or / 2^20 'M'."""
    from ..arch import list_models
    from ..arch.info import model_summary
    from ..utils.config import parse_value
    if args.list:
        print("\n".join(list_models()))
        return None
    if not args.arch:
        raise ConfigError("-a/--arch is required (or --list)")
    options = {}
    for text in args.option:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ConfigError(f"-o {text}: expected key=value")
        options[key] = parse_value(value)
    if args.class_num is not None:
        options["class_num"] = args.class_num
    info = model_summary(args.arch, args.input_size, **options)
    if args.json:
        print(json.dumps(info))
        return info
    s = args.input_size
    print(f"{info['name']}, input 3x{s}x{s}")
    print(f"  trainable params         {info['params']:,}")
    print(f"  conv+linear MACs / image {info['macs']:,}")
    print(f"  paper units (RLA-Net table): Param. {info['paper_params']}, FLOPs {info['paper_flops_str']} "
          f"({info['paper_flops']:,} by the paper's counting rule)")
    return info


# -- benchmark ----------------------------------------------------------------------------------------
README_MODELS = ("DLA34", "RLA_ResNet50", "ReXNet_1_0", "AttentionNet56")  # the four families' main variants
README_TABLE = os.path.join("docs", "throughput.md")
README_CHART = os.path.join("docs", "images", "throughput.png")


@arguments("benchmark")
def _benchmark_arguments(p):
    p.add_argument("-a", "--arch", default=None, help="a model name, or a comma list of them")
    p.add_argument("--batch-size", default="8", help="batch size, or a comma list (e.g. 1,8)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--mode", default="train,infer,predictor",
                   help="comma list of modes (train, train_static, infer, predictor, onnx, int8, data, pipeline, ...; "
                        "'all': every model-only mode); an unknown one is refused with the list. The inference modes "
                        "(infer, predictor, predictor_no_onednn, onnx, int8) are timed in alternating windows; int8 "
                        "quantizes the random-weight model calibrated on random images")
    p.add_argument("--threads", default="0", help="CPU threads, comma list to compare (0 = all cores)")
    p.add_argument("-c", "--config", default=None, help="training config whose data pipeline the data / pipeline modes run")
    p.add_argument("-o", "--override", action="append", default=[], help="overrides of that config")
    p.add_argument("--workers", type=int, default=2, help="loader workers for the data / pipeline modes")
    p.add_argument("--windows", type=int, default=3, help="timed windows (the median is reported)")
    p.add_argument("--iters", type=int, default=3, help="steps per timed window")
    p.add_argument("--chart", default=None, help="write a PNG bar chart of the inference modes to this path")
    p.add_argument("--markdown", default=None, help="write the inference modes as a markdown table to this path")
    p.add_argument("--readme", action="store_true",
                   help=f"the README's table: {', '.join(README_MODELS)} at batch 1 and 8, modes infer,predictor,onnx,int8, "
                        f"written to {README_TABLE} and {README_CHART} (unless --markdown / --chart say otherwise)")
    p.add_argument("--json", action="store_true")


def _pipeline_config(args, arch, batch, threads):
    from ..schema import get_config
    return get_config(args.config, list(args.override) + [
        f"Arch.name={arch}", "Global.epochs=1", "Global.eval_during_train=False", "Global.print_batch_step=1000",
        "Global.device=cpu", f"Global.cpu_threads={threads}", f"DataLoader.Train.sampler.batch_size={batch}",
        f"DataLoader.Train.loader.num_workers={args.workers}", "DataLoader.Train.dataset.batch_transform_ops=null",
        "Global.output_dir=" + os.path.join(os.environ.get("TMPDIR", "/tmp"), "ppcls_bench_pipeline")])


def benchmark(args):
    """Throughput table: training, dygraph inference, the exported predictor, onnxruntime, onnxruntime
    INT8 and the input pipeline (the config's own data), for one or more models and batch sizes; the
    inference modes also as one line per model with each one's ratio to the fastest:
    ppcls benchmark -a DLA34 --batch-size 1,8 --mode infer,predictor,onnx,int8 --chart throughput.png
    ppcls benchmark --readme     (the README's table and docs/images/throughput.png)"""
    from ..benchmark import ALL_MODES, INT8_NOTE, bench_train_pipeline, comparison_lines, markdown_table, run_benchmarks, write_chart
    from ..schema import get_config
    from ..utils.device import available_cores
    if args.readme:
        args.arch = args.arch or ",".join(README_MODELS)
        args.batch_size = "1,8" if args.batch_size == "8" else args.batch_size
        args.mode = "infer,predictor,onnx,int8"
        args.markdown = args.markdown or README_TABLE
        args.chart = args.chart or README_CHART
    if not args.arch:
        raise ConfigError("-a/--arch is required (or --readme)")
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    try:
        batches = [int(b) for b in str(args.batch_size).split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--batch-size: integers separated by commas, got {args.batch_size!r}") from None
    if not batches or min(batches) < 1:
        raise ConfigError(f"--batch-size: positive integers, got {args.batch_size!r}")
    modes = ALL_MODES if args.mode == "all" else [m.strip() for m in args.mode.split(",") if m.strip()]
    for m in modes:
        if m not in ALL_MODES + ["data", "pipeline"]:
            from ..utils.errors import did_you_mean
            raise ConfigError(f"--mode: unknown mode '{m}'" + did_you_mean(m, ALL_MODES + ["data", "pipeline"], listing=True))
    from ..arch import list_models
    for a in archs:
        if a not in list_models():
            from ..utils.errors import did_you_mean
            raise ConfigError(f"-a: unknown model '{a}'" + did_you_mean(a, list_models()))
    rows = []
    for t in [int(x) for x in args.threads.split(",")]:
        threads = t or available_cores()
        for arch in archs:
            for batch in batches:
                plain = [m for m in modes if m != "pipeline"]
                if plain:
                    config = get_config(args.config, args.override) if args.config and "data" in plain else None
                    rows += run_benchmarks(arch, batch, args.image_size, plain, threads, config, args.workers,
                                           windows=args.windows, iters=args.iters)
                if "pipeline" in modes:
                    res, note = (None, "needs -c CONFIG") if not args.config else \
                        bench_train_pipeline(_pipeline_config(args, arch, batch, threads))
                    rows.append({"model": arch, "mode": "pipeline", "batch": batch, "threads": threads,
                                 "images_per_s": None if res is None else round(res["images_per_s"], 2),
                                 "step_s": None if res is None else round(res["step_s"], 4),
                                 "reader_share": None if res is None else round(res["reader_share"], 4), "note": note})
    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown_table(rows))
    if args.chart:
        write_chart(rows, args.chart, image_size=args.image_size)
    if args.json:
        print(json.dumps(rows))
        return rows
    print(f"{'model':<16}{'mode':<22}{'batch':>6}{'threads':>8}{'img/s':>10}{'step s':>9}{'reader %':>9}{'peak MB':>9}  note")
    for r in rows:
        ips = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.2f}"
        st = "-" if r.get("step_s") is None else f"{r['step_s']:.3f}"
        rs = "-" if r.get("reader_share") is None else f"{100 * r['reader_share']:.1f}"
        pk = "-" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.0f}"
        print(f"{r['model']:<16}{r['mode']:<22}{r['batch']:>6}{r['threads']:>8}{ips:>10}{st:>9}{rs:>9}{pk:>9}"
              f"  {r.get('note') or ''}")
    lines = comparison_lines(rows)
    if lines:
        print("\ninference, images/s (ratio to the fastest; timed in alternating windows in this run):")
        for line in lines:
            print("  " + line)
        if "int8" in modes:
            print(f"  int8: {INT8_NOTE}")
    if args.markdown:
        print(f"wrote {args.markdown}")
    if args.chart:
        print(f"wrote {args.chart}")
    return rows


# -- commands with their own command line ----------------------------------------------------------------
def passthrough(p):
    p.add_argument("rest", nargs="...", help="the command's own arguments (--help for them)")


ARGUMENTS["visualize"] = passthrough
ARGUMENTS["serve"] = passthrough
ARGUMENTS["det"] = passthrough
ARGUMENTS["seg"] = passthrough


def visualize(args):
    """Attention masks or Grad-CAM panels: ppcls visualize -c CONFIG --mode attention|cam --images ... --out DIR"""
    from ..visual.cli import main as visualize_main
    return visualize_main(args.rest)


def serve(args):
    """An HTTP inference service for an exported model: ppcls serve --model-dir DIR --port 8866"""
    from ..serving.cli import main as serve_main
    return serve_main(args.rest)


def det(args):
    """Detection on PaddleDetection with the zoo's backbones: ppcls det train|eval|infer|export -c CONFIG ..."""
    from ..det.cli import main as det_main  # imports ppdet: only here, never on `import ppcls`
    return det_main(args.rest)


def seg(args):
    """Segmentation on PaddleSeg with the zoo's backbones: ppcls seg train|val|predict|export --config CONFIG ..."""
    from ..seg.cli import main as seg_main  # imports paddleseg: only here, never on `import ppcls`
    return seg_main(args.rest)
