"""``tools/visualize.py`` and ``ppcls visualize``: attention masks or Grad-CAM of a config's model for
some images, as PNG panels and optionally VisualDL image records. (The evaluation report is
``tools/eval.py -o Global.report_dir=DIR``.)

    python tools/visualize.py -c CONFIG [-o Global.pretrained_model=...] --mode attention|cam
        --images PATH [PATH ...] --out DIR [--class-id K] [--stage S] [--vdl DIR]

The model is built from ``Arch`` and loaded from ``Global.pretrained_model``; the images are read and
preprocessed with ``Infer.transforms``, exactly as ``tools/infer.py`` does. The pictures show the
images after the geometric part of those transforms (resize, crop: everything but DecodeImage,
NormalizeImage and ToCHWImage), i.e. aligned with what the network sees. ``main`` raises
ConfigError (one line naming the culprit) for user errors; the tool runs it under ``run_guarded``.
"""
import argparse
import os

import numpy as np
import paddle

from ..utils.errors import ConfigError

MODES = ("attention", "cam")
_NON_GEOMETRIC = ("DecodeImage", "NormalizeImage", "ToCHWImage")


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes as one-line ConfigErrors (exit 2 under run_guarded), not usage dumps."""

    def error(self, message):
        raise ConfigError(f"{self.prog}: {message}")


def build_parser(prog="tools/visualize.py"):
    p = _Parser(prog=prog, description="Attention masks (Residual Attention nets) or Grad-CAM overlays of a "
                                       "config's model, as PNGs.")
    p.add_argument("-c", "--config", required=True, help="YAML config file (Arch, Infer.transforms)")
    p.add_argument("-o", "--override", action="append", default=[],
                   help="override a config value, e.g. -o Global.pretrained_model=output/X/best_model")
    p.add_argument("--mode", required=True, choices=MODES,
                   help="attention: every attention module's soft mask; cam: Grad-CAM")
    p.add_argument("--images", nargs="+", required=True, help="image files or folders")
    p.add_argument("--out", required=True, help="folder for the PNG files")
    p.add_argument("--class-id", type=int, default=None, help="cam: explain this class (default: the predicted one)")
    p.add_argument("--stage", default=None,
                   help="cam: stage index or name of model.feature_info, or a sublayer name (default: the last stage)")
    p.add_argument("--vdl", default=None, help="also write the pictures as VisualDL image records into this log dir")
    p.add_argument("--step", type=int, default=0, help="the VisualDL step of the records (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--max-images", type=int, default=0, help="use only the first N images (0: all)")
    return p


def expand_images(paths, limit=0):
    """Image files given directly, and the images inside given folders (sorted, recursive)."""
    from ..inference.pipeline import IMAGE_EXTS
    files = []
    for path in paths:
        if os.path.isfile(path):
            files.append(path)
        elif os.path.isdir(path):
            found = []
            for root, _, names in sorted(os.walk(path)):
                found += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(IMAGE_EXTS)]
            if not found:
                raise ConfigError(f"--images: no images in {path}")
            files += found
        else:
            raise ConfigError(f"--images: not found: {path}")
    return files[:limit] if limit else files


class ImageLoader:
    """Reads image files into (network input CHW float32, display HWC uint8 RGB aligned with it) with the
    config's ``Infer.transforms``."""

    def __init__(self, transforms):
        from ..data.preprocess import create_operators
        from ..inference.pipeline import Preprocess
        if not transforms:
            raise ConfigError("Infer.transforms: required (the preprocessing of --images)")
        self.preprocess = Preprocess(transforms)
        geometric = [op for op in transforms if not any(k in op for k in _NON_GEOMETRIC)]
        self.display_ops = create_operators(geometric, "Infer.transforms")

    def __call__(self, path):
        from ..data.preprocess import DecodeError
        from ..inference.pipeline import read_rgb
        img = read_rgb(path)
        if img is None:
            raise ConfigError(f"--images: {path} cannot be read as an image")
        try:
            x = self.preprocess(img)
            shown = img
            for op in self.display_ops:
                shown = op(shown)
        except DecodeError as e:
            raise ConfigError(f"--images: {path}: {e}") from None
        shown = np.asarray(shown)
        if shown.ndim == 3 and shown.shape[0] == 3 and shown.shape[2] != 3:
            shown = shown.transpose(1, 2, 0)
        shown = np.clip(shown, 0, 255).astype(np.uint8)
        if shown.shape[:2] != tuple(x.shape[1:3]):
            import cv2
            shown = cv2.resize(shown, (int(x.shape[2]), int(x.shape[1])), interpolation=cv2.INTER_LINEAR)
        return x, shown


def build_from_config(config):
    """(model in eval mode, Arch.name) from a config: ``Arch`` + ``Global.pretrained_model``."""
    from ..inference.infer import model_from_config
    if not isinstance(config.get("Arch"), dict) or "name" not in config["Arch"]:
        raise ConfigError("Arch.name: required")
    return model_from_config(config, purpose="visualising")


def _chunks(shapes, batch_size):
    """Indices grouped by input shape (images of one shape share a forward pass), in batches."""
    groups = {}
    for i, s in enumerate(shapes):
        groups.setdefault(s, []).append(i)
    for idx in groups.values():
        for a in range(0, len(idx), batch_size):
            yield idx[a:a + batch_size]


def _class_count(model):
    for attr in ("class_num", "num_classes"):
        v = getattr(model, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _attention(model, inputs, shown, stems, args):
    from .attention import AttentionMask, attention_masks, save_attention_panels
    per_module = None
    for idx in _chunks([x.shape for x in inputs], args.batch_size):
        masks = attention_masks(model, np.stack([inputs[i] for i in idx]))
        if per_module is None:
            per_module = [(m, [None] * len(inputs)) for m in masks]
        for (_, heats), m in zip(per_module, masks):
            for j, i in enumerate(idx):  # back into the order of --images
                heats[i] = m.mask[j]
    merged = [AttentionMask(m.name, m.layer, m.stage, heats, m.native_shape) for m, heats in per_module]
    return [(f"attention/{name}", path, arr) for name, path, arr in save_attention_panels(shown, merged, args.out, stems)]


def _cam(model, inputs, shown, stems, files, class_names, args):
    from ..utils.logger import logger
    from .gradcam import CamResult, grad_cam, save_cam_overlays, valid_stages
    results = [None] * len(inputs)
    for idx in _chunks([x.shape for x in inputs], args.batch_size):
        r = grad_cam(model, np.stack([inputs[i] for i in idx]), args.class_id, args.stage)
        if r.feature_size == (1, 1):
            logger.warning(f"{r.target} is 1x1 at this input size: its Grad-CAM is uniform; "
                           f"choose an earlier stage with --stage ({valid_stages(model)})")
        for j, i in enumerate(idx):  # back into the order of --images
            results[i] = (r.cams[j], int(r.class_ids[j]), float(r.scores[j]), r.target)
    for f, (_, cid, score, target) in zip(files, results):
        label = f" '{class_names[cid]}'" if class_names and cid < len(class_names) and class_names[cid] else ""
        print(f"{f}: class {cid}{label}, p={score:.4f} ({target})", flush=True)
    combined = CamResult([r[0] for r in results], np.array([r[1] for r in results], dtype=np.int64),
                         np.array([r[2] for r in results], dtype=np.float32), None, results[0][3], None)
    return [(f"gradcam/{name}", path, arr) for name, path, arr in
            save_cam_overlays(shown, combined, args.out, stems, class_names, predicted=args.class_id is None)]


def run(args):
    """Run parsed arguments; returns ``[(tag, path, HWC uint8 array)]`` of the pictures written."""
    from .attention import mask_branches
    from .gradcam import resolve_stage

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: a positive number, got {args.batch_size}")
    if args.mode != "cam" and (args.class_id is not None or args.stage is not None):
        raise ConfigError(f"--class-id / --stage: only with --mode cam, not --mode {args.mode}")
    from ..schema import get_config
    config = get_config(args.config, args.override)
    model, arch_name = build_from_config(config)
    infer_cfg = config.get("Infer") or {}
    if args.mode == "attention" and not mask_branches(model):
        raise ConfigError(f"--mode attention: {arch_name} has no attention modules (mask branches); use a "
                          f"Residual Attention network (AttentionNet*) or --mode cam")
    if args.mode == "cam":
        try:
            resolve_stage(model, args.stage, arch_name)
        except ConfigError as e:
            raise ConfigError(f"--{e}") from None
        n_cls = _class_count(model)
        if args.class_id is not None and (args.class_id < 0 or (n_cls and args.class_id >= n_cls)):
            raise ConfigError(f"--class-id {args.class_id}: {arch_name} has classes 0..{(n_cls or 1) - 1}")
    post = infer_cfg.get("PostProcess") or {}
    from ..inference.labels import label_names
    class_names = label_names(post.get("class_id_map_file"))
    loader = ImageLoader(infer_cfg.get("transforms"))
    files = expand_images(args.images, args.max_images)
    loaded = [loader(f) for f in files]  # every image is checked before any picture is written
    inputs = [x for x, _ in loaded]
    shown = [s for _, s in loaded]
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    if args.mode == "attention":
        written = _attention(model, inputs, shown, stems, args)
    else:
        written = _cam(model, inputs, shown, stems, files, class_names, args)
    for _, path, _ in written:
        print(f"wrote {path}", flush=True)
    if args.vdl:
        from .vdl import write_images
        write_images(args.vdl, [(tag, arr) for tag, _, arr in written], args.step)
        print(f"wrote {len(written)} VisualDL image records to {args.vdl} (visualdl --logdir {args.vdl})", flush=True)
    return written


def main(argv=None):
    """Parse ``argv`` (default: sys.argv[1:]) and run; raises ConfigError for user errors."""
    return run(build_parser().parse_args(argv))
