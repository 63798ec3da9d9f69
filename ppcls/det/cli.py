"""``ppcls det train|eval|infer|export``: PaddleDetection's tools with its flags and config keys, for
detectors whose backbones may be the zoo's models.

    ppcls det train  -c CONFIG [-o key=value ...] [--eval] [-r CKPT] [--use_vdl] [--vdl_log_dir DIR]
    ppcls det eval   -c CONFIG [-o weights=CKPT] [--output_eval DIR] [--classwise]
    ppcls det infer  -c CONFIG (--infer_img IMG | --infer_dir DIR) [--output_dir DIR] [--draw_threshold T]
    ppcls det export -c CONFIG [--output_dir DIR]

Under ``python -m paddle.distributed.launch`` the training runs data-parallel (GPUs, or CPU processes
over gloo), each worker's log in ``log/workerlog.N``.
"""
import argparse
import glob
import os
import sys

from ..utils.errors import ConfigError, run_guarded

COMMANDS = ("train", "eval", "infer", "export")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def build_parser(command=None):
    p = argparse.ArgumentParser(prog="ppcls det" + (f" {command}" if command else ""),
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if command is None:
        p.add_argument("command", choices=COMMANDS)
    p.add_argument("-c", "--config", required=True, help="PaddleDetection config (.yml)")
    p.add_argument("-o", "--opt", nargs="*", action="extend", default=[],
                   help="override config keys: key=value or Section.key=value (YAML values)")
    p.add_argument("--eval", action="store_true", help="train: evaluate after each snapshot, keep best_model")
    p.add_argument("-r", "--resume", default=None, help="train: resume from this checkpoint prefix")
    p.add_argument("--use_vdl", action="store_true", help="log to VisualDL")
    p.add_argument("--vdl_log_dir", default="vdl_log_dir/scalar", help="VisualDL log folder")
    p.add_argument("--output_eval", default=None, help="eval: write bbox.json (segm.json) here")
    p.add_argument("--classwise", action="store_true", help="eval: per-class AP")
    p.add_argument("--save_prediction_only", action="store_true", help="eval: write the json, skip the AP")
    p.add_argument("--infer_img", default=None, help="infer: one image")
    p.add_argument("--infer_dir", default=None, help="infer: a folder of images")
    p.add_argument("--output_dir", default=None,
                   help="infer: where drawn images go (default output); export: model folder "
                        "(default output_inference)")
    p.add_argument("--draw_threshold", type=float, default=0.5, help="infer: score threshold to draw")
    p.add_argument("--save_results", action="store_true", help="infer: also write bbox.json")
    p.add_argument("--amp", action="store_true", help="train: automatic mixed precision (GPU)")
    return p


def parse_args(argv):
    argv = list(argv)
    if argv and argv[0] in COMMANDS:
        args = build_parser(argv[0]).parse_args(argv[1:])
        args.command = argv[0]
        return args
    return build_parser().parse_args(argv)


def _select_device(cfg):
    import paddle
    from ..utils.logger import logger
    want_gpu = bool(cfg.get("use_gpu", False))
    if want_gpu and not paddle.is_compiled_with_cuda():
        logger.info("use_gpu: this PaddlePaddle has no CUDA; running on the CPU")
        want_gpu = False
    cfg.use_gpu = want_gpu
    for key in ("use_xpu", "use_npu", "use_mlu"):
        cfg[key] = bool(cfg.get(key, False))
    paddle.set_device("gpu" if want_gpu else "cpu")


def _check_datasets(cfg, names):
    """Name bad COCO annotation files (file + id) before ppdet parses them."""
    try:
        from .coco_check import check_coco
    except ImportError:  # the checker ships with the demo data
        return
    from ppdet.core.workspace import global_config
    for name in names:
        ds = global_config.get(name)
        if not isinstance(ds, dict) or ds.get("name") != "COCODataSet":
            continue
        root = ds.get("dataset_dir") or ""
        ann = os.path.join(root, ds.get("anno_path") or "")
        image_dir = os.path.join(root, ds.get("image_dir") or "")
        check_coco(ann, image_dir, where=name, load_crowd=bool(ds.get("load_crowd", False)))


def _disable_backbone_weights(cfg):
    """A run that loads a whole detector does not need the backbone's ImageNet weights first (they may be
    a manual download)."""
    from ppdet.core.workspace import global_config
    from .backbones import REGISTERED
    from .config import backbone_name
    name = backbone_name(cfg)
    if name in REGISTERED:
        global_config[name]["pretrained"] = None


def _name_masks_segm(folder):
    """ppdet writes the masks' COCO results as mask.json; COCO's and mmdetection's name is segm.json."""
    import shutil
    masks = os.path.join(folder, "mask.json")
    if os.path.isfile(masks):
        shutil.copyfile(masks, os.path.join(folder, "segm.json"))


def _images(args):
    if args.infer_img:
        if not os.path.isfile(args.infer_img):
            raise ConfigError(f"--infer_img: {args.infer_img} not found")
        return [os.path.abspath(args.infer_img)]
    if args.infer_dir:
        if not os.path.isdir(args.infer_dir):
            raise ConfigError(f"--infer_dir: {args.infer_dir} is not a folder")
        found = sorted(f for f in glob.glob(os.path.join(args.infer_dir, "*"))
                       if f.lower().endswith(IMAGE_EXTS) and os.path.isfile(f))
        if not found:
            raise ConfigError(f"--infer_dir: no {'/'.join(IMAGE_EXTS)} images in {args.infer_dir}")
        return [os.path.abspath(f) for f in found]
    raise ConfigError("infer: give --infer_img IMAGE or --infer_dir FOLDER")


def run(args):
    import ppcls.det  # noqa: F401  (checks ppdet, applies the fixes, registers the backbones)
    import paddle
    from .config import load_det_config

    cfg = load_det_config(args.config, args.opt)
    cfg.use_vdl = args.use_vdl
    cfg.vdl_log_dir = args.vdl_log_dir
    cfg.classwise = args.classwise
    cfg.save_prediction_only = args.save_prediction_only
    if args.amp:
        cfg.amp = True
    if args.output_eval:
        cfg.output_eval = args.output_eval
        os.makedirs(args.output_eval, exist_ok=True)
    _select_device(cfg)
    nranks = paddle.distributed.get_world_size()
    if nranks > 1 and args.command == "train":
        paddle.distributed.init_parallel_env()

    # parameter and optimizer-state names (which a .pdopt is keyed by) come from a per-process counter;
    # a fresh namespace numbers them the same in every run, whatever was built before in the process
    with paddle.utils.unique_name.guard():
        return _run_command(args, cfg)


def _run_command(args, cfg):
    from ppdet.engine import Trainer
    from .checkpoint import load_detector_weights, load_pretrain_weights, resume
    if args.command == "train":
        if args.resume:
            _disable_backbone_weights(cfg)
        _check_datasets(cfg, ["TrainDataset"] + (["EvalDataset"] if args.eval else []))
        trainer = Trainer(cfg, mode="train")
        if args.resume:
            resume(trainer, args.resume)
        elif cfg.get("pretrain_weights"):
            load_pretrain_weights(trainer.model, cfg.pretrain_weights)
        trainer.train(args.eval)
        return trainer
    weights = cfg.get("weights")
    if not weights:
        raise ConfigError(f"weights: required for {args.command} (-o weights=path/to/model_final)")
    if "://" not in str(weights) and not os.path.isfile(str(weights).removesuffix(".pdparams") + ".pdparams"):
        raise ConfigError(f"weights: {str(weights).removesuffix('.pdparams')}.pdparams not found")
    _disable_backbone_weights(cfg)
    if args.command == "eval":
        _check_datasets(cfg, ["EvalDataset"])
        trainer = Trainer(cfg, mode="eval")
        load_detector_weights(trainer.model, weights)
        trainer.evaluate()
        _name_masks_segm(args.output_eval or ".")
        return trainer
    if args.command == "infer":
        images = _images(args)
        trainer = Trainer(cfg, mode="test")
        load_detector_weights(trainer.model, weights)
        out = args.output_dir or "output"
        trainer.predict(images, draw_threshold=args.draw_threshold, output_dir=out, save_results=args.save_results)
        return trainer
    from .export import export_detector
    trainer = Trainer(cfg, mode="test")
    load_detector_weights(trainer.model, weights)
    return export_detector(trainer, args.output_dir or "output_inference")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_guarded(run, args)


if __name__ == "__main__":
    main()
