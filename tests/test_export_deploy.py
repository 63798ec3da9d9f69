"""Export and deploy: for every registered model, dygraph eval == the exported Paddle Inference
predictor (oneDNN) == onnxruntime; predict_cls.py agrees with tools/eval.py; a config without Infer
exports the evaluation's preprocessing, so predict_cls.py and the service agree with eval too; clear
errors."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import paddle
import pytest
import yaml

from engine_utils import ROOT, eval_avg, run_tool, tiny_config
from ppcls.arch import build_model, list_models
from ppcls.inference.export import export
from ppcls.inference.onnx import convert_to_onnx
from ppcls.inference.predictor import Predictor
from ppcls.utils.errors import ConfigError

DEPLOY_CFG = os.path.join(ROOT, "deploy", "configs", "inference_cls.yaml")
# the equivalence tests run the exported graphs on arrays, but an export must still record preprocessing
CHW_INPUT = {"transforms": [{"ToCHWImage": None}]}
FAST = {"ResNet18", "DLA46_c", "ReXNet_1_0", "RLA_MobileNetV2", "AttentionNet56_CIFAR", "ReXUNet"}


def randomize(model, seed=0):
    """Weights and BN statistics at the scale of a trained net, so outputs are far from trivial."""
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


def input_size(name):
    return 32 if name.endswith("_CIFAR") else 64


# One model per distinct structure is exported and compared. Left out: the variants that only repeat
# or widen the stages of one that is kept (DLA60 -> DLA102 / DLA169, RLA's and ResNet's 50 -> 101 / 152,
# ReXNet_1_0 -> 1_3 .. 3_0, Attention-56 / 92 -> 128 .. 452, ImageNet and CIFAR), whose graphs hold no op
# that the kept ones lack; their dygraph outputs are checked against the originals in the family tests.
# They took 19 of the suite's 55 minutes on 2 cores (Attention-452 alone 3 minutes, float64 reference
# run included).
SAME_STRUCTURE_AS_A_KEPT_ONE = {
    "DLA102", "DLA102x", "DLA169", "ResNet34", "ResNet101", "ResNet152", "DLAUp_DLA60", "DLAUp_DLA102", "DLAUp_DLA169",
    "RLA_ResNet101", "RLA_ResNet152", "RLA_ECANet101", "RLA_ECANet152",
    "RLA_ResNeXt101_32x4d", "RLA_ResNeXt101_32x4d_SE", "RLA_ResNeXt101_32x4d_ECA",
    "ReXNet_1_3", "ReXNet_1_5", "ReXNet_2_0", "ReXNet_3_0",
    "AttentionNet128", "AttentionNet164", "AttentionNet236", "AttentionNet452",
    "AttentionNet128_CIFAR", "AttentionNet164_CIFAR", "AttentionNet236_CIFAR", "AttentionNet452_CIFAR"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in FAST else [pytest.mark.slow]) for n in list_models()
                                  if n not in SAME_STRUCTURE_AS_A_KEPT_ONE])
def test_dygraph_predictor_onnx_equivalence(name, tmp_path):
    paddle.seed(0)
    class_num = 1 if name == "ReXUNet" else 10
    model = build_model({"name": name, "class_num": class_num})
    randomize(model)
    model.eval()
    size = input_size(name)
    weights = str(tmp_path / "w.pdparams")
    paddle.save(model.state_dict(), weights)
    x = np.random.RandomState(0).rand(2, 3, size, size).astype("float32")
    with paddle.no_grad():
        ref = model(paddle.to_tensor(x))
    ref = (ref[0] if isinstance(ref, (list, tuple)) else ref).numpy()
    out_dir = str(tmp_path / "inference")
    export({"Global": {"image_shape": [3, size, size], "save_inference_dir": out_dir, "pretrained_model": weights[:-9]},
            "Arch": {"name": name, "class_num": class_num, "infer_add_softmax": False}, "Infer": CHW_INPUT})
    scale = max(1.0, float(np.abs(ref).max()))
    pred = Predictor({"enable_mkldnn": True, "cpu_num_threads": 2}, out_dir).run(x)
    assert pred.shape == ref.shape
    d_pred = float(np.abs(pred - ref).max())
    convert_to_onnx(out_dir)
    onnx_out = Predictor({"use_onnx": True}, out_dir).run(x)
    d_onnx = float(np.abs(onnx_out - ref).max())
    tol = 1e-4 * scale
    if max(d_pred, d_onnx) > tol:
        # the deepest nets amplify float32 rounding itself by more than 1e-4 (as
        # the alignment fixtures record); then the bound is ten times the model's own float32 error,
        # measured against a float64 run of the same weights
        model64 = build_model({"name": name, "class_num": class_num})
        model64.set_state_dict(paddle.load(weights))
        model64.to(dtype="float64")
        model64.eval()
        with paddle.no_grad():
            ref64 = model64(paddle.to_tensor(x.astype("float64")))
        ref64 = (ref64[0] if isinstance(ref64, (list, tuple)) else ref64).numpy()
        tol = max(tol, 10 * float(np.abs(ref - ref64).max()))
    assert d_pred <= tol, (name, d_pred, tol)
    assert d_onnx <= tol, (name, d_onnx, tol)
    print(f"EQUIV {name} predictor {d_pred:.3g} onnx {d_onnx:.3g} scale {scale:.3g}")


@pytest.fixture(scope="module")
def trained(module_tmp):
    tmp = module_tmp("deploy")
    path, data = tiny_config(tmp, epochs=2)
    r = run_tool("train.py", "-c", path)
    assert r.returncode == 0, r.stderr[-2000:]
    prefix = os.path.join(str(tmp), "output", "ResNet18", "best_model")
    inf = os.path.join(str(tmp), "inf")
    r = run_tool("export_model.py", "-c", path, "-o", f"Global.pretrained_model={prefix}",
                 "-o", f"Global.save_inference_dir={inf}")
    assert r.returncode == 0 and "Export succeeded!" in r.stdout, r.stderr[-2000:]
    return tmp, path, data, prefix, inf


def _top1_from_lines(text, data):
    labels = {}
    for line in open(os.path.join(data, "val_list.txt")):
        rel, lab = line.split()
        labels[os.path.join(data, rel)] = int(lab)
    preds = dict((m.group(1), int(m.group(2))) for m in re.finditer(r"^(.*?):\tclass id\(s\): \[(\d+)", text, re.M))
    assert len(preds) == len(labels), (len(preds), len(labels))
    return sum(preds[f] == labels[f] for f in labels) / len(labels), preds


def test_predictor_top1_equals_eval_and_infer(trained):
    tmp, path, data, prefix, inf = trained
    r = run_tool("eval.py", "-c", path, "-o", f"Global.pretrained_model={prefix}")
    _, eval_top1, _ = eval_avg(r.stdout)
    cfg = os.path.join(ROOT, "deploy", "configs", "inference_cls.yaml")
    r = run_tool(os.path.join("..", "deploy", "python", "predict_cls.py"), "-c", cfg,
                 "-o", f"Global.inference_model_dir={inf}", "-o", f"Global.infer_imgs={data}/val",
                 "-o", "Global.batch_size=4", "-o", "Global.benchmark=True")
    assert r.returncode == 0, r.stderr[-2000:]
    top1, preds = _top1_from_lines(r.stdout, data)
    assert top1 == pytest.approx(eval_top1, abs=1e-5)
    assert "timing per image" in r.stdout
    r = run_tool("infer.py", "-c", path, "-o", f"Global.pretrained_model={prefix}")
    assert r.returncode == 0, r.stderr[-2000:]
    top1_infer, preds_infer = _top1_from_lines(r.stdout, data)
    assert preds_infer == preds
    # and from deploy/ as the working directory, through ONNX
    r = run_tool("../deploy/paddle2onnx/convert.py", inf)
    assert r.returncode == 0 and "max abs diff" in r.stdout, r.stderr[-2000:]
    r = run_tool(os.path.join("..", "deploy", "python", "predict_cls.py"), "-c", "configs/inference_cls.yaml",
                 "-o", f"Global.inference_model_dir={inf}", "-o", f"Global.infer_imgs={data}/val",
                 "-o", "Global.use_onnx=True", cwd=os.path.join(ROOT, "deploy"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert _top1_from_lines(r.stdout, data)[1] == preds


def test_deploy_errors(trained, tmp_path):
    tmp, path, data, prefix, inf = trained
    cfg = os.path.join(ROOT, "deploy", "configs", "inference_cls.yaml")
    predict = os.path.join("..", "deploy", "python", "predict_cls.py")
    r = run_tool(predict, "-c", cfg, "-o", f"Global.inference_model_dir={tmp_path}/none")
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = run_tool(predict, "-c", cfg, "-o", f"Global.inference_model_dir={tmp_path}/empty")
    assert r.returncode == 2 and "export a model" in r.stderr
    # an unreadable image is skipped and reported; the others are predicted
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    import shutil
    shutil.copy(os.path.join(data, "val", "c0_0.jpg"), imgs / "good.jpg")
    (imgs / "broken.jpg").write_bytes(b"not a jpeg")
    r = run_tool(predict, "-c", cfg, "-o", f"Global.inference_model_dir={inf}", "-o", f"Global.infer_imgs={imgs}")
    assert r.returncode == 0 and "good.jpg:\tclass id(s)" in r.stdout
    assert "skipped unreadable image" in r.stdout and "broken.jpg" in r.stdout and "1 of 2 images" in r.stdout
    # preprocessing that does not match the exported input
    with pytest.raises(ConfigError, match=r"model expects \[3, 32, 32\]"):
        Predictor({}, inf).run(np.zeros((1, 3, 48, 48), np.float32))
    with pytest.raises(ConfigError, match=r"model expects \[3, 32, 32\]"):
        Predictor({}, inf).run(np.zeros((1, 1, 32, 32), np.float32))
    no_onnx = tmp_path / "no_onnx"
    shutil.copytree(inf, no_onnx, ignore=shutil.ignore_patterns("*.onnx"))
    r = run_tool(predict, "-c", cfg, "-o", f"Global.inference_model_dir={no_onnx}", "-o", "Global.use_onnx=True",
                 "-o", f"Global.infer_imgs={imgs}")
    assert r.returncode == 2 and "convert the model first" in r.stderr
    r = run_tool("../deploy/paddle2onnx/convert.py", str(tmp_path / "empty"))
    assert r.returncode == 2 and "no exported model" in r.stderr


def test_export_dense_model_returns_finest(tmp_path):
    out = export({"Global": {"image_shape": [3, 64, 64], "save_inference_dir": str(tmp_path)},
                  "Arch": {"name": "ReXUNet", "class_num": 1}, "Infer": CHW_INPUT})
    y = Predictor({}, out).run(np.random.rand(1, 3, 64, 64).astype("float32"))
    assert y.shape == (1, 1, 64, 64) and 0 <= y.min() and y.max() <= 1


# -- a config without Infer: the export records the evaluation's preprocessing --------------------------------
def _without_infer(path, out):
    """The config at ``path`` with its _BASE_ files merged in (the ImageNet base has an Infer section)
    and no Infer section at all."""
    from ppcls.utils.config import load_yaml_with_bases
    cfg = load_yaml_with_bases(path)
    del cfg["Infer"]
    with open(out, "w") as f:
        yaml.safe_dump(cfg, f)
    return str(out)


def _serve_and_classify(model_dir, files):
    """deploy/serving/server.py on a free port: {file: top-1 class id} for each file, then SIGTERM."""
    import httpx
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "deploy", "serving", "server.py"), "--model-dir",
                             model_dir, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)
    lines, found = [], threading.Event()
    url = []

    def read():
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r" on (http://127\.0\.0\.1:\d+) ", line)
            if m:
                url.append(m.group(1))
                found.set()
        found.set()
    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(120) and url, "the server did not start:\n" + "".join(lines)
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(url[0] + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() < deadline, "".join(lines)
            time.sleep(0.05)
        top1 = {}
        with httpx.Client(timeout=60) as client:
            for f in files:
                with open(f, "rb") as fh:
                    r = client.post(url[0] + "/predict", files=[("images", (os.path.basename(f), fh.read()))])
                assert r.status_code == 200, r.text
                top1[f] = r.json()["results"][0]["class_ids"][0]
        return top1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(60) == 0, "".join(lines)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


@pytest.mark.slow
def test_config_without_infer_exports_predicts_and_serves_like_eval(trained, tmp_path):
    tmp, path, data, prefix, _ = trained
    cfg_path = _without_infer(path, tmp_path / "no_infer.yaml")
    out = str(tmp_path / "inf")
    r = run_tool("export_model.py", "-c", cfg_path, "-o", f"Global.pretrained_model={prefix}",
                 "-o", f"Global.save_inference_dir={out}", "-o", "Global.backend_probe=False")
    assert r.returncode == 0 and "Export succeeded!" in r.stdout, r.stderr[-2000:]
    assert "Infer.transforms is not set: inference.yml records the evaluation's preprocessing" in r.stdout
    from ppcls.schema import get_config
    cfg = get_config(cfg_path)
    eval_ops = cfg["DataLoader"]["Eval"]["dataset"]["transform_ops"]
    recorded = yaml.safe_load(open(os.path.join(out, "inference.yml")))["PreProcess"]["transform_ops"]
    from ppcls.inference.export import portable_transforms
    assert recorded == portable_transforms([op for op in eval_ops if "DecodeImage" not in op] + [{"ToCHWImage": None}],
                                           cfg["Global"]["image_shape"])
    # the recorded preprocessing gives the deployed model exactly the arrays evaluation gives the model
    from ppcls.data import build_dataset
    from ppcls.inference.pipeline import Preprocess, read_rgb
    dataset = build_dataset(cfg["DataLoader"]["Eval"], "DataLoader.Eval")
    pre = Preprocess(recorded)
    for i in range(0, len(dataset.samples), 7):
        np.testing.assert_array_equal(pre(read_rgb(dataset.samples[i][0])), dataset[i][0])
    # eval, predict_cls.py with the default deploy config (its PreProcess is ImageNet's 224 crop: the
    # recorded one must win) and the service: the same top-1 on the same images
    r = run_tool("eval.py", "-c", cfg_path, "-o", f"Global.pretrained_model={prefix}")
    assert r.returncode == 0, r.stderr[-2000:]
    _, eval_top1, n = eval_avg(r.stdout)
    r = run_tool(os.path.join("..", "deploy", "python", "predict_cls.py"), "-c", DEPLOY_CFG,
                 "-o", f"Global.inference_model_dir={out}", "-o", f"Global.infer_imgs={data}/val")
    assert r.returncode == 0, r.stderr[-2000:]
    top1, preds = _top1_from_lines(r.stdout, data)
    assert len(preds) == n and top1 == pytest.approx(eval_top1, abs=1e-5)  # eval prints 5 decimals
    served = _serve_and_classify(out, sorted(preds))
    assert served == preds


def test_export_records_eval_transforms_without_decoding(tmp_path):
    from ppcls.inference.export import deploy_transforms
    norm_hwc = {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5] * 3, "std": [0.5] * 3, "order": ""}}
    eval_cfg = {"DataLoader": {"Eval": {"dataset": {"transform_ops": [{"DecodeImage": {"to_rgb": True}}, norm_hwc]}}}}
    # 32x32 digits: no resize in eval, none recorded; the ops end HWC, so a ToCHWImage follows
    assert deploy_transforms(eval_cfg) == ([norm_hwc, {"ToCHWImage": None}], "DataLoader.Eval.dataset.transform_ops")
    # NormalizeImage's default order is chw: already CHW, nothing added (a second transpose would scramble it)
    chw = {"DataLoader": {"Eval": {"dataset": {"transform_ops": [
        {"DecodeImage": None}, {"ResizeImage": {"resize_short": 40}}, {"CropImage": {"size": 32}}, {"NormalizeImage": None}]}}}}
    assert deploy_transforms(chw)[0] == [{"ResizeImage": {"resize_short": 40}}, {"CropImage": {"size": 32}},
                                         {"NormalizeImage": None}]
    # Infer.transforms win over eval's; an Infer section without transforms falls back to eval's
    infer = dict(eval_cfg, Infer={"transforms": [{"DecodeImage": None}, {"ResizeImage": {"size": 32}}, norm_hwc,
                                                 {"ToCHWImage": None}]})
    assert deploy_transforms(infer) == ([{"ResizeImage": {"size": 32}}, norm_hwc, {"ToCHWImage": None}], "Infer.transforms")
    assert deploy_transforms(dict(eval_cfg, Infer={"batch_size": 2}))[1] == "DataLoader.Eval.dataset.transform_ops"
    # the export itself records them (never an empty list) and the deploy predictor runs them
    out = export({"Global": {"image_shape": [3, 32, 32], "save_inference_dir": str(tmp_path / "m")},
                  "Arch": {"name": "DLA46_c", "class_num": 3}, **eval_cfg}, probe=False)
    meta = yaml.safe_load(open(os.path.join(out, "inference.yml")))
    # in the form PaddleX reads too: the scale a number, the model's size as an explicit resize
    assert meta["PreProcess"]["transform_ops"] == [
        {"ResizeImage": {"size": [32, 32]}}, {"NormalizeImage": dict(norm_hwc["NormalizeImage"], scale=1 / 255)},
        {"ToCHWImage": None}]
    from ppcls.inference.predictor import build_pipeline
    preprocess, _ = build_pipeline(yaml.safe_load(open(DEPLOY_CFG)), meta, out)
    img = np.random.RandomState(0).randint(0, 255, (32, 32, 3)).astype(np.uint8)
    np.testing.assert_allclose(preprocess(img), (img.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5, atol=1e-6)


def test_export_refuses_what_cannot_deploy(tmp_path):
    base = {"Global": {"image_shape": [3, 32, 32], "save_inference_dir": str(tmp_path / "m")},
            "Arch": {"name": "DLA46_c", "class_num": 3}}
    with pytest.raises(ConfigError, match=r"^Infer.transforms and DataLoader.Eval.dataset.transform_ops: neither is set"):
        export(dict(base, Infer={"transforms": []}, DataLoader={"Eval": {"dataset": {"transform_ops": []}}}), probe=False)
    assert not os.path.exists(tmp_path / "m")  # refused before anything is written
    bgr = {"DataLoader": {"Eval": {"dataset": {"transform_ops": [{"DecodeImage": {"to_rgb": False}}, {"NormalizeImage": None}]}}}}
    with pytest.raises(ConfigError, match=r"^DataLoader.Eval.dataset.transform_ops.0.DecodeImage.to_rgb: False cannot "
                                          r"be deployed"):
        export(dict(base, **bgr), probe=False)
    # the tool: exit 2, one line naming both keys
    cfg = tmp_path / "cfg.yaml"
    with open(cfg, "w") as f:
        yaml.safe_dump({"Global": {"image_shape": [3, 32, 32], "save_inference_dir": str(tmp_path / "t"),
                                   "backend_probe": False}, "Arch": {"name": "DLA46_c", "class_num": 3}}, f)
    r = run_tool("export_model.py", "-c", str(cfg))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith(
        "error: Infer.transforms and DataLoader.Eval.dataset.transform_ops: neither is set")


def test_a_recorded_empty_preprocessing_is_named(tmp_path):
    """A folder written before exports recorded the evaluation's transforms holds an empty list: the
    predictor names that file instead of asking for a key the user never wrote."""
    out = export({"Global": {"image_shape": [3, 32, 32], "save_inference_dir": str(tmp_path / "m")},
                  "Arch": {"name": "DLA46_c", "class_num": 3}, "Infer": CHW_INPUT}, probe=False)
    meta_path = os.path.join(out, "inference.yml")
    meta = yaml.safe_load(open(meta_path))
    meta["PreProcess"]["transform_ops"] = []
    with open(meta_path, "w") as f:
        yaml.safe_dump(meta, f)
    r = run_tool(os.path.join("..", "deploy", "python", "predict_cls.py"), "-c", DEPLOY_CFG,
                 "-o", f"Global.inference_model_dir={out}", "-o", f"Global.infer_imgs={tmp_path}")
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == (f"error: {meta_path}: PreProcess.transform_ops is empty; export the "
                                                 "model again with tools/export_model.py (it records the Infer or else "
                                                 "the evaluation transforms), or write the model's transforms there")
