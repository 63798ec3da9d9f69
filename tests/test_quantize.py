"""INT8 post-training quantization (tools/quantize.py, ppcls quantize): the output line, the INT8 folder
in the deploy predictor / predict_cls.py / the benchmark, the BatchNorm rewrite, clear errors; and
(slow) fp32 vs int8 top-1 within 0.5 points for AttentionNet56_CIFAR, RLA_ResNet50 and ReXNet_1_0 trained on
the digits."""
import json
import os
import re

import numpy as np
import pytest

from engine_utils import ROOT, run_tool, tiny_config

LINE = re.compile(r"^fp32 top1: ([0-9.]+) int8 top1: ([0-9.]+)$", re.M)


@pytest.fixture(scope="module")
def exported(module_tmp):
    tmp = module_tmp("quant")
    path, data = tiny_config(tmp, arch="ResNet18", epochs=2, per_class=8)  # 24 train images: the calibration set
    r = run_tool("train.py", "-c", path, "-o", "Global.eval_during_train=False")
    assert r.returncode == 0, r.stderr[-2000:]
    weights = os.path.join(str(tmp), "output", "ResNet18", "latest")
    inf = os.path.join(str(tmp), "inf")
    r = run_tool("export_model.py", "-c", path, "-o", f"Global.pretrained_model={weights}",
                 "-o", f"Global.save_inference_dir={inf}", "-o", "Global.backend_probe=False")
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp, path, data, inf


@pytest.fixture(scope="module")
def quantized(exported):
    tmp, path, data, inf = exported
    out = os.path.join(str(tmp), "int8")
    r = run_tool("quantize.py", "-c", path, "--model-dir", inf, "--out", out, "--calib-images", "24", "--reference-eval")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_quantize_prints_the_line_and_writes_an_onnxruntime_int8_folder(exported, quantized):
    out, r = quantized
    last = r.stdout.strip().splitlines()[-1]
    m = LINE.match(last)
    assert m, r.stdout[-1000:]
    fp32, int8 = float(m.group(1)), float(m.group(2))
    assert 0 <= fp32 <= 1 and 0 <= int8 <= 1
    assert sorted(os.listdir(out)) == ["backend.json", "inference.onnx", "inference.yml", "inference_cls.yaml"]
    from ppcls.inference.predictor import read_meta
    meta = read_meta(out)
    assert meta["precision"] == "int8" and meta["image_shape"] == [3, 32, 32]
    assert meta["quantization"]["calibration"]["images"] == 24
    assert meta["quantization"]["eval"]["fp32_top1"] == pytest.approx(fp32, abs=1e-5)
    assert "QLinearConv" in meta["quantization"]["int8_ops"]
    probe = json.load(open(os.path.join(out, "backend.json")))
    assert probe["backend"] == "onnxruntime" and probe["precision"] == "int8"
    assert probe["images_per_s"]["int8"]["1"] > 0 and probe["images_per_s"]["fp32"]["8"] > 0
    log = r.stdout + r.stderr
    assert "int8 ops after onnxruntime's graph optimisation: QLinearConv" in log
    # ResNet18 quantizes completely but for its classifier head (the fc and the softmax)
    left = re.search(r"float32 compute ops left: (.*) \(with the classifier head: ([^)]*)\)", log)
    assert left, log[-3000:]
    ops = dict(re.findall(r"(\w+) x(\d+)", left.group(1)))
    assert set(ops) <= {"Gemm", "MatMul", "FusedMatMul", "Add", "Softmax"} and "Softmax" in ops, left.group(0)
    assert sum(map(int, ops.values())) <= 3 and meta["quantization"]["fp32_head"] == left.group(2).split(", ")
    # ResNet18's channel counts are the int8 kernels' multiples already; the kernel choice is logged and recorded
    assert meta["quantization"]["pad_channels"] == 0
    n_general = int(re.search(r"(\d+) Conv\(s\) run onnxruntime's general int8 kernel", log).group(1))
    assert meta["quantization"]["general_kernel_convs"] == n_general
    # how many images moved, not only the net top-1 difference; against fp32 and against the QDQ graph's reference
    ev = meta["quantization"]["eval"]
    for before, key in ((fp32, ev["top1_changes"]), (ev["reference"]["top1"], ev["reference"]["top1_changes"])):
        assert set(key) == {"changed", "gained", "lost"} and key["gained"] + key["lost"] <= key["changed"] <= 12
        assert key["lost"] - key["gained"] == round((before - int8) * ev["samples"])
    moved = re.search(r"int8 changes the top-1 class of (\d+) images against fp32 \((\d+) now right, (\d+) now wrong\)", log)
    assert moved and [int(g) for g in moved.groups()] == [ev["top1_changes"][k] for k in ("changed", "gained", "lost")]
    assert f"reference: the int8 model's QDQ graph evaluated in float (onnxruntime, no graph optimisation) top-1 " \
           f"{ev['reference']['top1']:.5f}" in log


def test_quantize_flags_reach_the_quantizer(monkeypatch, tmp_path):
    """--no-pad-channels and --no-kernel-choice turn the two speed rewrites off; by default both run."""
    from ppcls.cli import main
    import ppcls.inference.quantize as q
    seen = []

    def fake(config, model_dir, out_dir, **kw):
        seen.append(kw)
        return {"speedup": {"1": 1.0}, "fp32_layers": [], "threads": 1, "fp32_top1": 0.5, "int8_top1": 0.5}
    monkeypatch.setattr(q, "quantize", fake)
    cfg = os.path.join(ROOT, "configs", "quick_start", "DLA46_c_digits.yaml")
    common = ["quantize", "-c", cfg, "--model-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main(common) == 0 and main(common + ["--no-pad-channels", "--no-kernel-choice", "--reference-eval",
                                                "--keep-avgpool"]) == 0
    assert (seen[0]["pad"], seen[0]["kernel_choice"], seen[0]["reference_eval"], seen[0]["pool_as_conv"]) == (
        True, True, False, True)
    assert (seen[1]["pad"], seen[1]["kernel_choice"], seen[1]["reference_eval"], seen[1]["pool_as_conv"]) == (
        False, False, True, False)


def test_avgpool_to_conv_is_exact_and_leaves_the_uneven_windows(tmp_path):
    """AveragePools whose windows all average kernel_shape values (no padding; padding counted) become depthwise
    Convs with weights 1 / (kh * kw) and the same outputs; a padded pool that does not count the padding
    (border windows average fewer values) and a ceil-mode pool stay; prepare() does it unless told not to."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from ppcls.inference import quantize as q
    nodes = [helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[2, 2], strides=[2, 2], name="plain"),
             helper.make_node("AveragePool", ["a"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1,
                              name="counted"),
             helper.make_node("AveragePool", ["b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="uneven"),
             helper.make_node("AveragePool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1, name="ceil")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, 3, 3])])
    fp32 = str(tmp_path / "fp32.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), fp32)
    x = {"x": np.random.RandomState(0).randn(2, 6, 12, 12).astype(np.float32)}
    want = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"]).run(None, x)[0]
    for pool_as_conv, convs in ((True, ["counted", "plain"]), (False, [])):
        prepared, rewrites = q.prepare(fp32, str(tmp_path / f"p{pool_as_conv}.onnx"), pad=False, pool_as_conv=pool_as_conv)
        model = onnx.load(prepared)
        assert rewrites["avgpool_as_conv"] == len(convs)
        assert sorted(n.name for n in model.graph.node if n.op_type == "Conv") == convs
        weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type == "Conv":
                w = weights[n.input[1]]
                k = 4 if n.name == "plain" else 9
                assert w.shape == ((6, 1, 2, 2) if k == 4 else (6, 1, 3, 3)) and np.all(w == np.float32(1.0 / k))
                assert next(a.i for a in n.attribute if a.name == "group") == 6
        got = ort.InferenceSession(prepared, providers=["CPUExecutionProvider"]).run(None, x)[0]
        assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()


def test_top1_changes_and_the_qdq_reference(tmp_path):
    """top1_changes counts moved images (a net difference of 0 can hide several); QDQReference computes the QDQ
    graph as the ONNX operators define it: x rounded to uint8 steps of 0.1 around 12.8, then a Relu."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from ppcls.inference.quantize import QDQReference, top1_changes
    labels = np.array([0, 1, 2, 0])
    before = (0.5, 1.0, 4, np.array([0, 1, 0, 1]), np.array([0, 1, 0, 1]) == labels)
    after = (0.5, 1.0, 4, np.array([0, 2, 2, 1]), np.array([0, 2, 2, 1]) == labels)
    assert top1_changes(before, after) == {"changed": 2, "gained": 1, "lost": 1}
    assert top1_changes(before, before) == {"changed": 0, "gained": 0, "lost": 0}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Relu", ["d"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 5])],
                              [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                               numpy_helper.from_array(np.array(128, np.uint8), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    x = np.array([[-20.0, -0.26, 0.04, 0.16, 30.0]], np.float32)
    want = np.maximum((np.clip(np.round(x / np.float32(0.1)) + 128, 0, 255) - 128) * np.float32(0.1), 0)
    np.testing.assert_allclose(QDQReference(str(tmp_path / "m.onnx")).run(x), want, rtol=0, atol=1e-6)
    assert want[0, 0] == 0 and want[0, 4] == pytest.approx(12.7, abs=1e-5)


def test_int8_folder_in_predictor_and_predict_cls(exported, quantized):
    tmp, path, data, inf = exported
    out, _ = quantized
    from ppcls.inference.predictor import Predictor
    from ppcls.utils.errors import ConfigError
    p = Predictor({"backend": "auto"}, out)
    assert p.backend == "onnxruntime" and "backend.json" in p.backend_reason
    x = np.random.RandomState(0).rand(3, 3, 32, 32).astype("float32")
    probs = p.run(x)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1, atol=2e-2)
    with pytest.raises(ConfigError, match="ONNX model only"):
        Predictor({"backend": "paddle"}, out)
    cfg = os.path.join(ROOT, "deploy", "configs", "inference_cls.yaml")
    r = run_tool(os.path.join("..", "deploy", "python", "predict_cls.py"), "-c", cfg,
                 "-o", f"Global.inference_model_dir={out}", "-o", f"Global.infer_imgs={data}/val")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(re.findall(r"class id\(s\): \[\d", r.stdout)) == 12
    log = r.stdout + r.stderr
    assert "predictor backend: onnxruntime" in log and "int8 model" in log


def test_int8_folder_in_the_served_model(quantized):
    """The HTTP service builds its model through load_deploy: the INT8 folder serves as an export does."""
    pytest.importorskip("fastapi")
    out, _ = quantized
    from ppcls.serving.model import ServedModel
    from ppcls.utils.config import load_yaml_with_bases
    cfg = load_yaml_with_bases(os.path.join(ROOT, "deploy", "configs", "inference_cls.yaml"))
    cfg["Global"]["inference_model_dir"] = out
    model = ServedModel(cfg)
    assert model.predictor.backend == "onnxruntime" and model.input_shape == [3, 32, 32]
    res = model.infer(np.zeros([2, 3, 32, 32], np.float32))
    assert len(res) == 2 and len(res[0]["class_ids"]) == 3


def test_quantize_errors(exported, tmp_path):
    tmp, path, data, inf = exported
    r = run_tool("quantize.py", "-c", path, "--model-dir", inf, "--out", inf)
    assert r.returncode == 2 and "--out" in r.stderr and "must differ" in r.stderr
    r = run_tool("quantize.py", "-c", path, "--model-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--model-dir" in r.stderr and "not found" in r.stderr


@pytest.mark.slow  # each run converts the model to ONNX and reads the calibration images before the error
def test_quantize_errors_found_after_the_conversion(exported, tmp_path):
    tmp, path, data, inf = exported
    r = run_tool("quantize.py", "-c", path, "--model-dir", inf, "--out", str(tmp_path / "o"), "--fp32-ops", "Tanh")
    assert r.returncode == 2 and "--fp32-ops: the model has no Tanh node" in r.stderr
    r = run_tool("quantize.py", "-c", path, "--model-dir", inf, "--out", str(tmp_path / "o"), "--calib-method", "kl")
    assert r.returncode == 2 and "--calib-method: one of minmax, percentile, entropy" in r.stderr


def test_batchnorm_to_conv_is_exact(tmp_path):
    """A BatchNorm after an Add (as in pre-activation units and the RLA hidden state) becomes a 1x1
    depthwise Conv with the same output."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from ppcls.inference.quantize import batchnorm_to_conv
    rng = np.random.RandomState(0)
    c = 5
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in (
        (rng.rand(c) + 0.5, "g"), (rng.randn(c), "b"), (rng.randn(c), "m"), (rng.rand(c) + 0.5, "v"))]
    nodes = [helper.make_node("Add", ["x", "y"], ["s"]),
             helper.make_node("BatchNormalization", ["s", "g", "b", "m", "v"], ["z"], epsilon=1e-3),
             helper.make_node("Relu", ["z"], ["out"])]
    shape = [2, c, 4, 4]
    graph = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
                                            helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)], inits)
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    before = str(tmp_path / "a.onnx")
    onnx.save(model, before)
    assert batchnorm_to_conv(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Add", "Conv", "Relu"]
    after = str(tmp_path / "b.onnx")
    onnx.save(model, after)
    feed = {"x": rng.randn(*shape).astype(np.float32), "y": rng.randn(*shape).astype(np.float32)}
    a = ort.InferenceSession(before, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    b = ort.InferenceSession(after, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert np.abs(a - b).max() < 1e-5


def test_split_concat_conv_is_exact(tmp_path):
    """Conv(Concat(a, b)) with inputs of very different ranges becomes Conv_a(a) + Conv_b(b): the same
    output in float32, and each input keeps its own int8 scale."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from ppcls.inference.quantize import split_concat_conv
    rng = np.random.RandomState(0)
    w = numpy_helper.from_array(rng.randn(4, 5, 3, 3).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.randn(4).astype(np.float32), "bias")
    nodes = [helper.make_node("Tanh", ["y"], ["h"]),
             helper.make_node("Concat", ["x", "h"], ["c"], axis=1),
             helper.make_node("Conv", ["c", "w", "bias"], ["out"], pads=[1, 1, 1, 1], name="conv")]
    graph = helper.make_graph(nodes, "cat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 6]),
                                             helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2, 6, 6])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 4, 6, 6])], [w, b])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    before = str(tmp_path / "a.onnx")
    onnx.save(model, before)
    feed = {"x": 20 * rng.randn(2, 3, 6, 6).astype(np.float32), "y": rng.randn(2, 2, 6, 6).astype(np.float32)}
    ranges = {"x": float(feed["x"].max() - feed["x"].min()), "h": 2.0}
    assert split_concat_conv(onnx.load(before), {"x": 2.0, "h": 2.0}) == 0  # similar ranges: left whole
    assert split_concat_conv(model, ranges) == 1
    assert [n.op_type for n in model.graph.node] == ["Tanh", "Conv", "Conv", "Add"]
    after = str(tmp_path / "b.onnx")
    onnx.save(model, after)
    a = ort.InferenceSession(before, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    c = ort.InferenceSession(after, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert np.abs(a - c).max() < 1e-4 * max(1.0, float(np.abs(a).max()))


def _bottleneck_graph(rng, tail="residual"):
    """A ReXNet block on odd channel counts: 1x1 expand (8 -> 6) with SiLU, 3x3 depthwise, SE (6 -> 3 -> 6, sigmoid
    gate, per-channel constant bias), ReLU6, 1x1 project (6 -> 5); then ReXNet's partial residual (the input's
    first 3 channels added to the first 3 of the 5, the other 2 concatenated), a Conv reading the block output and
    an Add of the block output to a slice of the image (made outside any region). ``tail="output"``: the expanded
    channels are the graph's output instead (not paddable)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = {n: numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("we", rng.randn(6, 8, 1, 1)), ("be", rng.randn(6)), ("wd", rng.randn(6, 1, 3, 3)), ("bd", rng.randn(6)),
        ("w1", rng.randn(3, 6, 1, 1)), ("b1", rng.randn(3)), ("w2", rng.randn(6, 3, 1, 1)), ("b2", rng.randn(6)),
        ("k", rng.randn(1, 6, 1, 1)), ("wp", rng.randn(5, 6, 1, 1)), ("bp", rng.randn(5)), ("wn", rng.randn(8, 5, 3, 3)))}
    ints = {n: numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (
        ("s0", [0]), ("e3", [3]), ("e5", [5]), ("s3", [3]), ("end", [2 ** 62]), ("ax", [1]), ("shape", [2, -1]))}
    lo, hi = (numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", 0.0), ("hi", 6.0)))
    nodes = [helper.make_node("Conv", ["x", "we", "be"], ["e"], name="expand"),
             helper.make_node("Sigmoid", ["e"], ["es"]), helper.make_node("Mul", ["e", "es"], ["silu"]),
             helper.make_node("Conv", ["silu", "wd", "bd"], ["d"], group=6, pads=[1, 1, 1, 1], name="dw"),
             helper.make_node("GlobalAveragePool", ["d"], ["p"]),
             helper.make_node("Conv", ["p", "w1", "b1"], ["r"], name="se_reduce"), helper.make_node("Relu", ["r"], ["rr"]),
             helper.make_node("Conv", ["rr", "w2", "b2"], ["g"], name="se_expand"),
             helper.make_node("Add", ["g", "k"], ["gk"]), helper.make_node("Sigmoid", ["gk"], ["gs"]),
             helper.make_node("Mul", ["d", "gs"], ["dg"]), helper.make_node("Clip", ["dg", "lo", "hi"], ["c"])]
    if tail == "residual":
        nodes += [helper.make_node("Conv", ["c", "wp", "bp"], ["o"], name="project"),
                  helper.make_node("Slice", ["o", "s0", "e3", "ax"], ["o_head"]),
                  helper.make_node("Slice", ["o", "s3", "end", "ax"], ["o_tail"]),
                  helper.make_node("Slice", ["x", "s0", "e3", "ax"], ["x3"]),
                  helper.make_node("Add", ["o_head", "x3"], ["sum"]),
                  helper.make_node("Concat", ["sum", "o_tail"], ["y"], axis=1),
                  helper.make_node("Conv", ["y", "wn"], ["next"], pads=[1, 1, 1, 1], name="next"),
                  helper.make_node("Slice", ["x", "s0", "e5", "ax"], ["x5"]),
                  helper.make_node("Add", ["y", "x5"], ["out"])]
        outs = [("next", [2, 8, 6, 6]), ("out", [2, 5, 6, 6])]
    else:
        outs = [("c", [2, 6, 6, 6])]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 6, 6])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outs],
                              list(w.values()) + list(ints.values()) + [lo, hi])
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def test_pad_channels_is_exact_and_aligns_the_int8_kernels(tmp_path):
    """The expanded 6 channels (with a depthwise Conv: to 16), the SE's 3 (to 4) and the block's 5 (to 8) get zero
    channels: the projection writes 8, the residual's slice to the last channel and the Concat carry the 3 extra
    ones to the next Conv, which reads 8; the Add of the block output to a tensor made elsewhere reads the 5 real
    channels through an added Slice. The outputs are those of the original graph."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import numpy_helper
    from ppcls.inference.quantize import pad_channels
    rng = np.random.RandomState(0)
    model = _bottleneck_graph(rng)
    before = str(tmp_path / "a.onnx")
    onnx.save(model, before)
    assert pad_channels(model) == 3
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    shapes = {name: inits[n.input[1]].shape for name, n in convs.items()}
    assert shapes == {"expand": (16, 8, 1, 1), "dw": (16, 1, 3, 3), "se_reduce": (4, 16, 1, 1),
                      "se_expand": (16, 4, 1, 1), "project": (8, 16, 1, 1), "next": (8, 8, 3, 3)}
    assert next(a.i for a in convs["dw"].attribute if a.name == "group") == 16
    assert not inits[convs["expand"].input[1]][6:].any() and not inits[convs["project"].input[1]][:, 6:].any()
    assert not inits[convs["next"].input[1]][:, 5:].any()
    slices = {n.output[0]: (int(inits[n.input[1]][0]), int(inits[n.input[2]][0])) for n in model.graph.node
              if n.op_type == "Slice"}
    assert slices == {"o_head": (0, 3), "o_tail": (3, 8), "x3": (0, 3), "x5": (0, 5), "y_unpadded": (0, 5)}
    add = next(n for n in model.graph.node if n.output[0] == "out")
    assert list(add.input) == ["y_unpadded", "x5"]
    after = str(tmp_path / "b.onnx")
    onnx.save(model, after)
    x = {"x": rng.randn(2, 8, 6, 6).astype(np.float32)}
    a = ort.InferenceSession(before, providers=["CPUExecutionProvider"]).run(None, x)
    b = ort.InferenceSession(after, providers=["CPUExecutionProvider"]).run(None, x)
    for u, v in zip(a, b):
        assert u.shape == v.shape and np.abs(u - v).max() < 1e-5 * np.abs(u).max()
    # a region holding a graph output is left as it is (the expanded channels, the SE gate that multiplies them);
    # the SE's reduction is padded alone
    model = _bottleneck_graph(rng, tail="output")
    assert pad_channels(model) == 1
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert [inits[n.input[1]].shape for n in model.graph.node if n.op_type == "Conv"] == [
        (6, 8, 1, 1), (6, 1, 3, 3), (4, 6, 1, 1), (6, 4, 1, 1)]
    # multiples already met: nothing to do
    model = _bottleneck_graph(rng)
    assert pad_channels(model, dense_multiple=1, depthwise_multiple=1) == 0


def _quantized_graph(tmp_path, nodes, inits, shape, rng):
    """The graph x -> nodes -> y (x and y of ``shape``) saved, prepared without padding and quantized with min/max
    ranges of 4 random images: (prepared path, QDQ path)."""
    import onnx
    from onnx import TensorProto, helper
    from ppcls.inference import quantize as q
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
    fp32 = str(tmp_path / "fp32.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), fp32)
    prepared, _ = q.prepare(fp32, str(tmp_path / "prepared.onnx"), pad=False)
    calib = [rng.rand(*shape).astype(np.float32) for _ in range(4)]
    return prepared, q.quantize_onnx(prepared, str(tmp_path / "int8.onnx"), calib, "minmax")


def _outputs_before_after(tmp_path, qdq_path, changed_model, x):
    """(output of ``qdq_path``, output of ``changed_model``) on ``x`` in onnxruntime, with graph optimisation off (the
    QDQ graph as written) and on (the int8 kernels)."""
    import onnx
    import onnxruntime as ort
    changed = str(tmp_path / "changed.onnx")
    onnx.save(changed_model, changed)
    pairs = []
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        pairs.append(tuple(ort.InferenceSession(p, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
                           for p in (qdq_path, changed)))
    return pairs


def test_conv_kernel_choice_follows_the_timing_and_changes_no_output(tmp_path):
    """A dense int8 Conv timed faster on onnxruntime's general kernel gets its weights stored as w - 1 with zero
    point -1 (same dequantized weights, same outputs); one not timed faster, and a depthwise Conv, stay symmetric."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper
    from ppcls.inference import quantize as q
    rng = np.random.RandomState(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w1", rng.randn(16, 8, 3, 3)), ("b1", rng.randn(16)), ("wd", rng.randn(16, 1, 3, 3)),
        ("w2", rng.randn(8, 16, 1, 1)), ("b2", rng.randn(8)))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], pads=[1, 1, 1, 1], name="big"),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "wd"], ["d"], pads=[1, 1, 1, 1], group=16, name="dw"),
             helper.make_node("Conv", ["d", "w2", "b2"], ["y"], name="small")]
    prepared, qdq_path = _quantized_graph(tmp_path, nodes, inits, [1, 8, 10, 10], rng)
    timed = []

    def timer(x, w, w_scale, bias, attrs, threads):
        timed.append((x.shape, w.shape, attrs.get("group", 1)))
        return (1.0, 0.5) if w.shape[0] == 16 else (1.0, 0.95)  # the general kernel wins for "big" only

    model = onnx.load(qdq_path)
    assert q.choose_conv_kernels(model, onnx.load(prepared), timer=timer) == ["big"]
    assert sorted(timed) == [((1, 10, 10, 8), (16, 8, 3, 3), 1), ((1, 10, 10, 16), (8, 16, 1, 1), 1)]  # NHWC, no dw
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    zero_points = {n.name: inits[producer[n.input[1]].input[2]] for n in model.graph.node if n.op_type == "Conv"}
    assert (zero_points["big"] == -1).all() and (zero_points["small"] == 0).all() and (zero_points["dw"] == 0).all()
    for a, b in _outputs_before_after(tmp_path, qdq_path, model, rng.rand(1, 8, 10, 10).astype(np.float32)):
        assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
    # the real timer: two positive times for the layer's two kernels
    sym, general = q.time_conv_kernels(np.zeros([1, 10, 10, 8], np.uint8), np.ones([16, 8, 3, 3], np.int8),
                                       np.full(16, 0.01, np.float32), None, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
                                       rounds=1, seconds=0.001)
    assert sym > 0 and general > 0


def test_block_diagonal_weights_compute_the_grouped_conv():
    """A Conv with 8 groups of 2 channels equals the Conv with 2 (or 1) groups whose weights are block_diagonal;
    a count that does not divide the groups is refused."""
    from ppcls.inference.quantize import block_diagonal
    rng = np.random.RandomState(0)
    w = rng.randn(24, 2, 3, 3)  # 8 groups: 3 output channels and 2 input channels each
    x = rng.randn(16, 5, 5)

    def conv(x, w, groups):  # valid 3x3 convolution, the definition
        out_per, in_per = w.shape[0] // groups, w.shape[1]
        y = np.zeros((w.shape[0], 3, 3))
        for o in range(w.shape[0]):
            g = o // out_per
            for i in range(3):
                for j in range(3):
                    y[o, i, j] = np.sum(w[o] * x[g * in_per:(g + 1) * in_per, i:i + 3, j:j + 3])
        return y

    for new in (4, 2, 1):
        wb = block_diagonal(w, 8, new)
        assert wb.shape == (24, 16 // new, 3, 3)
        assert np.allclose(conv(x, wb, new), conv(x, w, 8))
    assert np.array_equal(block_diagonal(w, 8, 8), w)
    with pytest.raises(ValueError, match="3 groups do not divide 8"):
        block_diagonal(w, 8, 3)


def test_regroup_convs_follows_the_timing_and_changes_no_output(tmp_path):
    """A grouped int8 Conv (8 groups of 2 channels) timed faster with 2 groups gets block-diagonal weights and
    group=2, and the int8 model's outputs do not change; a depthwise Conv and a dense one are not timed; a count
    not faster by the margin is not taken; after regrouping to 1 group the kernel choice sees a dense Conv."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper
    from ppcls.inference import quantize as q
    rng = np.random.RandomState(1)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w1", rng.randn(16, 4, 1, 1)), ("wg", rng.randn(16, 2, 3, 3)), ("bg", rng.randn(16)),
        ("wd", rng.randn(16, 1, 3, 3)), ("w2", rng.randn(4, 16, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="dense"),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "wg", "bg"], ["g"], pads=[1, 1, 1, 1], group=8, name="grouped"),
             helper.make_node("Relu", ["g"], ["gr"]),
             helper.make_node("Conv", ["gr", "wd"], ["d"], pads=[1, 1, 1, 1], group=16, name="dw"),
             helper.make_node("Conv", ["d", "w2"], ["y"], name="out")]
    prepared, qdq_path = _quantized_graph(tmp_path, nodes, inits, [1, 4, 9, 9], rng)
    timed = []

    def timer(x, variants, bias, threads, speeds):
        timed.append((x.shape, [(w.shape, attrs["group"], zp) for w, _, attrs, zp in variants]))
        assert bias is not None and bias.dtype == np.int32
        return [speeds[attrs["group"]] for _, _, attrs, _ in variants]

    def groups(model):
        return {n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in model.graph.node if n.op_type == "Conv"}

    model = onnx.load(qdq_path)
    slow = {8: 1.0, 4: 0.95, 2: 0.92, 1: 0.99}  # no count within the margin (0.9 of the original's time)
    assert q.regroup_convs(model, onnx.load(prepared), timer=lambda *a: timer(*a, slow)) == {}
    assert groups(model)["grouped"] == 8
    assert timed == [((1, 9, 9, 16), [((16, 2, 3, 3), 8, 0), ((16, 4, 3, 3), 4, 0), ((16, 8, 3, 3), 2, 0),
                                      ((16, 16, 3, 3), 1, 0)])]  # NHWC input, every divisor, only the grouped Conv
    fast = {8: 1.0, 4: 0.6, 2: 0.3, 1: 0.5}
    assert q.regroup_convs(model, onnx.load(prepared), timer=lambda *a: timer(*a, fast)) == {"grouped": (8, 2)}
    assert groups(model) == {"dense": 1, "grouped": 2, "dw": 16, "out": 1}
    producer = {o: n for n in model.graph.node for o in n.output}
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.name == "grouped")
    w = weights[producer[conv.input[1]].input[0]]
    assert w.shape == (16, 8, 3, 3) and w.dtype == np.int8
    # output channel 4 is in old group 2, the third block of new group 0: it reads input channels 4 and 5 only
    assert not w[0, 2:].any() and not w[4, :4].any() and not w[4, 6:].any() and w[4, 4:6].any()
    assert len(weights) == len({i.name for i in model.graph.initializer})  # the replaced weights are dropped
    for a, b in _outputs_before_after(tmp_path, qdq_path, model, rng.rand(1, 4, 9, 9).astype(np.float32)):
        assert np.array_equal(a, b)
    # regrouped to one group, the Conv is dense and the kernel choice times it like any other
    model = onnx.load(qdq_path)
    assert q.regroup_convs(model, onnx.load(prepared), timer=lambda *a: timer(*a, {8: 1.0, 4: 0.6, 2: 0.3, 1: 0.1})) == {
        "grouped": (8, 1)}
    seen = []
    q.choose_conv_kernels(model, onnx.load(prepared), timer=lambda x, w, *a: seen.append(w.shape) or (1.0, 1.0))
    assert (16, 16, 3, 3) in seen
    # the real timer: one positive time per variant
    w8 = np.ones([16, 2, 3, 3], np.int8)
    times = q.time_conv_variants(np.zeros([1, 9, 9, 16], np.uint8),
                                 [(w8, np.full(16, 0.01, np.float32), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "group": 8}, 0),
                                  (q.block_diagonal(w8, 8, 1), np.full(16, 0.01, np.float32),
                                   {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "group": 1}, 0)],
                                 None, rounds=1, seconds=0.001)
    assert len(times) == 2 and min(times) > 0


@pytest.mark.slow  # the quick tier quantizes through tools/quantize.py (above) and benchmarks in tests/test_perf.py
def test_benchmark_int8_mode(tmp_path):
    r = run_tool("benchmark.py", "-a", "DLA46_c", "--batch-size", "1", "--image-size", "32", "--mode", "onnx,int8",
                 "--windows", "1", "--iters", "1", "--chart", str(tmp_path / "c.png"), "--markdown", str(tmp_path / "t.md"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "random weights, calibrated on random images" in r.stdout
    assert re.search(r"DLA46_c bs1 threads\d+: onnxruntime [0-9.]+ \([0-9.]+x\) \| onnxruntime INT8 [0-9.]+ \([0-9.]+x\)",
                     r.stdout), r.stdout
    assert open(str(tmp_path / "c.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    table = open(str(tmp_path / "t.md")).read()
    assert table.startswith("| model |") and "| DLA46_c |" in table and "INT8 / fp32 onnxruntime" in table


# -- slow: every family on the digits -----------------------------------------------------------------------
# (model, epochs, learning rate, calibration): trained on the quick start's digits (its 1437 / 359 split)
# and taken at its best epoch. DLA's model is the quick start's own DLA46_c, checked in
# tests/test_quick_start.py. A half-trained net (0.4-0.8 top-1 after a few epochs) has no margins and
# loses points to any int8 rounding, which measures the training, not the quantization. RLA-Net is
# RLA_ResNet50: RLA_MobileNetV2 has fewer weights but trains slower on CPU (Paddle's depthwise-conv
# kernels; 8 epochs, 10 minutes, to pass this check: 0.86351 -> 0.86072). ReXNet_1_0 at the quick
# start's 0.05 was unstable (4 epochs: 0.93872 on two threads, 0.77994 on one); at 0.02 on one core it
# reached 0.96657 in 5 epochs, int8 0.96657 by min/max ranges, 0.96100 by percentile ones. On one core
# AttentionNet56_CIFAR reached 0.96379 and RLA_ResNet50 0.90529, int8 within the half point.
FAMILIES = [("AttentionNet56_CIFAR", 3, 0.05, "percentile"), ("RLA_ResNet50", 3, 0.05, "percentile"),
            ("ReXNet_1_0", 5, 0.02, "minmax")]


@pytest.fixture(scope="module")
def digits(module_tmp):
    root = str(module_tmp("digits") / "digits")
    r = run_tool("make_demo_dataset.py", "--out", root)
    assert r.returncode == 0, r.stderr[-2000:]
    return root


@pytest.mark.slow
@pytest.mark.parametrize("arch,epochs,lr,calibration", FAMILIES)
def test_int8_top1_within_half_a_point_on_the_digits(arch, epochs, lr, calibration, digits, tmp_path):
    cfg = os.path.join(ROOT, "configs", "quick_start", "DLA46_c_digits.yaml")
    common = [f"Arch.name={arch}", f"Global.output_dir={tmp_path}/output", "Global.use_visualdl=False",
              f"DataLoader.Train.dataset.image_root={digits}", f"DataLoader.Train.dataset.cls_label_path={digits}/train_list.txt",
              f"DataLoader.Eval.dataset.image_root={digits}", f"DataLoader.Eval.dataset.cls_label_path={digits}/val_list.txt",
              f"Infer.PostProcess.class_id_map_file={digits}/label_list.txt"]
    args = [a for o in common for a in ("-o", o)]
    r = run_tool("train.py", "-c", cfg, *args, "-o", f"Global.epochs={epochs}", "-o", "Global.save_interval=100",
                 "-o", f"Optimizer.lr.learning_rate={lr}",
                 timeout=2400)
    assert r.returncode == 0, r.stderr[-2000:]
    weights = os.path.join(str(tmp_path), "output", arch, "best_model")
    inf = str(tmp_path / "inf")
    r = run_tool("export_model.py", "-c", cfg, *args, "-o", f"Global.pretrained_model={weights}",
                 "-o", f"Global.save_inference_dir={inf}", "-o", "Global.backend_probe=False")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_tool("quantize.py", "-c", cfg, *args, "--model-dir", inf, "--out", str(tmp_path / "int8"),
                 "--calib-images", "200", "--calib-method", calibration, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    m = LINE.search(r.stdout)
    fp32, int8 = float(m.group(1)), float(m.group(2))
    print(f"DIGITS {arch}: fp32 top1 {fp32:.5f} int8 top1 {int8:.5f}")
    assert fp32 > 0.5, (arch, fp32)  # a trained model (chance is 0.1), so the comparison means something
    assert abs(fp32 - int8) <= 0.005 + 1e-9, (arch, fp32, int8)
