"""Exports run in PaddleX 3.7 (issue 28, items 1-2): inference.yml in the layout PaddleX's image-classification
predictor reads, still read by this project's predictor (old exports too), and ppcls.paddlex, which
registers the zoo's names with PaddleX so create_model and the image_classification pipeline take an export
and give this project's predictor's top-1 and scores. The PaddleX runs happen in one subprocess (PaddleX
writes its cache under PADDLE_PDX_CACHE_HOME, pointed into tmp_path; its fixes stay out of this process)."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from engine_utils import ROOT, tiny_config
from ppcls.inference.export import portable_transforms
from ppcls.inference.pipeline import Preprocess
from ppcls.utils.errors import ConfigError

DEPLOY_CFG = os.path.join(ROOT, "deploy", "configs", "inference_cls.yaml")
LABELS = ["zero", "one", "two"]
HAVE_PADDLEX = importlib.util.find_spec("paddlex") is not None
needs_paddlex = pytest.mark.skipif(not HAVE_PADDLEX, reason="PaddleX is not installed (bash tools/install_extras.sh "
                                                            "paddlex; .ci/run installs it)")
NORM = {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "order": ""}}


# -- the inference.yml layout ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ops, shape, expected", [
    # the digits config: no geometric op, so the model's size is written out as the resize PaddleX needs
    ([NORM, {"ToCHWImage": None}], [3, 32, 28],
     [{"ResizeImage": {"size": [28, 32]}}, {"NormalizeImage": dict(NORM["NormalizeImage"], scale=1 / 255)},
      {"ToCHWImage": None}]),
    # NormalizeImage's default order chw becomes HWC + ToCHWImage; a cv2 code becomes a name both read
    ([{"ResizeImage": {"resize_short": 36, "interpolation": 2}}, {"CropImage": {"size": 32}}, {"NormalizeImage": None}],
     [3, 32, 32],
     [{"ResizeImage": {"resize_short": 36, "interpolation": "BICUBIC"}}, {"CropImage": {"size": 32}},
      {"NormalizeImage": {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "order": ""}},
      {"ToCHWImage": None}]),
    # no name both read (lanczos; PIL's box): kept as given; a chw NormalizeImage with ops after it keeps its layout
    ([{"ResizeImage": {"size": 32, "interpolation": "lanczos"}}, {"NormalizeImage": {"order": "chw", "scale": 0.5}},
      {"ToCHWImage": None}], [3, 32, 32],
     [{"ResizeImage": {"size": 32, "interpolation": "lanczos"}}, {"NormalizeImage": {"order": "chw", "scale": 0.5}},
      {"ToCHWImage": None}]),
])
def test_portable_transforms_compute_what_the_config_computes(ops, shape, expected):
    recorded = portable_transforms(ops, shape)
    assert recorded == expected
    if expected[1].get("NormalizeImage", {}).get("order") == "chw":
        return  # the config's own chw-then-ToCHWImage order, kept
    rng = np.random.RandomState(0)
    for h, w in ((shape[1], shape[2]), (40, 37)):
        img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
        ours = Preprocess(recorded)(img)
        assert ours.shape == tuple(shape)
        if (h, w) == (shape[1], shape[2]):
            np.testing.assert_array_equal(ours, Preprocess(ops)(img))  # an image of the model's size: untouched


def test_version_check_names_the_supported_version_and_the_command(monkeypatch):
    import ppcls.paddlex as px
    from ppcls.paddlex import compat
    assert compat.check_paddlex_version("3.7.2") == "3.7.2"
    with pytest.raises(ConfigError) as e:
        compat.check_paddlex_version("3.6.1")
    assert str(e.value) == ("ppcls.paddlex needs PaddleX 3.7.x, found 3.6.1; install the supported one with: "
                            "bash tools/install_extras.sh paddlex")
    with pytest.raises(ConfigError, match=r"^ppcls.paddlex needs PaddleX 3.7.x, found 3.10.0;"):
        compat.check_paddlex_version("3.10.0")
    monkeypatch.setattr(compat, "installed_paddlex_version", lambda: None)
    with pytest.raises(ConfigError) as e:
        px.register()
    assert str(e.value) == ("ppcls.paddlex needs PaddleX 3.7.x, which is not installed; install it with: "
                            "bash tools/install_extras.sh paddlex")


def test_class_ids_fix_hands_each_image_its_own_row():
    from ppcls.paddlex.compat import class_ids_per_image
    batch = {"class_ids": np.array([[2, 0], [1, 2]], dtype=np.int32), "scores": [[0.6, 0.3], [0.5, 0.4]]}
    process = class_ids_per_image(lambda self, data, topk=None: dict(batch))
    out = process(None, "batch", topk=2)
    assert isinstance(out["class_ids"], list) and [row.tolist() for row in out["class_ids"]] == [[2, 0], [1, 2]]
    assert out["scores"] == batch["scores"] and process.ppcls_original is not None


def test_import_ppcls_never_imports_paddlex():
    code = ("import sys, ppcls, ppcls.inference.export, ppcls.paddlex; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'paddlex'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


# -- a tiny export -----------------------------------------------------------------------------------------------
def _randomize(model, seed=0):
    """Weights at the scale of a trained net, so the classes' scores differ from image to image."""
    import paddle
    rng = np.random.RandomState(seed)
    for name, p in model.state_dict().items():
        shape = p.shape
        if name.endswith("_variance"):
            v = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("_mean") or name.endswith("bias"):
            v = 0.1 * rng.randn(*shape)
        elif len(shape) == 1:
            v = 1 + 0.1 * rng.randn(*shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 2 else shape[0]
            v = rng.randn(*shape) * np.sqrt(1.0 / max(1, fan_in))
        p.set_value(paddle.to_tensor(v.astype("float32")))


@pytest.fixture(scope="module")
def exported(module_tmp):
    """DLA46_c at 32x32 with labels, exported as quick_start's digits config does (no resize in eval), and
    images at the model's size and at two others (the recorded resize runs)."""
    import cv2
    import paddle
    from ppcls.arch import build_model
    from ppcls.inference.export import export
    from ppcls.schema import get_config
    tmp = module_tmp("paddlex")
    path, data = tiny_config(tmp, arch="DLA46_c", per_class=4)
    config = get_config(path)
    paddle.seed(0)
    model = build_model({"name": "DLA46_c", "class_num": 3})
    _randomize(model)
    images = os.path.join(str(tmp), "images")
    os.makedirs(images)
    rng = np.random.RandomState(1)
    batch = []
    for i, (h, w) in enumerate([(32, 32)] * 6 + [(40, 36), (30, 45)]):
        # a colour ramp and a bright blob placed at random
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 10)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(-200, 200, 3)
        img = np.clip(rng.uniform(0, 255, 3) + rng.uniform(-4, 4, 3) * xx[..., None] + blob, 0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(images, f"img{i}.png"), img[..., ::-1])
        batch.append((cv2.resize(img, (32, 32)).astype(np.float32) / 255 - 0.5) / 0.5)
    # a random net's scores differ little from image to image: centre its logits on these images and stretch
    # them, so the top-1 changes between images and the comparisons below can see a wrong one
    model.eval()
    with paddle.no_grad():
        logits = model(paddle.to_tensor(np.stack(batch).transpose(0, 3, 1, 2))).numpy()
    model.fc.bias.set_value(paddle.to_tensor(20 * (model.fc.bias.numpy() - logits.mean(0))))
    model.fc.weight.set_value(20 * model.fc.weight)
    weights = os.path.join(str(tmp), "w")
    paddle.save(model.state_dict(), weights + ".pdparams")
    labels = os.path.join(str(tmp), "labels.txt")
    with open(labels, "w") as f:
        f.writelines(f"{i} {n}\n" for i, n in enumerate(LABELS))
    config["Global"].update(pretrained_model=weights, save_inference_dir=os.path.join(str(tmp), "inf"),
                            backend_probe=False)
    # top-k over every class: ties between equal scores are then always whole (see _assert_same)
    config["Infer"] = {"PostProcess": {"name": "Topk", "topk": 3, "class_id_map_file": labels}}
    out = export(config, probe=False)
    return {"tmp": str(tmp), "config": config, "inf": out, "images": images}


def _ours(model_dir, images, batch_size=1, backend="paddle"):
    """What deploy/python/predict_cls.py prints, per image: (class ids, scores, label names)."""
    from ppcls.inference.predictor import predict_folder
    with open(DEPLOY_CFG) as f:
        config = yaml.safe_load(f)
    config["Global"].update(inference_model_dir=model_dir, infer_imgs=images, batch_size=batch_size, backend=backend)
    config["PostProcess"]["Topk"]["topk"] = 3  # as inference.yml records, which PaddleX follows
    return {os.path.basename(r["file_name"]): (r["class_ids"], r["scores"], r["label_names"])
            for r in predict_folder(config)}


def test_export_writes_the_layout_paddlex_reads(exported):
    from ppcls.paddlex import check_export
    meta = check_export(exported["inf"])
    assert meta["Global"] == {"model_name": "DLA46_c"} and meta["model"] == "DLA46_c"
    assert meta["PostProcess"] == {"Topk": {"topk": 3, "label_list": LABELS}}
    assert meta["PreProcess"]["transform_ops"] == [
        {"ResizeImage": {"size": [32, 32]}}, {"NormalizeImage": dict(NORM["NormalizeImage"], scale=1 / 255)},
        {"ToCHWImage": None}]


def _old_layout(meta):
    """inference.yml as exports wrote it before: the scale a fraction string, main_indicator beside Topk, no
    resize, no Global."""
    old = {k: v for k, v in meta.items() if k != "Global"}
    ops = [op for op in meta["PreProcess"]["transform_ops"] if "ResizeImage" not in op]
    ops[0] = {"NormalizeImage": dict(ops[0]["NormalizeImage"], scale="1.0/255.0")}
    old["PreProcess"] = {"transform_ops": ops}
    old["PostProcess"] = {"main_indicator": "Topk", **meta["PostProcess"]}
    return old


def test_old_exports_are_still_read_and_named_to_paddlex(exported, tmp_path):
    from ppcls.paddlex import check_export
    old_dir = str(tmp_path / "old")
    shutil.copytree(exported["inf"], old_dir)
    meta_path = os.path.join(old_dir, "inference.yml")
    with open(meta_path) as f:
        meta = yaml.safe_load(f)
    with open(meta_path, "w") as f:
        yaml.safe_dump(_old_layout(meta), f)
    same_size = str(tmp_path / "same_size")  # without a recorded resize, only the model's size goes in
    os.makedirs(same_size)
    for i in range(6):
        shutil.copy(os.path.join(exported["images"], f"img{i}.png"), same_size)
    new, old = _ours(exported["inf"], same_size), _ours(old_dir, same_size)
    assert new == old and len(new) == 6
    assert len({r[0][0] for r in new.values()}) > 1  # the images do not all get one class
    with pytest.raises(ConfigError) as e:
        check_export(old_dir)
    assert str(e.value) == (f"{meta_path}: Global.model_name is missing (an export from before PaddleX-readable "
                            "inference.yml); export the model again with tools/export_model.py")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["PostProcess"].update(main_indicator="Topk"),
     "PostProcess.main_indicator: PaddleX builds every PostProcess key as an op and knows Topk only"),
    (lambda m: m["PreProcess"]["transform_ops"][1]["NormalizeImage"].update(scale="1.0/255.0"),
     "PreProcess.transform_ops.1.NormalizeImage.scale: '1.0/255.0' is not a number (PaddleX divides by it)"),
    (lambda m: m["PreProcess"]["transform_ops"].pop(0),
     "PreProcess.transform_ops: no ResizeImage, which PaddleX always runs"),
    (lambda m: m["PreProcess"]["transform_ops"].insert(1, {"RandFlipImage": None}),
     "PreProcess.transform_ops.1.RandFlipImage: PaddleX's image-classification predictor runs ResizeImage, "
     "CropImage, NormalizeImage, ToCHWImage only"),
    (lambda m: m["PreProcess"]["transform_ops"].insert(0, m["PreProcess"]["transform_ops"].pop(1)),
     "PreProcess.transform_ops.1.ResizeImage: after NormalizeImage; PaddleX runs them in the order ResizeImage, "
     "CropImage, NormalizeImage, ToCHWImage"),
    (lambda m: m["PreProcess"]["transform_ops"][0]["ResizeImage"].update(interpolation="lanczos"),
     "PreProcess.transform_ops.0.ResizeImage.interpolation: 'lanczos'; PaddleX's cv2 resize takes NEAREST, "
     "LINEAR, BICUBIC, AREA, LANCZOS4"),
    (lambda m: m.update(softmax=False), "softmax: false (exported with Arch.infer_add_softmax: False)"),
])
def test_check_export_names_what_paddlex_would_fail_on(exported, tmp_path, edit, message):
    from ppcls.paddlex import check_export
    with open(os.path.join(exported["inf"], "inference.yml")) as f:
        meta = yaml.safe_load(f)
    edit(meta)
    folder = str(tmp_path / "m")
    os.makedirs(folder)
    with open(os.path.join(folder, "inference.yml"), "w") as f:
        yaml.safe_dump(meta, f)
    with pytest.raises(ConfigError) as e:
        check_export(folder, engine="onnxruntime")
    assert str(e.value).startswith(f"{os.path.join(folder, 'inference.yml')}: {message}"), str(e.value)


# -- PaddleX itself ------------------------------------------------------------------------------------------------
PADDLEX_RUN = r"""
import json, os, sys
import numpy as np
import ppcls.paddlex
from ppcls.utils.errors import ConfigError
first, second = ppcls.paddlex.register(), ppcls.paddlex.register()  # twice: harmless
import paddlex
from paddlex.inference.models.bindings import get_binding
from paddlex.inference.models.image_classification import ClasRunnerPredictor
images = sorted(os.path.join(sys.argv[1], f) for f in os.listdir(sys.argv[1]))
out = {"registered": [len(first), len(second)], "fixes": ppcls.paddlex.apply_fixes(),
       "bound": [get_binding("DLA46_c", e).predictor is ClasRunnerPredictor for e in ppcls.paddlex.ENGINES]}

def results(predictions):
    return {os.path.basename(r["input_path"]): [np.ravel(r["class_ids"]).tolist(), [float(s) for s in r["scores"]],
                                                list(r["label_names"])] for r in predictions}

for name, model_dir, engine, with_pipeline in json.loads(sys.argv[2]):
    kwargs = {"engine": engine} if engine else {}
    try:
        model = paddlex.create_model(model_name="DLA46_c", model_dir=model_dir, **kwargs)
        out[name] = results(model.predict(images))
    except Exception as e:
        out[name] = f"{type(e).__name__}: {e}"
        continue
    if with_pipeline:  # PaddleX's own pipeline config with the model's name and folder (batches of 4)
        pipeline = paddlex.create_pipeline(config={"pipeline_name": "image_classification", "SubModules": {
            "ImageClassification": {"module_name": "image_classification", "model_name": "DLA46_c",
                                    "model_dir": model_dir, "batch_size": 4, "topk": 3}}}, **kwargs)
        out[name + " pipeline"] = results(pipeline.predict(images))
# ppcls.paddlex.create_model: the folder checked first, the engine chosen from its files (ONNX only: onnxruntime)
out["checked int8"] = results(ppcls.paddlex.create_model(sys.argv[3]).predict(images))
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def folders(exported):
    """The export, its ONNX conversion alone in a folder, and the INT8 model of tools/quantize.py."""
    from ppcls.inference.onnx import convert_to_onnx
    from ppcls.inference.quantize import quantize
    tmp = exported["tmp"]
    onnx_only = os.path.join(tmp, "onnx_only")
    os.makedirs(onnx_only)
    converted = convert_to_onnx(exported["inf"])
    shutil.copy(converted, onnx_only)
    shutil.copy(os.path.join(exported["inf"], "inference.yml"), onnx_only)
    os.remove(converted)  # the export folder as tools/export_model.py leaves it without the probe
    int8 = os.path.join(tmp, "int8")
    quantize(exported["config"], exported["inf"], int8, calib_images=8, evaluate_models=False, speed_batches=())
    return {"paddle": (exported["inf"], None, True), "onnx": (onnx_only, "onnxruntime", False),
            "int8": (int8, "onnxruntime", True), "int8 default engine": (int8, None, False)}


@pytest.fixture(scope="module")
def paddlex_run(exported, folders):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PADDLE_PDX_CACHE_HOME=os.path.join(exported["tmp"], "paddlex_cache"),
               PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK="True")
    runs = [[name, *run] for name, run in folders.items()]
    r = subprocess.run([sys.executable, "-c", PADDLEX_RUN, exported["images"], json.dumps(runs), folders["int8"][0]],
                       capture_output=True, text=True, env=env, cwd=exported["tmp"], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _assert_same(theirs, ours):
    """The same scores, and the same classes in the same places, except that equal scores (an INT8 model's are
    multiples of 1/255) may be listed in either order: PaddleX puts the higher class id first, this project
    the lower. Both list every class, so a tie is never cut off by top-k."""
    assert sorted(theirs) == sorted(ours) and len(ours) == 8
    for image, (ids, scores, names) in ours.items():
        t_ids, t_scores, t_names = theirs[image]
        np.testing.assert_allclose(t_scores, scores, atol=1e-4, err_msg=image)
        assert t_names == [LABELS[i] for i in t_ids] and names == [LABELS[i] for i in ids]
        start = 0
        while start < len(ids):
            end = start + 1
            while end < len(ids) and abs(scores[end] - scores[start]) <= 1e-4:
                end += 1
            assert sorted(t_ids[start:end]) == sorted(ids[start:end]), (image, theirs[image], ours[image])
            start = end


@pytest.mark.slow
@needs_paddlex
def test_paddlex_create_model_and_pipeline_give_our_predictions(exported, folders, paddlex_run):
    from ppcls.arch import list_models
    assert paddlex_run["registered"] == [len(list_models())] * 2 and paddlex_run["bound"] == [True, True]
    from ppcls.paddlex.compat import opencv_fix_needed
    assert paddlex_run["fixes"] == sorted(["class_ids_per_image"] + (["opencv_check"] if opencv_fix_needed() else []))
    ours = _ours(exported["inf"], exported["images"])
    assert len({r[0][0] for r in ours.values()}) > 1
    for name in ("paddle", "paddle pipeline", "onnx"):
        _assert_same(paddlex_run[name], ours)
    # the INT8 model: PaddleX runs it in onnxruntime, with the top-1 and scores of this project's predictor on it
    int8 = _ours(folders["int8"][0], exported["images"], backend="onnxruntime")
    _assert_same(paddlex_run["int8"], int8)
    _assert_same(paddlex_run["int8 pipeline"], _ours(folders["int8"][0], exported["images"], batch_size=4,
                                                     backend="onnxruntime"))
    # asked for Paddle Inference, PaddleX refuses the ONNX-only folder in its own words; ppcls.paddlex picks the engine
    int8_dir = folders["int8"][0]
    assert paddlex_run["int8 default engine"] == f"ValueError: No Paddle model files were found in {int8_dir!r}."
    _assert_same(paddlex_run["checked int8"], int8)
