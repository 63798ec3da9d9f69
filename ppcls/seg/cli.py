"""``ppcls seg train|val|predict|export|infer``: PaddleSeg's tools with this project's networks.

The flags are PaddleSeg's own (``tools/train.py``, ``val.py``, ``predict.py``, ``export.py`` of its
repository), so its configs and commands carry over:

    ppcls seg train --config configs/segmentation/digits/dlaup_dla34_digits.yaml --do_eval --use_vdl --save_dir out
    ppcls seg val --config CONFIG --model_path out/best_model/model.pdparams
    ppcls seg predict --config CONFIG --model_path out/best_model/model.pdparams --image_path IMG|DIR|LIST
    ppcls seg export --config CONFIG --model_path out/best_model/model.pdparams --save_dir out/export
    ppcls seg infer --model_dir out/export --image_path IMG|DIR|LIST --save_dir out/infer
    python -m paddle.distributed.launch --nproc_per_node 2 tools/seg/train.py --config CONFIG ...

``infer`` runs the export with Paddle Inference (``deploy.py``). Before training or evaluating, a
``type: Dataset`` section's file list is checked line by line (``data_check.py``).
"""
import argparse
import os

from ..utils.errors import ConfigError


def _common(p):
    p.add_argument("--config", required=True, help="the PaddleSeg config (YAML)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu", "xpu", "npu", "mlu"],
                   help="auto: the GPU when Paddle has CUDA, else the CPU")
    p.add_argument("--opts", nargs="+", default=None, help="override config keys: key=value ...")


def _train_args(p):
    _common(p)
    p.add_argument("--save_dir", default="./output")
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--do_eval", action="store_true", help="evaluate at every save_interval, keep best_model")
    p.add_argument("--use_vdl", action="store_true", help="log to VisualDL in save_dir")
    p.add_argument("--resume_model", default=None, help="an iter_N directory of save_dir")
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=None, help="per process")
    p.add_argument("--learning_rate", type=float, default=None)
    p.add_argument("--save_interval", type=int, default=1000)
    p.add_argument("--log_iters", type=int, default=10)
    p.add_argument("--keep_checkpoint_max", type=int, default=5)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    p.add_argument("--amp_level", default="O1", choices=["O1", "O2"])
    p.add_argument("--repeats", type=int, default=1, help="repeat the train list this many times per epoch")


def _eval_options(p, prefix):
    p.add_argument(f"--aug_{prefix}", action="store_true", help="multi-scale / flip augmentation")
    p.add_argument("--scales", nargs="+", type=float, default=1.0)
    p.add_argument("--flip_horizontal", action="store_true")
    p.add_argument("--flip_vertical", action="store_true")
    p.add_argument("--is_slide", action="store_true", help="sliding-window inference")
    p.add_argument("--crop_size", nargs=2, type=int, default=None, help="window width height")
    p.add_argument("--stride", nargs=2, type=int, default=None, help="window stride width height")


def _val_args(p):
    _common(p)
    p.add_argument("--model_path", required=True, help="model.pdparams of a checkpoint")
    p.add_argument("--num_workers", type=int, default=0)
    _eval_options(p, "eval")


def _predict_args(p):
    _common(p)
    p.add_argument("--model_path", required=True)
    p.add_argument("--image_path", required=True, help="an image, a directory or a list file")
    p.add_argument("--save_dir", default="./output/result")
    p.add_argument("--custom_color", nargs="+", type=int, default=None, help="r g b per class")
    _eval_options(p, "pred")


def _export_args(p):
    _common(p)
    p.add_argument("--model_path", default=None, help="model.pdparams (none: the config's initial weights)")
    p.add_argument("--save_dir", default="./output/inference_model")
    p.add_argument("--input_shape", nargs=4, type=int, default=None, help="N C H W (-1: any)")
    p.add_argument("--output_op", default="argmax", choices=["argmax", "softmax", "none"])


def _infer_args(p):
    p.add_argument("--model_dir", required=True, help="a directory written by `ppcls seg export`")
    p.add_argument("--image_path", required=True, help="an image, a directory or a list file")
    p.add_argument("--save_dir", default="./output/infer")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--disable_mkldnn", action="store_true")
    p.add_argument("--cpu_threads", type=int, default=None)


# -- shared steps ------------------------------------------------------------------------------------
def _set_device(device):
    import paddle
    if device == "auto":
        device = "gpu" if paddle.is_compiled_with_cuda() else "cpu"
    paddle.set_device(device)
    return device


def _config(args, **overrides):
    if not os.path.isfile(args.config):
        raise ConfigError(f"--config: file not found: {args.config}")
    from paddleseg.cvlibs import Config
    for opt in args.opts or []:
        if "=" not in opt:
            raise ConfigError(f"--opts: {opt!r} is not key=value")
    try:
        return Config(args.config, opts=args.opts, **overrides)
    except (ValueError, RuntimeError, AssertionError, KeyError, TypeError) as e:
        raise ConfigError(f"{args.config}: {_one_line(e)}") from None


def _one_line(e):
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    # PaddleSeg's builder wraps the real reason in two lines of advice: keep the first and the last
    return " ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else type(e).__name__


def _build(state, what, config_path):
    """``state["builder"].<what>`` with PaddleSeg's build failures as one line naming the config."""
    try:
        return getattr(state["builder"], what)
    except ConfigError:
        raise
    except (ValueError, RuntimeError, AssertionError, KeyError, TypeError, FileNotFoundError) as e:
        raise ConfigError(f"{config_path}: cannot build {what}: {_one_line(e)}") from None


def _builder(args, cfg=None):
    import paddle
    from paddleseg.cvlibs import SegBuilder
    cfg = cfg or _config(args)
    state = {"cfg": cfg, "builder": SegBuilder(cfg)}
    # fixed parameter names: a checkpoint's optimizer state matches the model built in another run
    with paddle.utils.unique_name.guard():
        state["model"] = _build(state, "model", args.config)
    return state


def _check_data(cfg, modes, config_path):
    from .data_check import check_dataset_config
    sections = {"train": cfg.train_dataset_cfg, "val": cfg.val_dataset_cfg}
    for mode in modes:
        check_dataset_config(sections[mode], mode, f"{config_path}: {mode}_dataset")


def _load(model, path, what="--model_path"):
    if not path or not os.path.isfile(path):
        raise ConfigError(f"{what}: file not found: {path}")
    from paddleseg.utils import utils
    utils.load_entire_model(model, path)


def _image_list(image_path):
    if not os.path.exists(image_path):
        raise ConfigError(f"--image_path: not found: {image_path}")
    from paddleseg.utils import get_image_list
    try:
        images, image_dir = get_image_list(image_path)
    except RuntimeError:  # PaddleSeg's "There are not image file in ...": an empty folder or list
        raise ConfigError(f"--image_path: no images in {image_path}") from None
    missing = [p for p in images if not os.path.isfile(p)]
    if missing:
        raise ConfigError(f"--image_path {image_path}: image not found: {missing[0]}")
    return images, image_dir


def _test_config(args):
    return dict(aug_eval=getattr(args, "aug_eval", False), scales=args.scales,
                flip_horizontal=args.flip_horizontal, flip_vertical=args.flip_vertical,
                is_slide=args.is_slide, crop_size=args.crop_size, stride=args.stride)


# -- commands ----------------------------------------------------------------------------------------
def train(args):
    import paddle
    device = _set_device(args.device)
    from paddleseg.utils import utils
    utils.set_seed(args.seed)
    cfg = _config(args, iters=args.iters, batch_size=args.batch_size, learning_rate=args.learning_rate)
    _check_data(cfg, ["train"] + (["val"] if args.do_eval else []), args.config)
    if args.resume_model and not os.path.isfile(os.path.join(args.resume_model, "model.pdparams")):
        raise ConfigError(f"--resume_model: {args.resume_model} holds no model.pdparams (give an iter_N directory)")
    # fixed parameter and optimizer-state names (they come from a process-wide counter): a checkpoint's
    # optimizer state then matches the model of a later run, in this process too
    with paddle.utils.unique_name.guard():
        _train(args, cfg, device)
    return 0


def _train(args, cfg, device):
    from paddleseg.core import train as seg_train
    from paddleseg.cvlibs import SegBuilder
    from paddleseg.utils import utils
    state = {"builder": SegBuilder(cfg)}
    model = _build(state, "model", args.config)
    optimizer = _build(state, "optimizer", args.config)
    model = utils.convert_sync_batchnorm(model, device)
    train_dataset = _build(state, "train_dataset", args.config)
    if args.repeats > 1:
        train_dataset.file_list *= args.repeats
    val_dataset = _build(state, "val_dataset", args.config) if args.do_eval else None
    losses = _build(state, "loss", args.config)
    seg_train(model, train_dataset, val_dataset=val_dataset, optimizer=optimizer, save_dir=args.save_dir,
              iters=cfg.iters, batch_size=cfg.batch_size, resume_model=args.resume_model,
              save_interval=args.save_interval, log_iters=args.log_iters, num_workers=args.num_workers,
              use_vdl=args.use_vdl, losses=losses, keep_checkpoint_max=args.keep_checkpoint_max,
              test_config=cfg.test_config, precision=args.precision, amp_level=args.amp_level,
              to_static_training=cfg.to_static_training)


def val(args):
    from paddleseg.core import evaluate
    _set_device(args.device)
    cfg = _config(args)
    _check_data(cfg, ["val"], args.config)
    state = _builder(args, cfg)
    _load(state["model"], args.model_path)
    dataset = _build(state, "val_dataset", args.config)
    test_config = dict(state["cfg"].test_config or {})
    # the flags given (not at their defaults) override the config's; "v not in (None, False, 1.0)" would drop
    # True as well, since True == 1.0
    test_config.update({k: v for k, v in _test_config(args).items()
                        if v is not None and v is not False and not (k == "scales" and v == 1.0)})
    # PaddleSeg's evaluate prints "[EVAL] #Images: N mIoU: .. Acc: .. Kappa: .. Dice: .." and the per-class IoU
    evaluate(state["model"], dataset, num_workers=args.num_workers, **test_config)
    return 0


def predict(args):
    from paddleseg.core import predict as seg_predict
    from paddleseg.transforms import Compose
    _set_device(args.device)
    if not os.path.isfile(args.model_path):
        raise ConfigError(f"--model_path: file not found: {args.model_path}")
    state = _builder(args)  # PaddleSeg's predict loads the weights
    images, image_dir = _image_list(args.image_path)
    transforms = Compose(_build(state, "val_transforms", args.config))
    options = {k: v for k, v in _test_config(args).items() if k != "aug_eval"}
    seg_predict(state["model"], model_path=args.model_path, transforms=transforms, image_list=images,
                image_dir=image_dir, save_dir=args.save_dir, aug_pred=args.aug_pred,
                custom_color=args.custom_color, **options)
    return 0


def export(args):
    from .deploy import export_model
    _set_device("cpu" if args.device == "auto" else args.device)
    state = _builder(args)
    if args.model_path:
        _load(state["model"], args.model_path)
    transforms = (state["cfg"].val_dataset_cfg or {}).get("transforms") or [{"type": "Normalize"}]
    files = export_model(state["model"], args.save_dir, transforms, args.input_shape, args.output_op)
    print(f"exported to {args.save_dir}: {', '.join(files)}")
    return 0


def infer(args):
    import cv2
    from paddleseg.utils import visualize
    from .deploy import SegPredictor
    images, image_dir = _image_list(args.image_path)
    predictor = SegPredictor(args.model_dir, enable_mkldnn=not args.disable_mkldnn, cpu_threads=args.cpu_threads,
                             use_gpu=args.device == "gpu")
    color_map = visualize.get_color_map_list(256)
    for path in images:
        mask = predictor.predict_one(path)
        rel = os.path.relpath(path, image_dir) if image_dir else os.path.basename(path)
        out = os.path.join(args.save_dir, "pseudo_color_prediction", os.path.splitext(rel)[0] + ".png")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        visualize.get_pseudo_color_map(mask, color_map).save(out)
        added = os.path.join(args.save_dir, "added_prediction", rel)
        os.makedirs(os.path.dirname(added), exist_ok=True)
        cv2.imwrite(added, visualize.visualize(path, mask, color_map, weight=0.6))
    print(f"predicted {len(images)} images with {args.model_dir}: masks in "
          f"{os.path.join(args.save_dir, 'pseudo_color_prediction')}, overlays in {os.path.join(args.save_dir, 'added_prediction')}")
    return 0


COMMANDS = {
    "train": (train, _train_args, "train a PaddleSeg config"),
    "val": (val, _val_args, "evaluate a checkpoint: mIoU, Acc, Kappa, Dice"),
    "predict": (predict, _predict_args, "colour masks and overlays of images with the dygraph model"),
    "export": (export, _export_args, "export to Paddle Inference with PaddleSeg's deploy.yaml"),
    "infer": (infer, _infer_args, "colour masks and overlays of images with an exported model"),
}


def parser():
    p = argparse.ArgumentParser(prog="ppcls seg", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, add_args, help_text) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return p


def main(argv=None):
    """Parse ``argv`` (``train ...``) and run; importing this module went through ``ppcls.seg``, which
    checked the PaddleSeg version, applied the fixes and registered the models."""
    import sys
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    if args.command is None:
        p.print_help()
        return 2
    return COMMANDS[args.command][0](args)
