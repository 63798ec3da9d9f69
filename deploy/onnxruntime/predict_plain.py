"""Top-1 of images from an exported inference.onnx alone (numpy + PIL + onnxruntime): the preprocessing,
labels and model name come from the file's metadata_props.   python predict_plain.py MODEL.onnx IMAGE..."""
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
props = sess.get_modelmeta().custom_metadata_map  # this project's keys hold JSON (other tools add their own)
meta = {k: json.loads(props[k]) for k in ("model_name", "labels", "color_order", "resize", "center_crop", "scale",
                                          "mean", "std", "output")}
filters = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "area": Image.BOX,
           "lanczos": Image.LANCZOS}
for path in sys.argv[2:]:
    img = Image.open(path).convert(meta["color_order"])
    if meta["resize"]:  # {"resize_short": n} or {"size": [w, h]}, and the interpolation
        r, (w, h) = meta["resize"], img.size
        s = r.get("resize_short", 0) / min(w, h)
        img = img.resize((round(w * s), round(h * s)) if s else tuple(r["size"]), filters[r["interpolation"]])
    if meta["center_crop"]:
        (cw, ch), (w, h) = meta["center_crop"], img.size
        img = img.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))
    x = (np.asarray(img, np.float32) * meta["scale"] - np.float32(meta["mean"])) / np.float32(meta["std"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
    probs = out if meta["output"] == "probabilities" else np.exp(out - out.max()) / np.exp(out - out.max()).sum()
    top = int(probs.argmax())
    label = meta["labels"][top] if meta["labels"] else ""
    print(f"{path}\t{meta['model_name']}\tclass {top} {label}\tscore {probs[top]:.5f}")
