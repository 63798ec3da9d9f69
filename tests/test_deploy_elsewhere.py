"""An export runs outside this project with this project's top-1 (issue 28, items 3-4): PaddleClas 2.6's
unmodified predict_cls.py on the inference_cls.yaml the export writes (from the venv
tools/install_paddleclas26.sh makes), and deploy/onnxruntime/predict_plain.py, which reads nothing but the
ONNX file's metadata_props, on the fp32 and the INT8 model."""
import ast
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from engine_utils import ROOT
from ppcls.inference.onnx_metadata import metadata, read_onnx_metadata
from ppcls.inference.paddleclas_deploy import _paddleclas_ops
from ppcls.inference.preprocess_spec import describe
from ppcls.utils.errors import ConfigError

PLAIN = os.path.join(ROOT, "deploy", "onnxruntime", "predict_plain.py")
DEPLOY_CFG = os.path.join(ROOT, "deploy", "configs", "inference_cls.yaml")
LABELS = ["zero", "class one", "two"]  # a name with a space: label files split at the first space only
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


# -- the description of the preprocessing -------------------------------------------------------------------
def test_describe_reads_the_ops_as_the_predictor_runs_them():
    spec = describe([{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"resize_short": 36, "interpolation": 2}},
                     {"CropImage": {"size": 32}}, {"NormalizeImage": {"scale": "1.0/255.0"}}])
    assert spec["resize"] == {"resize_short": 36, "interpolation": "bicubic", "backend": "cv2"}
    assert spec["center_crop"] == [32, 32] and spec["color_order"] == "RGB"
    assert spec["scale"] == pytest.approx(1 / 255) and spec["mean"] == IMAGENET["mean"] and spec["std"] == IMAGENET["std"]
    spec = describe([{"ResizeImage": {"size": [40, 30], "interpolation": "AREA", "backend": "pil"}},
                     {"NormalizeImage": {"scale": 0.5, "mean": [1, 2, 3], "std": [4, 5, 6], "order": ""}},
                     {"ToCHWImage": None}])
    assert spec["resize"] == {"size": [40, 30], "interpolation": "area", "backend": "pil"}
    assert spec["center_crop"] is None and (spec["scale"], spec["mean"], spec["std"]) == (0.5, [1, 2, 3], [4, 5, 6])
    # PaddleClas's PIL resize calls the box filter 'box'; its NormalizeImage 'chw' does not transpose: HWC + ToCHWImage
    ops = _paddleclas_ops(spec)
    assert ops[0] == {"ResizeImage": {"size": [40, 30], "interpolation": "box", "backend": "pil"}}
    assert ops[1]["NormalizeImage"]["order"] == "" and ops[-1] == {"ToCHWImage": None}
    # no NormalizeImage: the uint8 pixels as float
    assert describe([{"ToCHWImage": None}])["scale"] == 1.0


@pytest.mark.parametrize("ops, culprit", [
    ([{"RandFlipImage": None}, {"NormalizeImage": None}], r"transform_ops\.0\.RandFlipImage: .*no equivalent"),
    ([{"CropImage": {"size": 32}}, {"ResizeImage": {"size": 40}}], r"transform_ops\.1\.ResizeImage: after a later"),
    ([{"ResizeImage": {"size": 32, "interpolation": "random"}}], r"ResizeImage\.interpolation: 'random'"),
    ([{"NormalizeImage": {"channel_num": 4}}], r"NormalizeImage: channel_num 4"),
    ([], r"empty"),
])
def test_describe_names_what_has_no_equivalent(ops, culprit):
    with pytest.raises(ConfigError, match=culprit):
        describe(ops)


def test_metadata_reads_both_inference_yml_layouts():
    old = {"model": "DLA46_c", "image_shape": [3, 32, 32], "softmax": True,
           "PreProcess": {"transform_ops": [{"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5] * 3,
                                                                "std": [0.5] * 3, "order": ""}}, {"ToCHWImage": None}]},
           "PostProcess": {"main_indicator": "Topk", "Topk": {"topk": 5, "label_list": None}}}
    props = {k: json.loads(v) for k, v in metadata(old).items()}
    assert props["model_name"] == "DLA46_c" and props["labels"] is None and props["output"] == "probabilities"
    assert props["input_shape"] == [3, 32, 32] and props["resize"] is None and props["scale"] == pytest.approx(1 / 255)
    new = {"Global": {"model_name": "ReXNet_1_0"}, "image_shape": [3, 64, 64], "softmax": False, "precision": "int8",
           "PreProcess": {"transform_ops": [{"ResizeImage": {"size": [64, 64]}}, {"NormalizeImage": {"order": ""}},
                                            {"ToCHWImage": None}]},
           "PostProcess": {"Topk": {"topk": 2, "label_list": LABELS}}}
    props = {k: json.loads(v) for k, v in metadata(new).items()}
    assert (props["model_name"], props["labels"], props["output"], props["precision"]) == \
        ("ReXNet_1_0", LABELS, "logits", "int8")
    assert props["resize"] == {"size": [64, 64], "interpolation": "bilinear", "backend": "cv2"}
    bad = dict(new, PreProcess={"transform_ops": [{"RandFlipImage": None}]})
    props = {k: json.loads(v) for k, v in metadata(bad).items()}
    assert "RandFlipImage" in props["preprocess_error"] and "resize" not in props and props["labels"] == LABELS


# -- a tiny export, run by the other runtimes ------------------------------------------------------------------
def _images(folder, n=8, size=(48, 40)):
    """Smooth pictures (a colour ramp and a soft blob), so that PIL's and OpenCV's bilinear resize agree closely."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(3)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        base = rng.uniform(0, 255, 3)
        ramp = rng.uniform(-2, 2, 3)
        cx, cy, r = rng.uniform(8, w - 8), rng.uniform(8, h - 8), rng.uniform(5, 12)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(-150, 150, 3)
        img = base + ramp * xx[..., None] + blob
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(os.path.join(folder, f"img{i}.png"))
    return folder


def _fit(model, batch, labels, steps=40):
    """A few Adam steps on the test's own images: a net with random weights maps every picture to about the same
    features (one class for all, near-tied scores, and an INT8 model that rounds the differences away); fitted,
    each image has a clear top-1 of its own, and a comparison of top-1s has something to find."""
    import paddle
    import paddle.nn.functional as F
    x, y = paddle.to_tensor(batch), paddle.to_tensor(np.asarray(labels, dtype="int64"))
    opt = paddle.optimizer.Adam(learning_rate=1e-3, parameters=model.parameters())
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
    model.eval()


@pytest.fixture(scope="module")
def exported(module_tmp):
    import paddle
    from ppcls.arch import build_model
    from ppcls.inference.export import export
    from ppcls.inference.pipeline import Preprocess, read_rgb
    tmp = str(module_tmp("elsewhere"))
    images = _images(os.path.join(tmp, "images"))
    with open(os.path.join(tmp, "labels.txt"), "w") as f:
        f.writelines(f"{i} {name}\n" for i, name in enumerate(LABELS))
    with open(os.path.join(tmp, "list.txt"), "w") as f:  # the INT8 calibration list
        f.writelines(f"images/img{i}.png {i % 3}\n" for i in range(8))
    transforms = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"resize_short": 36}}, {"CropImage": {"size": 32}},
                  {"NormalizeImage": {"scale": "1.0/255.0", **IMAGENET}}]  # order chw: the op transposes
    paddle.seed(0)
    model = build_model({"name": "DLA46_c", "class_num": 3})
    preprocess = Preprocess(transforms)
    _fit(model, np.stack([preprocess(read_rgb(os.path.join(images, f"img{i}.png"))) for i in range(8)]),
         [i % 3 for i in range(8)])
    paddle.save(model.state_dict(), os.path.join(tmp, "w.pdparams"))
    dataset = {"name": "ImageNetDataset", "image_root": tmp, "cls_label_path": os.path.join(tmp, "list.txt"),
               "transform_ops": transforms}
    config = {"Global": {"image_shape": [3, 32, 32], "pretrained_model": os.path.join(tmp, "w")},
              "Arch": {"name": "DLA46_c", "class_num": 3},
              "DataLoader": {"Train": {"dataset": dataset}, "Eval": {"dataset": dataset}},
              "Infer": {"infer_imgs": images, "transforms": transforms,
                        "PostProcess": {"name": "Topk", "topk": 2, "class_id_map_file": os.path.join(tmp, "labels.txt")}}}
    out = export(config, os.path.join(tmp, "export"), probe=False)
    return tmp, config, out, images


def _ours(model_dir, images, **settings):
    """This project's deploy predictor: {file name: (top-1, its label)}."""
    from ppcls.inference.predictor import predict_folder
    config = yaml.safe_load(open(DEPLOY_CFG))
    config["Global"].update(inference_model_dir=model_dir, infer_imgs=images, **settings)
    return {os.path.basename(r["file_name"]): (r["class_ids"][0], r["label_names"][0]) for r in predict_folder(config)}


def _plain(onnx_path, images):
    files = sorted(os.path.join(images, f) for f in os.listdir(images))
    r = subprocess.run([sys.executable, PLAIN, onnx_path, *files], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    found = re.findall(r"^(\S+)\t(\S+)\tclass (\d+) (.*?)\tscore ([0-9.]+)$", r.stdout, re.M)
    assert len(found) == len(files), r.stdout
    return {os.path.basename(f): (int(c), label) for f, _, c, label, _ in found}, {name for _, name, _, _, _ in found}


@pytest.mark.slow
def test_export_writes_a_paddleclas_config_and_a_self_describing_onnx(exported):
    from ppcls.inference.onnx import convert_to_onnx
    tmp, _, out, images = exported
    cfg_path = os.path.join(out, "inference_cls.yaml")
    cfg = yaml.safe_load(open(cfg_path))
    assert cfg["Global"]["use_onnx"] is False  # no inference.onnx yet: the header says how to convert
    assert "deploy/paddle2onnx/convert.sh" in open(cfg_path).read()
    assert [next(iter(op)) for op in cfg["PreProcess"]["transform_ops"]] == \
        ["ResizeImage", "CropImage", "NormalizeImage", "ToCHWImage"]
    assert cfg["PreProcess"]["transform_ops"][0]["ResizeImage"]["resize_short"] == 36
    assert cfg["PostProcess"]["Topk"]["class_id_map_file"] == os.path.join(os.path.abspath(out), "class_id_map.txt")
    assert open(os.path.join(out, "class_id_map.txt")).read() == "0 zero\n1 class one\n2 two\n"
    convert_to_onnx(out)  # the route deploy/paddle2onnx and `ppcls onnx` take; export's probe calls it too
    assert yaml.safe_load(open(cfg_path))["Global"]["use_onnx"] is True
    meta = read_onnx_metadata(os.path.join(out, "inference.onnx"))
    assert meta["model_name"] == "DLA46_c" and meta["labels"] == LABELS and meta["input_shape"] == [3, 32, 32]
    assert meta["resize"]["resize_short"] == 36 and meta["center_crop"] == [32, 32] and meta["output"] == "probabilities"
    ours = _ours(out, images, backend="paddle")
    assert len({c for c, _ in ours.values()}) > 1, ours  # the images are told apart: agreement means something
    # this project's predict_cls.py reads the PaddleClas config too (through onnxruntime)
    config = yaml.safe_load(open(cfg_path))
    config["Global"]["infer_imgs"] = images
    from ppcls.inference.predictor import predict_folder
    assert {os.path.basename(r["file_name"]): (r["class_ids"][0], r["label_names"][0])
            for r in predict_folder(config)} == ours
    plain, names = _plain(os.path.join(out, "inference.onnx"), images)
    assert plain == ours and names == {"DLA46_c"}
    print(f"AGREEMENT plain onnxruntime fp32: {sum(plain[k] == ours[k] for k in ours)}/{len(ours)}")


@pytest.mark.slow
def test_int8_onnx_describes_itself_and_the_plain_example_agrees(exported):
    from ppcls.inference.onnx import convert_to_onnx
    from ppcls.inference.quantize import quantize
    tmp, config, out, images = exported
    if not os.path.isfile(os.path.join(out, "inference.onnx")):
        convert_to_onnx(out)
    int8 = os.path.join(tmp, "int8")
    quantize(config, out, int8, calib_images=8, evaluate_models=False, speed_batches=(1,))
    meta = read_onnx_metadata(os.path.join(int8, "inference.onnx"))
    assert meta["precision"] == "int8" and meta["labels"] == LABELS and meta["center_crop"] == [32, 32]
    cfg = yaml.safe_load(open(os.path.join(int8, "inference_cls.yaml")))
    assert cfg["Global"]["use_onnx"] is True and cfg["Global"]["inference_model_dir"] == os.path.abspath(int8)
    ours = _ours(int8, images)
    assert len({c for c, _ in ours.values()}) > 1, ours  # the INT8 model still tells the images apart
    plain, _ = _plain(os.path.join(int8, "inference.onnx"), images)
    assert plain == ours
    print(f"AGREEMENT plain onnxruntime int8: {sum(plain[k] == ours[k] for k in ours)}/{len(ours)}")


def paddleclas26_python():
    """The venv tools/install_paddleclas26.sh makes; CI (.ci/run) makes it, so there it must be."""
    venv = os.environ.get("PPCLS_PADDLECLAS26_VENV") or os.path.expanduser(os.path.join("~", ".cache", "ppcls", "paddleclas26"))
    python = os.path.join(venv, "bin", "python")
    if not os.path.isfile(python):
        why = f"PaddleClas 2.6 not installed in {venv}: bash tools/install_paddleclas26.sh"
        if os.environ.get("CI") or os.environ.get("PPCLS_REQUIRE_EXTRAS") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return python


def _paddleclas(python, cfg, model_dir, images, cwd, *extra):
    r = subprocess.run([python, "-m", "paddleclas.deploy.python.predict_cls", "-c", cfg, "-o",
                        f"Global.inference_model_dir={model_dir}", "-o", f"Global.infer_imgs={images}", *extra],
                       capture_output=True, text=True, cwd=cwd, timeout=300)
    found = re.findall(r"^(\S+):\tclass id\(s\): \[(\d+)[^\n]*label_name\(s\): (\[.*\])$", r.stdout, re.M)
    return r, {name: (int(c), ast.literal_eval(labels)[0]) for name, c, labels in found}


@pytest.mark.slow
def test_paddleclas26_predict_cls_runs_the_export_with_our_top1(exported):
    python = paddleclas26_python()
    from ppcls.inference.onnx import convert_to_onnx
    tmp, _, out, images = exported
    if not os.path.isfile(os.path.join(out, "inference.onnx")):
        convert_to_onnx(out)
    ours = _ours(out, images, backend="paddle")
    # the command as the README gives it, with relative paths from the folder holding the export
    r, theirs = _paddleclas(python, "export/inference_cls.yaml", "export", "images", tmp)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert theirs == ours, r.stdout
    print(f"AGREEMENT PaddleClas 2.6 predict_cls fp32: {sum(theirs[k] == ours[k] for k in ours)}/{len(ours)}")
    int8 = os.path.join(tmp, "int8")
    if os.path.isfile(os.path.join(int8, "inference_cls.yaml")):  # made by the INT8 test when it ran first
        r, theirs8 = _paddleclas(python, "int8/inference_cls.yaml", "int8", "images", tmp)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        assert theirs8 == _ours(int8, images), r.stdout
    # the fault the README names: PaddleClas 2.6's Paddle Inference route cannot load a Paddle 3 model
    r, _ = _paddleclas(python, "export/inference_cls.yaml", "export", "images", tmp, "-o", "Global.use_onnx=False")
    assert r.returncode != 0 and "Not find predictor_id 0 and pass_name memory_optimize_pass" in r.stderr, r.stderr[-2000:]
