"""INT8 quantization choices (ppcls.inference.quantize): the stratified calibration choice, the QDQ placement by
op type, the per-layer sensitivity sweep and the float32 layers it keeps, and --max-drop's refusal that leaves the
output folder as it was."""
import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ppcls.inference import quantize as q  # noqa: E402


def test_stratified_choice_takes_every_class_in_turn():
    labels = [0] * 50 + [1] * 5 + [2] * 45  # an unbalanced list: a random 6 would often miss class 1
    idx = q.choose_images(labels, 6, seed=3)
    assert sorted(labels[i] for i in idx) == [0, 0, 1, 1, 2, 2]
    assert list(idx) == list(q.choose_images(labels, 6, seed=3))  # seeded
    assert list(idx) != list(q.choose_images(labels, 6, seed=4))
    held = q.choose_images(labels, 100, seed=3, exclude=idx)
    assert len(held) == 94 and not set(held) & set(idx)
    # a class with fewer images than its turns gives way to the others
    assert sorted(labels[i] for i in q.choose_images(labels, 30, seed=0)).count(1) == 5
    assert len(q.choose_images(labels, 10, seed=0, select="random")) == 10
    with pytest.raises(Exception, match="--calib-select: one of stratified, random"):
        q.choose_images(labels, 4, select="balanced")


def _two_conv_model(path):
    """x (2 channels) -> conv_a -> Relu -> conv_b -> y. conv_a reads only channel 0 (its channel-1 weights are
    zero); channel 1 carries rare huge values, so x's single int8 scale leaves channel 0 a handful of levels:
    conv_a is the sensitive layer, conv_b (reading the well-ranged Relu output) is not."""
    rng = np.random.RandomState(0)
    wa = rng.randn(8, 2, 3, 3).astype(np.float32) * 0.5
    wa[:, 1] = 0
    wb = rng.randn(4, 8, 1, 1).astype(np.float32) * 0.3
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Conv", ["p", "wb"], ["c"], name="conv_b"),
             helper.make_node("Flatten", ["c"], ["y"], name="flat")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
                              [numpy_helper.from_array(wa, "wa"), numpy_helper.from_array(wb, "wb")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _batches(seed, n=4):
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        b = np.zeros([8, 2, 8, 8], np.float32)
        # images that differ (their own level and contrast), so their top-1 classes differ
        b[:, 0] = rng.randn(8, 8, 8) * rng.rand(8, 1, 1) + rng.uniform(-1, 1, (8, 1, 1))
        b[:, 1, 0, 0] = 400.0  # the outliers: ignored by conv_a, yet they set x's range
        out.append(b)
    return out


@pytest.fixture(scope="module")
def two_conv(module_tmp):
    tmp = module_tmp("sens")
    fp32 = _two_conv_model(str(tmp / "fp32.onnx"))
    calib = _batches(0, 16)
    prepared, _ = q.prepare(fp32, str(tmp / "prepared.onnx"), bn_as_conv=False)
    int8 = q.quantize_onnx(prepared, str(tmp / "int8.onnx"), calib, calib_method="minmax")
    held = _batches(1)
    ref = q._logits(q._session(onnx.load(fp32)), held)
    return tmp, fp32, prepared, int8, held, ref


def test_float_nodes_model_runs_the_named_layers_in_float(two_conv):
    tmp, fp32, prepared, int8, held, ref = two_conv
    qdq, prep = onnx.load(int8), onnx.load(prepared)
    assert q.quantized_nodes(qdq) == ["conv_a", "conv_b"]
    one = q.float_nodes_model(qdq, prep, {"conv_a"})
    node = next(n for n in one.graph.node if n.name == "conv_a")
    assert list(node.input) == ["x", "wa"]  # the float tensor and the float weights
    assert q.quantized_nodes(one) == ["conv_b"]
    both = q.float_nodes_model(qdq, prep, {"conv_a", "conv_b"})
    err = {name: float(np.abs(q._logits(q._session(m), held) - ref).mean())
           for name, m in (("int8", qdq), ("a", one), ("both", both))}
    assert err["a"] < err["int8"] / 5, err
    assert err["both"] <= err["a"], err
    assert qdq.graph.node[0].input[0] != "x"  # the input model is not changed


def test_float_nodes_model_applies_the_activation_the_quantizer_dropped(tmp_path):
    """onnxruntime's quantizer drops the Relu after a Conv (the QuantizeLinear's range clips instead) and the Conv
    writes the Relu's output name with the values before it: a float layer reading that name gets the Relu
    applied again, not the negative values (which once gave a 24-point drop with half the layers float)."""
    rng = np.random.RandomState(0)
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wb"], ["y"], name="conv_b")]
    inits = [numpy_helper.from_array(rng.randn(8, 3, 3, 3).astype(np.float32), "wa"),
             numpy_helper.from_array(rng.randn(8).astype(np.float32) - 1.0, "ba"),  # half the values negative
             numpy_helper.from_array(rng.randn(4, 8, 1, 1).astype(np.float32), "wb")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    fp32 = str(tmp_path / "fp32.onnx")
    onnx.save(model, fp32)
    prepared, _ = q.prepare(fp32, str(tmp_path / "prepared.onnx"), bn_as_conv=False, pad=False)
    calib = [rng.randn(8, 3, 6, 6).astype(np.float32) for _ in range(4)]
    qdq = onnx.load(q.quantize_onnx(prepared, str(tmp_path / "int8.onnx"), calib, calib_method="minmax"))
    assert "Relu" not in {n.op_type for n in qdq.graph.node}  # dropped by the quantizer
    x = rng.randn(8, 3, 6, 6).astype(np.float32)
    ref = q._session(onnx.load(fp32)).run(None, {"x": x})[0]
    for names in ({"conv_b"}, {"conv_a", "conv_b"}):
        m = q.float_nodes_model(qdq, onnx.load(prepared), names)
        conv_b = next(n for n in m.graph.node if n.name == "conv_b")
        relu = next(n for n in m.graph.node if n.output[0] == conv_b.input[0])
        assert relu.op_type == "Relu" and conv_b.input[0] != "r"
        out = q._session(m).run(None, {"x": x})[0]
        assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max(), names
    assert np.abs(q._session(qdq).run(None, {"x": x})[0] - ref).max() < 0.2 * np.abs(ref).max()  # int8 throughout


def test_sensitivity_ranks_the_layer_that_loses_precision_first_and_keeps_only_it(two_conv):
    tmp, fp32, prepared, int8, held, ref = two_conv
    qdq, prep = onnx.load(int8), onnx.load(prepared)
    ranked, base = q.sensitivity(qdq, prep, ref, held)
    assert [n for n, _ in ranked] == ["conv_a", "conv_b"] and ranked[0][1] > 0.5 * base > 0, (ranked, base)
    flips_int8 = q.top1_flips(q._logits(q._session(qdq), held), ref)
    assert flips_int8 > 0.05  # the outliers cost top-1: something for the sweep to fix
    kept, tried = q.choose_float_layers(qdq, prep, ranked, ref, held, max_flips=0.0, max_layers=2)
    assert kept == ["conv_a"] and tried[0] == (0, flips_int8) and tried[-1] == (1, 0.0)
    # a limit not met within the budget: the fewest layers that gave the fewest flips, not the whole budget
    kept, tried = q.choose_float_layers(qdq, prep, ranked, ref, held, max_flips=-1.0, max_layers=2)
    assert kept == ["conv_a"] and tried == [(0, flips_int8), (1, 0.0), (2, 0.0)]


def test_qdq_placement_by_op_type_and_kept_nodes(two_conv):
    tmp, fp32, prepared, int8, held, ref = two_conv
    calib = _batches(0)
    only_b = onnx.load(q.quantize_onnx(prepared, str(tmp / "b.onnx"), calib, "minmax", fp32_nodes=["conv_a"]))
    assert q.quantized_nodes(only_b) == ["conv_b"]
    convs = onnx.load(q.quantize_onnx(prepared, str(tmp / "c.onnx"), calib, "minmax", int8_op_types=("Conv",)))
    assert q.quantized_nodes(convs) == ["conv_a", "conv_b"]
    assert "relu" not in {n.name for n in convs.graph.node if n.op_type == "QuantizeLinear"}
    with pytest.raises(Exception, match="--int8-ops: the model has no MatMul node"):
        q.quantize_onnx(prepared, str(tmp / "d.onnx"), calib, "minmax", int8_op_types=("MatMul",))


@pytest.mark.slow
def test_quantize_tool_sweeps_and_refuses_a_drop_beyond_max_drop(tmp_path, monkeypatch):
    """The whole command on a trained tiny ResNet18: --sensitivity records its sweep; --max-drop refuses a
    drop larger than it (exit 3), and the INT8 folder already in --out stays as it was."""
    from engine_utils import run_tool, tiny_config
    path, data = tiny_config(tmp_path, arch="ResNet18", epochs=1, per_class=8)
    r = run_tool("train.py", "-c", path, "-o", "Global.eval_during_train=False")
    assert r.returncode == 0, r.stderr[-2000:]
    inf = str(tmp_path / "inf")
    r = run_tool("export_model.py", "-c", path, "-o", f"Global.pretrained_model={tmp_path}/output/ResNet18/latest",
                 "-o", f"Global.save_inference_dir={inf}", "-o", "Global.backend_probe=False")
    assert r.returncode == 0, r.stderr[-2000:]
    out = str(tmp_path / "int8")
    r = run_tool("quantize.py", "-c", path, "--model-dir", inf, "--out", out, "--calib-images", "12",
                 "--sensitivity", "--holdout-images", "12", "--max-fp32-layers", "2", "--max-drop", "100",
                 "--calib-trials", "2", "--seed", "3", "--calib-select", "stratified")
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert lines[-2].startswith("int8 over fp32 speed (onnxruntime,") and "at batch 1" in lines[-2], lines[-2:]
    from ppcls.inference.predictor import read_meta
    meta = read_meta(out)["quantization"]
    # 24 train images: what the two calibration choices leave of them is held out
    assert 0 < meta["sensitivity"]["holdout_images"] <= 12 and meta["sensitivity"]["layers"] >= 10
    assert meta["calibration"]["select"] == "stratified" and len(meta["fp32_layers"]) <= 2
    assert meta["calibration"]["trials"] == 2 and meta["calibration"]["seed"] in (3, 4)
    log = r.stderr + r.stdout
    assert "sensitivity over" in log and "calibration seed 3: top-1 flips" in log and "calibration seed 4:" in log
    assert f"kept the calibration of seed {meta['calibration']['seed']}" in log
    before = {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)}
    # a negative limit is refused as input; a drop beyond the limit is simulated by an eval whose int8 top-1 is
    # ten points below fp32's (the 12-image eval list moves in steps of 8.3 points)
    r = run_tool("quantize.py", "-c", path, "--model-dir", inf, "--out", out, "--max-drop", "-1")
    assert r.returncode == 2 and "--max-drop" in r.stderr
    real = q.evaluate

    def lower_int8(predictors, config):
        acc = real(predictors, config)
        return dict(acc, int8=(acc["fp32"][0] - 0.1,) + acc["int8"][1:])
    monkeypatch.setattr(q, "evaluate", lower_int8)
    from ppcls.schema import get_config
    from ppcls.utils.errors import RunError
    with pytest.raises(RunError, match=r"--max-drop 0.5: int8 top-1 .* is 10.00 points below fp32 .* not written"):
        q.quantize(get_config(path, []), inf, out, calib_images=12, max_drop=0.5, speed_batches=(1,))
    assert {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)} == before


def _close_classes_model(path):
    """features (4 channels) -> GlobalAveragePool -> head Conv -> Flatten -> Softmax. Logits 0 and 1 are both
    50 * f0 and differ by 0.05 * f1 (f1 = +-1): the top class is 1 or 0 by that small margin, within a range
    of about 100 that uint8 cuts into steps of 0.4."""
    w = np.zeros([3, 4, 1, 1], np.float32)
    w[0, 0], w[1, 0], w[1, 1], w[2, 0] = 50.0, 50.0, 0.05, -50.0
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"], name="pool"),
             helper.make_node("Conv", ["p", "w"], ["c"], name="head_conv"),
             helper.make_node("Flatten", ["c"], ["f"], name="flat"),
             helper.make_node("Softmax", ["f"], ["y"], name="softmax", axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _close_batches(seed, n=4):
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        b = np.zeros([8, 4, 4, 4], np.float32)
        b[:, 0] = rng.uniform(-1, 1, (8, 1, 1))
        b[:, 1] = rng.choice([-1.0, 1.0], (8, 1, 1))
        b[:, 2:] = rng.randn(8, 2, 4, 4)
        out.append(b)
    return out


def test_the_classifier_head_stays_float_and_keeps_close_classes_apart(tmp_path):
    fp32 = _close_classes_model(str(tmp_path / "fp32.onnx"))
    prepared, _ = q.prepare(fp32, str(tmp_path / "prepared.onnx"), bn_as_conv=False)
    head = q.head_nodes(onnx.load(prepared))
    assert head == ["softmax", "flat", "head_conv"]
    calib, held = _close_batches(0), _close_batches(1)
    ref = q._logits(q._session(onnx.load(fp32)), held)
    int8_head = onnx.load(q.quantize_onnx(prepared, str(tmp_path / "a.onnx"), calib, "minmax"))
    float_head = onnx.load(q.quantize_onnx(prepared, str(tmp_path / "b.onnx"), calib, "minmax", fp32_nodes=head))
    conv_a, conv_b = (next(n for n in m.graph.node if n.name == "head_conv") for m in (int8_head, float_head))
    assert conv_a.input[1] != "w" and conv_b.input[1] == "w"  # float weights: a float product
    # the features still arrive through int8 (the pooled tensor's QDQ); the logits are not rounded
    assert any(n.op_type == "QuantizeLinear" and n.input[0] == "p" for n in float_head.graph.node)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in ("c", "f", "y") for n in float_head.graph.node)
    assert q.top1_flips(q._logits(q._session(int8_head), held), ref) > 0.2  # ties at the 0.4 steps
    assert q.top1_flips(q._logits(q._session(float_head), held), ref) == 0.0


def test_head_nodes_follows_one_tensor_back_to_a_weighted_layer():
    def model(nodes, inits=(), outputs=("y",)):
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                                  [numpy_helper.from_array(np.ones(s, np.float32), n) for n, s in inits])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    w, b = ("w", [4, 3]), ("b", [3])
    gemm_bias = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                 helper.make_node("Add", ["b", "m"], ["y"], name="bias")]  # the constant may come first
    assert q.head_nodes(model(gemm_bias, [w, b])) == ["bias", "mm"]
    two_branches = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                    helper.make_node("Relu", ["x"], ["r"], name="relu"),
                    helper.make_node("Add", ["m", "r"], ["y"], name="join")]
    assert q.head_nodes(model(two_branches, [w])) == []  # a residual sum is no head: left to onnxruntime
    unknown = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"), helper.make_node("Relu", ["m"], ["y"], name="r")]
    assert q.head_nodes(model(unknown, [w])) == []
    two_outputs = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"), helper.make_node("Relu", ["x"], ["z"])]
    assert q.head_nodes(model(two_outputs, [w], outputs=("y", "z"))) == []
