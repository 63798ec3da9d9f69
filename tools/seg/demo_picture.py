"""Draw a segmentation model's predictions on a few val canvases as one picture, one row per canvas:
image | ground truth | prediction | prediction over the image (class colours are PaddleSeg's, as
`ppcls seg predict` writes them).

    python tools/seg/demo_picture.py --config configs/segmentation/digits/dlaup_dla46_c_digits.yaml \
        --model_path output/seg_digits/best_model/model.pdparams --out docs/images/seg_digits_dlaup.png
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppcls.utils.errors import ConfigError, run_guarded  # noqa: E402

HEADER = 18  # pixels of column titles above the rows
TITLES = ("image", "truth", "prediction", "overlay")
OVERLAY_WEIGHT = 0.6


def _rows(model, dataset, indices):
    """(image RGB uint8, label, prediction) of the val ``dataset`` canvases at ``indices``."""
    import cv2
    import numpy as np
    import paddle
    model.eval()
    for i in indices:
        image_path, _ = dataset.file_list[i]
        sample = dataset[i]
        with paddle.no_grad():
            scores = model(paddle.to_tensor(sample["img"][None]))[0]
        pred = paddle.argmax(scores, axis=1)[0].numpy().astype(np.uint8)
        image = cv2.cvtColor(cv2.imread(image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        label = np.asarray(sample["label"]).reshape(pred.shape).astype(np.uint8)
        if image.shape[:2] != pred.shape:
            raise ConfigError(f"{image_path}: the val transforms resize the canvas ({image.shape[:2]} -> "
                              f"{pred.shape}); the picture needs the canvases at their own size")
        yield image, label, pred


def compose(rows, num_classes):
    """One RGB uint8 picture: a title strip, then per row image | truth | prediction | overlay."""
    import cv2
    import numpy as np
    from paddleseg.utils import visualize
    palette = np.asarray(visualize.get_color_map_list(max(num_classes, 256)), np.uint8).reshape(-1, 3)
    blocks = []
    for image, label, pred in rows:
        # ignored label pixels (255) are drawn white
        truth = np.where((label == 255)[..., None], 255, palette[np.minimum(label, len(palette) - 1)])
        coloured = palette[pred]
        # background (class 0) left as it is so the digits' colours stand out on the canvas
        blend = (1 - OVERLAY_WEIGHT) * image + OVERLAY_WEIGHT * coloured
        overlay = np.where((pred > 0)[..., None], blend, image).astype(np.uint8)
        blocks.append(np.concatenate([image, truth.astype(np.uint8), coloured, overlay], axis=1))
    body = np.concatenate(blocks, axis=0)
    width = body.shape[1] // len(TITLES)
    header = np.full((HEADER, body.shape[1], 3), 255, np.uint8)
    for k, title in enumerate(TITLES):
        cv2.putText(header, title, (k * width + 4, HEADER - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([header, body], axis=0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the PaddleSeg config the model was trained with")
    p.add_argument("--model_path", required=True, help="model.pdparams of a checkpoint")
    p.add_argument("--out", required=True, help="the picture to write (.png)")
    p.add_argument("--indices", nargs="+", type=int, default=[0, 1, 2, 3], help="val canvases to draw")
    p.add_argument("--opts", nargs="+", default=None, help="override config keys: key=value ...")
    args = p.parse_args(argv)
    import cv2
    import paddle
    import ppcls.seg  # noqa: F401  (registers the zoo's models and applies the PaddleSeg fixes)
    from ppcls.seg.cli import _build, _builder, _load
    paddle.set_device("cpu")
    state = _builder(args)
    _load(state["model"], args.model_path)
    dataset = _build(state, "val_dataset", args.config)
    bad = [i for i in args.indices if not 0 <= i < len(dataset)]
    if bad:
        raise ConfigError(f"--indices: {bad[0]} is outside the {len(dataset)} val canvases")
    picture = compose(_rows(state["model"], dataset, args.indices), dataset.num_classes)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if not cv2.imwrite(args.out, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise ConfigError(f"--out: cannot write {args.out}")
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]}, {os.path.getsize(args.out) // 1024} KB): "
          f"{', '.join(TITLES)} of val canvases {args.indices}")
    return 0


if __name__ == "__main__":
    run_guarded(main)
