"""INT8 post-training quantization of an exported model (tools/quantize.py, ``ppcls quantize``).

    python tools/quantize.py -c configs/quick_start/DLA46_c_digits.yaml \\
        --model-dir inference/DLA46_c_digits --out inference/DLA46_c_digits_int8 --calib-images 200

onnxruntime static quantization in QDQ format: uint8 activations (asymmetric; their ranges calibrated
on N images of the config's train list through its Eval transforms, by default at the 0.001 / 99.999
percentiles, which keeps single outliers from stretching a range; the README's INT8 table compares it with
min/max on the digits models), int8 per-channel weights (no reduced range: the VNNI dot products do not
saturate); the classifier head (``head_nodes``) stays float32. Graph preparations come first, each exact in float32:
onnxruntime's own basic optimisations (BatchNorm folded into the Conv before it); every BatchNorm that
could not be folded (pre-activation units, the RLA hidden state) rewritten as the equivalent 1x1
depthwise Conv, so that it becomes an int8 QLinearConv too instead of float32 work between a
DequantizeLinear and a QuantizeLinear with NCHW/NHWC transposes around it; every AveragePool whose windows all
average the same number of values rewritten as the equivalent depthwise Conv (``avgpool_to_conv``); and a Conv of a channel
Concat whose inputs' ranges differ by more than 4x split into a sum of Convs, one per input, so that
no input is squeezed into the others' int8 scale; and channel counts onnxruntime's int8 kernels run slowly padded
with zero channels (``pad_channels``). After quantizing, each dense Conv gets whichever of onnxruntime's two int8
kernels is timed faster on its shape here (``choose_conv_kernels``; the weights' dequantized values do not change),
and a grouped Conv of few channels per group the group count timed fastest (``regroup_convs``: zero weights between
the merged groups).

The output folder holds ``inference.onnx`` (the INT8 model, its preprocessing and labels in its
metadata_props), ``inference.yml`` (the export's pre/post-processing, ``precision: int8`` and how it was
quantized), ``backend.json`` (onnxruntime, with the int8 and fp32 speeds measured here) and
``inference_cls.yaml`` (PaddleClas 2.6's deploy config for it), so the deploy predictor, predict_cls.py, the HTTP
service and ``ppcls benchmark --mode int8`` load it as they load an export. Both models are then
evaluated on the config's eval list, with the number of images whose top-1 class int8 changes (a net top-1
difference hides gains against losses), and with ``reference_eval`` also the int8 model's QDQ graph evaluated as
written (``QDQReference``), against which onnxruntime's int8 kernels, rounding inside their integer arithmetic,
move a few images too; the last line printed is ``fp32 top1: X int8 top1: Y``.
"""
import collections
import copy
import os
import shutil
import tempfile

import numpy as np
import yaml

from ..utils.errors import ConfigError
from ..utils.logger import logger
from .backend import BACKEND_FILE, has_onnx_model, has_paddle_model, time_interleaved, write_probe
from .predictor import Predictor, read_meta

MIN_OPSET = 13  # per-channel DequantizeLinear (its axis attribute) needs opset 13
CALIB_METHODS = ("minmax", "percentile", "entropy")
CALIB_SELECT = ("stratified", "random")
# the ops whose int8 kernels carry the speed: the default QDQ placement of --sensitivity's candidates
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
HOLDOUT_SEED = 10007  # offset of the held-out choice's seed from the calibration seeds
# ops that move or reinterpret data, int8 or float alike: not counted as float32 compute
_LAYOUT_OPS = {"Transpose", "Reshape", "Shape", "Slice", "Concat", "Split", "Squeeze", "Unsqueeze", "Flatten",
               "Expand", "Tile", "Gather", "Identity", "Constant", "ConstantOfShape", "Cast", "ReorderInput",
               "ReorderOutput"}
_INT8_OPS = {"QGemm", "QAttention", "MatMulInteger", "ConvInteger", "NhwcMaxPool", "QLinearConcat"}


def _require_ort():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("quantize: needs onnxruntime and onnx (pip install onnxruntime onnx)") from None


def fp32_onnx(model_dir, work_dir):
    """An opset >= 13 float32 ONNX model of the export in ``model_dir``, written to
    ``work_dir/inference.onnx`` (with the export's inference.yml beside it). Returns its path."""
    import onnx
    os.makedirs(work_dir, exist_ok=True)
    meta = os.path.join(model_dir, "inference.yml")
    if os.path.isfile(meta):
        shutil.copy(meta, work_dir)
    if has_paddle_model(model_dir):
        from .onnx import convert_to_onnx
        for f in ("inference.json", "inference.pdmodel", "inference.pdiparams"):
            if os.path.isfile(os.path.join(model_dir, f)):
                shutil.copy(os.path.join(model_dir, f), work_dir)
        return convert_to_onnx(work_dir, opset=MIN_OPSET)
    if has_onnx_model(model_dir):
        model = onnx.load(os.path.join(model_dir, "inference.onnx"))
        if any(q.op_type.startswith("QLinear") or q.op_type == "QuantizeLinear" for q in model.graph.node):
            raise ConfigError(f"--model-dir {model_dir}: the model is quantized already (give the fp32 export)")
        opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        if opset < MIN_OPSET:
            from onnx import version_converter
            model = version_converter.convert_version(model, MIN_OPSET)
        path = os.path.join(work_dir, "inference.onnx")
        onnx.save(model, path)
        return path
    raise ConfigError(f"--model-dir {model_dir}: no exported model (inference.json + inference.pdiparams, or "
                      "inference.onnx); run tools/export_model.py first")


def _rank(model, name):
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            return len(vi.type.tensor_type.shape.dim)
    return None


def batchnorm_to_conv(model):
    """Rewrite every inference BatchNormalization on a 4-D tensor (constant statistics) as the
    identical 1x1 depthwise Conv: y = x * s + b with s = gamma / sqrt(var + eps), b = beta - mean * s.
    Returns the number rewritten. Per-channel int8 holds each channel's single weight exactly."""
    from onnx import helper, numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    done = 0
    for node in model.graph.node:
        if node.op_type != "BatchNormalization" or len(node.input) != 5 or len(node.output) != 1:
            continue
        if any(n not in inits for n in node.input[1:]) or _rank(model, node.input[0]) != 4:
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in node.input[1:])
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        s = gamma / np.sqrt(var + eps)
        b = beta - mean * s
        base = f"{node.output[0]}_bn_as_conv"
        model.graph.initializer.extend([
            numpy_helper.from_array(s.reshape(-1, 1, 1, 1).astype(np.float32), f"{base}_w"),
            numpy_helper.from_array(b.astype(np.float32), f"{base}_b")])
        x = node.input[0]
        node.op_type = "Conv"
        del node.input[:]
        node.input.extend([x, f"{base}_w", f"{base}_b"])
        del node.attribute[:]
        node.attribute.extend([helper.make_attribute("group", int(s.size)), helper.make_attribute("kernel_shape", [1, 1])])
        done += 1
    _drop_unused_initializers(model)
    return done


def avgpool_to_conv(model):
    """Rewrite every 2-D AveragePool whose every window averages kernel_shape values (no padding, or padding
    counted with count_include_pad; floor mode) as the identical depthwise Conv with weights 1 / (kh * kw).
    onnxruntime runs an int8 AveragePool (QLinearAveragePool) channels-first between two transposes, in the RLA
    nets' hidden-state downsampling 16x slower than the float32 pool; as a depthwise Conv it is an int8
    QLinearConv like its neighbours. Returns the number rewritten."""
    from onnx import helper, numpy_helper
    done = 0
    for node in model.graph.node:
        if node.op_type != "AveragePool" or len(node.output) != 1:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attrs.get("kernel_shape", []))
        pads = list(attrs.get("pads", [0] * 2 * len(kernel)))
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        channels = _channels(model, node.input[0])
        if (len(kernel) != 2 or attrs.get("ceil_mode", 0) or auto_pad not in ("NOTSET", "VALID") or not channels
                or any(d != 1 for d in attrs.get("dilations", [1, 1])) or (any(pads) and not attrs.get("count_include_pad", 0))):
            continue
        name = f"{node.output[0]}_avgpool_as_conv_w"
        model.graph.initializer.append(numpy_helper.from_array(
            np.full((channels, 1, kernel[0], kernel[1]), 1.0 / (kernel[0] * kernel[1]), np.float32), name))
        node.op_type = "Conv"
        node.input.append(name)
        del node.attribute[:]
        node.attribute.extend([helper.make_attribute("group", channels), helper.make_attribute("kernel_shape", kernel),
                               helper.make_attribute("strides", list(attrs.get("strides", [1, 1]))),
                               helper.make_attribute("pads", pads if auto_pad == "NOTSET" else [0, 0, 0, 0])])
        done += 1
    return done


def _channels(model, name):
    for vi in list(model.graph.value_info) + list(model.graph.input):
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            dims = vi.type.tensor_type.shape.dim
            return dims[1].dim_value if len(dims) == 4 and dims[1].HasField("dim_value") else None
    return None


def tensor_ranges(model_path, names, batches):
    """{tensor: max - min} over ``batches`` of the named intermediate tensors of a float32 model."""
    import onnx
    model = onnx.load(model_path)
    known = {o.name for o in model.graph.output}
    model.graph.output.extend([onnx.ValueInfoProto(name=n) for n in names if n not in known])
    sess = _session(model, optimize=False)
    inp = sess.get_inputs()[0].name
    lo, hi = {n: np.inf for n in names}, {n: -np.inf for n in names}
    for b in batches:
        for n, v in zip(names, sess.run(names, {inp: b})):
            lo[n], hi[n] = min(lo[n], float(v.min())), max(hi[n], float(v.max()))
    return {n: hi[n] - lo[n] for n in names}


def split_concat_conv(model, ranges, ratio=4.0):
    """Rewrite Conv(Concat(a, b, ...)) (channel concat feeding only a dense Conv) as
    Conv_a(a) + Conv_b(b) + ... with the weight split along its input channels, where the inputs'
    ranges (``ranges``: tensor -> max - min) differ by more than ``ratio``. Identical in float32;
    in int8 each input keeps its own scale instead of the concat's common one, which would leave a
    tanh-bounded RLA hidden state beside features ten times larger with a handful of levels.
    Returns the number of Concat -> Conv pairs rewritten."""
    from onnx import helper, numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    consumers = collections.defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            consumers[i].append(n)
    outputs = {o.name for o in model.graph.output}
    nodes, done, skip = list(model.graph.node), 0, set()
    replacement = {}
    for cat in nodes:
        if cat.op_type != "Concat" or next((a.i for a in cat.attribute if a.name == "axis"), None) != 1:
            continue
        users = consumers[cat.output[0]]
        if len(users) != 1 or cat.output[0] in outputs or users[0].op_type != "Conv" or users[0].input[0] != cat.output[0]:
            continue
        conv = users[0]
        if next((a.i for a in conv.attribute if a.name == "group"), 1) != 1 or conv.input[1] not in inits:
            continue
        chans = [_channels(model, x) for x in cat.input]
        spans = [ranges.get(x) for x in cat.input]
        if None in chans or None in spans or min(spans) <= 0 or max(spans) / min(spans) <= ratio:
            continue
        w = numpy_helper.to_array(inits[conv.input[1]])
        if w.shape[1] != sum(chans):
            continue
        bias = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
        new, parts, start = [], [], 0
        for k, (x, c) in enumerate(zip(cat.input, chans)):
            wname = f"{conv.name}_split{k}_w"
            model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w[:, start:start + c]), wname))
            start += c
            out = f"{conv.output[0]}_split{k}"
            ins = [x, wname] + ([bias] if bias and k == 0 else [])
            new.append(helper.make_node("Conv", ins, [out], name=f"{conv.name}_split{k}"))
            new[-1].attribute.extend(conv.attribute)
            parts.append(out)
        acc = parts[0]
        for k, part in enumerate(parts[1:], 1):
            out = conv.output[0] if k == len(parts) - 1 else f"{conv.output[0]}_sum{k}"
            new.append(helper.make_node("Add", [acc, part], [out], name=f"{conv.name}_sum{k}"))
            acc = out
        skip.add(id(cat))
        replacement[id(conv)] = new
        done += 1
    if done:
        rebuilt = []
        for n in nodes:
            if id(n) in skip:
                continue
            rebuilt.extend(replacement.get(id(n), [n]))
        del model.graph.node[:]
        model.graph.node.extend(rebuilt)
        used = {i for n in model.graph.node for i in n.input}
        keep = [i for i in model.graph.initializer if i.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
    return done


# channel counts at which onnxruntime's int8 Conv kernels (MLAS, x86 AVX-512 VNNI) run at full speed, measured with
# onnxruntime 1.32 on single QLinearConvs: a dense Conv whose input or output channels are not a multiple of 4 ran
# 2 to 3x slower (1x1, 56x56: 38 -> 228 channels 369 us, 40 -> 228 136 us; 36 -> 162 245 us, 36 -> 164 102 us),
# a depthwise 3x3 Conv with channels not a multiple of 16 about 2x slower (56x56: 164 342 us, 160 166 us, 176 181 us)
DENSE_CHANNEL_MULTIPLE = 4
DEPTHWISE_CHANNEL_MULTIPLE = 16
_PAD_UNARY = {"Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus",
              "Identity", "Neg", "Abs", "Erf"}
_PAD_POOL = {"GlobalAveragePool", "GlobalMaxPool", "MaxPool", "AveragePool"}
_PAD_BINARY = {"Add": 0.0, "Sub": 0.0, "Mul": 1.0, "Div": 1.0, "Max": 0.0, "Min": 0.0}  # value of a padded constant


def _attr(node, name, default=None):
    from onnx import helper
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _replace_input(model, inits, node, k, array):
    """Give ``node`` its own initializer ``array`` as input ``k`` (a shared initializer stays as it was)."""
    from onnx import numpy_helper
    name = f"{node.name or node.output[0]}_in{k}_padded"  # unique: a node's name may be empty, its output's is not
    if name in inits:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))
    else:
        model.graph.initializer.append(numpy_helper.from_array(array, name))
        inits[name] = model.graph.initializer[-1]  # append copies the message
    node.input[k] = name


def _pad_input(model, inits, node, k, axis, pad, value=0.0):
    from onnx import numpy_helper
    v = numpy_helper.to_array(inits[node.input[k]])
    widths = [(0, 0)] * v.ndim
    widths[axis] = (0, pad)
    _replace_input(model, inits, node, k, np.pad(v, widths, constant_values=value).astype(v.dtype))


def pad_channels(model, dense_multiple=DENSE_CHANNEL_MULTIPLE, depthwise_multiple=DEPTHWISE_CHANNEL_MULTIPLE):
    """Give the channels between dense Convs a count onnxruntime's int8 kernels run at full speed, exactly in
    float32. A region is a set of 4-D tensors joined by channel-wise ops (activations, pooling, depthwise Convs,
    elementwise Add / Mul / ... of two region tensors or with a per-channel constant), by channel Slices that run
    to the last channel and by the last input of a channel Concat; its tensors are produced by dense Convs (group
    1, constant weights) and those ops. The region's tensors get P extra channels at their end, P the same for
    all, so that every Conv reading or writing one has a multiple of ``depthwise_multiple`` channels (with a
    depthwise Conv in the region) or of ``dense_multiple``: the producing Convs get zero weights and biases for
    them, depthwise Convs zero weights, reading Convs zero weights, and every other reader (a Slice ending within
    the real channels, an op that would see the extra channels) reads the real channels only (an added Slice;
    on int8 data a copy). An elementwise op joining a region tensor to one made elsewhere is read that way too.
    This is ReXNet's expanded channels (162 -> 176, 228 -> 240, ...), its SE and its block outputs (38 -> 40).
    Returns the number of regions padded."""
    from onnx import helper, numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    consts = set(inits) | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers = collections.defaultdict(list)
    for n in model.graph.node:
        for k, i in enumerate(n.input):
            consumers[i].append((n, k))
    outputs = {o.name for o in model.graph.output}

    def channels(t):
        s = shapes.get(t)
        return s[1] if s and len(s) == 4 else None

    def weight_shape(n):
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in inits:
            return None
        return tuple(inits[n.input[1]].dims)

    def dense(n):
        w = weight_shape(n)
        return w is not None and len(w) == 4 and _attr(n, "group", 1) == 1

    def depthwise(n):
        w = weight_shape(n)
        return w is not None and len(w) == 4 and w[1] == 1 and _attr(n, "group", 1) == w[0] == channels(n.input[0])

    def channel_slice(n):  # (start, end) of a constant step-1 Slice on axis 1 only, else None
        if n.op_type != "Slice" or len(n.input) < 4 or not all(i in inits for i in n.input[1:4]):
            return None
        if len(n.input) > 4 and n.input[4] and (n.input[4] not in inits or np.any(numpy_helper.to_array(inits[n.input[4]]) != 1)):
            return None
        axes = [int(a) % 4 for a in numpy_helper.to_array(inits[n.input[3]])]
        c = channels(n.input[0])
        if axes != [1] or c is None:
            return None
        start, end = (int(numpy_helper.to_array(inits[i])[0]) for i in n.input[1:3])
        return (start + c if start < 0 else min(start, c)), (end + c if end < 0 else min(end, c))

    def joined_inputs(n, cut):  # the inputs a node's output shares its (padded) channel layout with
        if n.op_type in _PAD_UNARY or n.op_type in _PAD_POOL or depthwise(n):
            return [n.input[0]]
        if n.op_type in _PAD_BINARY and id(n) not in cut:
            return [i for i in n.input if i not in consts]
        if n.op_type == "Slice":
            s = channel_slice(n)
            return [n.input[0]] if s and s[0] < s[1] == channels(n.input[0]) else []
        if n.op_type == "Concat" and _attr(n, "axis") in (1, -3):
            return [n.input[-1]]
        return []

    def regions(cut):
        parent = {}

        def find(t):
            parent.setdefault(t, t)
            while parent[t] != t:
                parent[t] = parent[parent[t]]
                t = parent[t]
            return t
        for n in model.graph.node:
            if dense(n):
                find(n.output[0])
            for i in joined_inputs(n, cut):
                parent[find(i)] = find(n.output[0])
        groups = collections.defaultdict(list)
        for t in list(parent):
            groups[find(t)].append(t)
        return list(groups.values())

    def plan(members, cut):
        """(pad, sources, depthwise Convs, sinks, slices, per-channel constants, strips) or None; may add to ``cut``."""
        tensors = set(members)
        for t in members:
            p = producer.get(t)
            if p is None or not (dense(p) or any(i in tensors for i in joined_inputs(p, cut))):
                # made elsewhere: an elementwise op that joined it to the region reads its inputs unpadded instead
                joining = [n for n, _ in consumers[t] if n.op_type in _PAD_BINARY and id(n) not in cut]
                if not joining:
                    return None
                cut.update(id(n) for n in joining)
                return "again"
        if any(t in outputs or channels(t) is None for t in members):
            return None
        sources, dws, sinks, slices, constants, strips = [], [], [], [], [], []
        for t in members:
            if dense(producer[t]):
                sources.append(producer[t])
            for n, k in consumers[t]:
                if n.output and n.output[0] in tensors and t in joined_inputs(n, cut):
                    if depthwise(n):
                        dws.append(n)
                    if n.op_type == "Slice":
                        slices.append(n)
                    for other in n.input if n.op_type in _PAD_BINARY else ():
                        if other in consts:
                            v = numpy_helper.to_array(inits[other]) if other in inits else None
                            if v is None or (v.size > 1 and not (v.ndim >= 3 and v.shape[-3] in (1, channels(t))
                                                                 and v.shape[-2:] == (1, 1))):
                                return None
                            if v.size > 1 and v.shape[-3] > 1:
                                constants.append((n, other))
                elif dense(n) and k == 0:
                    sinks.append(n)
                elif k == 0 and channel_slice(n):
                    slices.append(n)
                else:
                    strips.append((n, k, t))
        for n in slices:  # a slice to the last channel only stripped after it: it stops at the real channels instead
            if n.output[0] in tensors and {(id(c), k) for c, k in consumers[n.output[0]]} <= {(id(c), k) for c, k, _ in strips}:
                strips = [s for s in strips if s[2] != n.output[0]]
                tensors.discard(n.output[0])
        facing = [channels(n.output[0]) for n in sources + dws] + [channels(n.input[0]) for n in sinks]
        multiple = depthwise_multiple if dws else dense_multiple
        pads = {-c % multiple for c in facing}
        # no Conv reads the region (a classifier's logits): aligning its one Conv does not pay for the added Slices
        if not sources or not (sinks or dws) or len(pads) != 1 or not pads.pop():
            return None
        return -facing[0] % multiple, tensors, sources, dws, sinks, slices, constants, strips

    cut = set()
    plans = []
    for _ in range(len(model.graph.node)):
        plans, again = [], False
        for members in regions(cut):
            p = plan(members, cut)
            if p == "again":
                again = True
                break
            if p:
                plans.append(p)
        if not again:
            break
    added = []
    for pad, tensors, sources, dws, sinks, slices, constants, strips in plans:
        for n in sources + dws:
            _pad_input(model, inits, n, 1, 0, pad)
            if len(n.input) > 2 and n.input[2]:
                _pad_input(model, inits, n, 2, 0, pad)
        for n in dws:
            next(a for a in n.attribute if a.name == "group").i = channels(n.input[0]) + pad
        for n in sinks:
            _pad_input(model, inits, n, 1, 1, pad)
        for n, name in constants:
            _pad_input(model, inits, n, list(n.input).index(name), numpy_helper.to_array(inits[name]).ndim - 3, pad,
                       _PAD_BINARY[n.op_type])
        for n in slices:  # in real channels; one running to the last channel keeps the padding (its output is padded)
            start, end = channel_slice(n)
            keep = n.output[0] in tensors
            _replace_input(model, inits, n, 1, np.array([start], np.int64))
            _replace_input(model, inits, n, 2, np.array([end + pad if keep else end], np.int64))
        stripped = {}
        for n, k, t in strips:
            if t not in stripped:
                stripped[t] = f"{t}_unpadded"
                for name, v in ((f"{t}_unpadded_starts", [0]), (f"{t}_unpadded_ends", [channels(t)]), (f"{t}_unpadded_axes", [1])):
                    model.graph.initializer.append(numpy_helper.from_array(np.array(v, np.int64), name))
                added.append((t, helper.make_node("Slice", [t, f"{t}_unpadded_starts", f"{t}_unpadded_ends", f"{t}_unpadded_axes"],
                                                  [stripped[t]], name=f"{t}_unpadded")))
            n.input[k] = stripped[t]
        keep = [vi for vi in model.graph.value_info if vi.name not in tensors]
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep)
    if added:  # each strip right after the node that makes its input (the graph stays in topological order)
        after = collections.defaultdict(list)
        for t, node in added:
            after[t].append(node)
        nodes = []
        for n in model.graph.node:
            nodes.append(n)
            for o in n.output:
                nodes.extend(after[o])
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    if plans:
        used = {i for n in model.graph.node for i in n.input}
        keep = [i for i in model.graph.initializer if i.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
    return len(plans)


def prepare(fp32_path, out_path, bn_as_conv=True, calib_batches=None, split_ratio=4.0, pad=True, pool_as_conv=True):
    """onnxruntime's quantization pre-processing (shape inference, basic graph optimisation: BN folded
    into the preceding Conv), then ``batchnorm_to_conv``, with ``pool_as_conv`` ``avgpool_to_conv``, given
    calibration batches ``split_concat_conv`` where the concatenated inputs' ranges differ by more than
    ``split_ratio``, and with ``pad`` ``pad_channels``. Returns (path, {"bn_as_conv": n, "avgpool_as_conv": n,
    "split_concat_conv": n, "pad_channels": n})."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process
    quant_pre_process(fp32_path, out_path, skip_symbolic_shape=True)
    model = onnx.load(out_path)
    n_bn = batchnorm_to_conv(model) if bn_as_conv else 0
    n_pool = avgpool_to_conv(model) if pool_as_conv else 0
    model = onnx.shape_inference.infer_shapes(model)
    n_split = 0
    if calib_batches and split_ratio:
        cats = sorted({x for n in model.graph.node if n.op_type == "Concat" for x in n.input})
        if cats:
            onnx.save(model, out_path)
            n_split = split_concat_conv(model, tensor_ranges(out_path, cats, calib_batches[:4]), split_ratio)
            model = onnx.shape_inference.infer_shapes(model)
    n_pad = pad_channels(model) if pad else 0
    if n_pad:
        model = onnx.shape_inference.infer_shapes(model)
    onnx.save(model, out_path)
    return out_path, {"bn_as_conv": n_bn, "avgpool_as_conv": n_pool, "split_concat_conv": n_split, "pad_channels": n_pad}


class BatchReader:
    """onnxruntime's CalibrationDataReader over a list of float32 NCHW batches."""

    def __init__(self, input_name, batches):
        self.input_name = input_name
        self.batches = list(batches)
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.batches):
            return None
        self.pos += 1
        return {self.input_name: np.ascontiguousarray(self.batches[self.pos - 1], dtype=np.float32)}

    def rewind(self):
        self.pos = 0


def quantize_onnx(prepared_path, out_path, calib_batches, calib_method="percentile", fp32_op_types=(), per_channel=True,
                  int8_op_types=None, fp32_nodes=()):
    """Static QDQ quantization of ``prepared_path`` to ``out_path``. ``fp32_op_types``: op types whose
    nodes stay float32 (e.g. Sigmoid, Mul to keep the SE / SiLU gates in float); ``int8_op_types``: the
    only op types that get int8 (the QDQ placement by op type, e.g. Conv, MatMul; None: every op
    onnxruntime can quantize); ``fp32_nodes``: node names kept float32 (the sensitivity sweep's choice)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    if calib_method not in CALIB_METHODS:
        raise ConfigError(f"--calib-method: one of {', '.join(CALIB_METHODS)}, got {calib_method!r}")
    model = onnx.load(prepared_path)
    known = {n.op_type for n in model.graph.node}
    for flag, types in (("--fp32-ops", fp32_op_types), ("--int8-ops", int8_op_types or ())):
        unknown = [t for t in types if t not in known]
        if unknown:
            raise ConfigError(f"{flag}: the model has no {unknown[0]} node (its op types: {', '.join(sorted(known))})")
    exclude = [n.name for n in model.graph.node if n.op_type in set(fp32_op_types)] + list(fp32_nodes)
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calib_method]
    def run(method):
        quantize_static(prepared_path, out_path, BatchReader(model.graph.input[0].name, calib_batches),
                        quant_format=QuantFormat.QDQ, per_channel=per_channel, reduce_range=False,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude or None,
                        op_types_to_quantize=list(int8_op_types) if int8_op_types else None, calibrate_method=method)
    # no CalibMaxIntermediateOutputs: onnxruntime 1.32's MinMax calibrator drops (does not reduce) the
    # outputs it has collected each time that many batches are held, so a multiple of it left no data
    try:
        run(method)
    except ValueError as e:  # numpy cannot bin a tensor whose range is (nearly) zero
        if method == CalibrationMethod.MinMax or "bins" not in str(e):
            raise
        logger.warning(f"{calib_method} calibration failed on a tensor of (nearly) constant value ({e}); "
                       "calibrating by min/max instead")
        run(CalibrationMethod.MinMax)
    return out_path


# -- the int8 Conv kernel of each layer --------------------------------------------------------------------
# onnxruntime 1.32 runs an int8 Conv whose weight zero points are all 0 (symmetric, as quantized here) with its
# "symmetric" Conv kernels (VNNI dot products) and any other with its general QGEMM kernels, which on CPUs with
# AMX use the AMX tiles: measured on single layers, a 3x3 Conv 512 -> 512 at 7x7 ran 289 us symmetric, 130 us
# with zero point -1; a 3x3 Conv 64 -> 64 at 56x56 198 us symmetric, 243 us with -1. Storing w - 1 with zero point
# -1 gives the same dequantized weights (symmetric int8 weights lie in [-127, 127]): the choice changes speed only.
KERNEL_MARGIN = 0.9  # the general kernel is taken where it needs at most this fraction of the symmetric one's time


def _conv_kernel_model(x, w, w_scale, bias, attrs, zero_point):
    """A single channels-last QLinearConv (onnxruntime's own form of an int8 Conv) with int8 weights ``w``,
    their zero point ``zero_point`` (0, or -1 with ``w - 1`` stored)."""
    from onnx import TensorProto, helper, numpy_helper
    n = w.shape[0]
    stored = w if zero_point == 0 else (w.astype(np.int16) + zero_point).astype(np.int8)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "xs"), numpy_helper.from_array(np.array(128, np.uint8), "xz"),
             numpy_helper.from_array(stored, "w"), numpy_helper.from_array(w_scale.astype(np.float32), "ws"),
             numpy_helper.from_array(np.full(w_scale.shape, zero_point, np.int8), "wz"),
             numpy_helper.from_array(np.array(0.1, np.float32), "ys"), numpy_helper.from_array(np.array(128, np.uint8), "yz"),
             numpy_helper.from_array(bias if bias is not None else np.zeros(n, np.int32), "b")]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            domain="com.microsoft", channels_last=1, **attrs)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])


def time_conv_variants(x, variants, bias, threads=1, rounds=5, seconds=0.02):
    """Seconds per run of each int8 Conv of ``variants`` [(w, w_scale, attrs, zero_point)] on ``x`` (uint8, NHWC):
    the best of ``rounds`` alternating rounds of about ``seconds`` each."""
    import time
    sessions = [_session(_conv_kernel_model(x, w, scale, bias, attrs, zp), threads) for w, scale, attrs, zp in variants]
    feed = {"x": x}
    for s in sessions:
        s.run(None, feed)
    t0 = time.perf_counter()
    sessions[0].run(None, feed)
    runs = max(1, int(seconds / max(time.perf_counter() - t0, 1e-6)))
    best = [np.inf] * len(sessions)
    for _ in range(rounds):
        for k, s in enumerate(sessions):
            t0 = time.perf_counter()
            for _ in range(runs):
                s.run(None, feed)
            best[k] = min(best[k], (time.perf_counter() - t0) / runs)
    return best


def time_conv_kernels(x, w, w_scale, bias, attrs, threads=1, rounds=5, seconds=0.02):
    """(symmetric, general) seconds per run of one int8 Conv on ``x`` (uint8, NHWC)."""
    return tuple(time_conv_variants(x, [(w, w_scale, attrs, 0), (w, w_scale, attrs, -1)], bias, threads, rounds, seconds))


def _int8_convs(qdq_model, prepared_model):
    """The Convs of ``qdq_model`` with symmetric per-channel int8 weights of their own (a DequantizeLinear of
    initializers) and a known input shape: (node, weight DequantizeLinear, w, w_scale per output channel, int32 bias
    or None, attributes, NCHW input shape)."""
    from onnx import helper, numpy_helper
    inits = {i.name: i for i in qdq_model.graph.initializer}
    producer = {o: n for n in qdq_model.graph.node for o in n.output}
    users = collections.Counter(i for n in qdq_model.graph.node for i in n.input)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(prepared_model.graph.value_info) + list(prepared_model.graph.input)}
    prepared = {n.name: n for n in prepared_model.graph.node}
    for node in list(qdq_model.graph.node):
        if node.op_type != "Conv" or node.name not in prepared or len(node.input) < 2:
            continue
        wdq = producer.get(node.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear" or users[node.input[1]] != 1 or len(wdq.input) < 3:
            continue
        if not all(i in inits for i in wdq.input) or users[wdq.input[0]] != 1 or producer.get(node.input[0]) is None:
            continue
        w = numpy_helper.to_array(inits[wdq.input[0]])
        zp = numpy_helper.to_array(inits[wdq.input[2]])
        shape = shapes.get(prepared[node.name].input[0])
        if (w.dtype != np.int8 or w.ndim != 4 or np.any(zp != 0) or w.min() < -127
                or not shape or len(shape) != 4 or not all(shape[1:])):
            continue
        bias = None
        if len(node.input) > 2 and node.input[2] in producer and producer[node.input[2]].input[0] in inits:
            bias = numpy_helper.to_array(inits[producer[node.input[2]].input[0]]).astype(np.int32)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs.setdefault("kernel_shape", list(w.shape[2:]))
        w_scale = np.broadcast_to(numpy_helper.to_array(inits[wdq.input[1]]), (w.shape[0],)).astype(np.float32)
        yield node, wdq, w, w_scale, bias, attrs, shape


def _drop_unused_initializers(model):
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def choose_conv_kernels(qdq_model, prepared_model, threads=1, batch=1, timer=time_conv_kernels):
    """For every dense int8 Conv of ``qdq_model`` (symmetric per-channel int8 weights) time onnxruntime's two
    int8 kernels on its shape (``batch`` images) and store the weights with zero point -1, which selects the
    general kernel, where that one takes at most ``KERNEL_MARGIN`` of the symmetric one's time. Exact: the
    dequantized weights are the same. Returns the names of the Convs changed."""
    from onnx import numpy_helper
    inits = {i.name: i for i in qdq_model.graph.initializer}
    rng = np.random.RandomState(0)
    changed = []
    for node, wdq, w, w_scale, bias, attrs, shape in _int8_convs(qdq_model, prepared_model):
        if attrs.get("group", 1) != 1:
            continue
        x = rng.randint(0, 256, [batch, shape[2], shape[3], shape[1]]).astype(np.uint8)
        symmetric, general = timer(x, w, w_scale.copy(), bias, attrs, threads)
        if general > KERNEL_MARGIN * symmetric:
            continue
        zp = numpy_helper.to_array(inits[wdq.input[2]])
        for k, array in ((0, (w.astype(np.int16) - 1).astype(np.int8)), (2, np.full(zp.shape, -1, np.int8))):
            name = f"{wdq.input[k]}_general_kernel"
            qdq_model.graph.initializer.append(numpy_helper.from_array(array, name))
            wdq.input[k] = name
        changed.append(node.name)
    if changed:
        _drop_unused_initializers(qdq_model)
    return changed


def block_diagonal(w, groups, new_groups):
    """The weights ``w`` (O, C / groups, kh, kw) of a Conv with ``groups`` groups as the weights of the same Conv
    with ``new_groups`` (a divisor of ``groups``): each new group holds the blocks of the old groups it covers on
    its diagonal and zeros elsewhere, so every output channel still reads only its own old group's inputs."""
    if groups % new_groups:
        raise ValueError(f"{new_groups} groups do not divide {groups}")
    per = groups // new_groups  # old groups in each new group
    out_ch, in_per_group = w.shape[:2]
    blocks = w.reshape(new_groups, per, out_ch // groups, in_per_group, *w.shape[2:])
    out = np.zeros((new_groups, per, out_ch // groups, per * in_per_group) + tuple(w.shape[2:]), w.dtype)
    for j in range(per):
        out[:, j, :, j * in_per_group:(j + 1) * in_per_group] = blocks[:, j]
    return out.reshape(out_ch, per * in_per_group, *w.shape[2:])


def regroup_convs(qdq_model, prepared_model, threads=1, batch=1, timer=time_conv_variants):
    """For every grouped int8 Conv of ``qdq_model`` that is not depthwise (1 < group < input channels) time it on
    its shape (``batch`` images) with its groups and with each divisor of them (``block_diagonal`` weights), and
    keep the fastest count where it takes at most ``KERNEL_MARGIN`` of the original's time. onnxruntime's int8
    kernels run a group of few channels (ResNeXt-style cardinality 32 on narrow layers: 2 to 8 channels) as a
    GEMM too small for its dot products, several times slower than the float32 Conv; merged groups do more
    multiply-adds (the zeros) at full speed. Exact: the added weights are zeros. Returns {name: (old, new)}."""
    from onnx import helper, numpy_helper
    rng = np.random.RandomState(0)
    changed = {}
    for node, wdq, w, w_scale, bias, attrs, shape in _int8_convs(qdq_model, prepared_model):
        groups = int(attrs.get("group", 1))
        if groups <= 1 or groups >= shape[1]:
            continue
        counts = [groups] + [d for d in range(groups - 1, 0, -1) if groups % d == 0]
        x = rng.randint(0, 256, [batch, shape[2], shape[3], shape[1]]).astype(np.uint8)
        times = timer(x, [(block_diagonal(w, groups, d) if d != groups else w, w_scale, dict(attrs, group=d), 0)
                          for d in counts], bias, threads)
        best = int(np.argmin(times))
        if counts[best] == groups or times[best] > KERNEL_MARGIN * times[0]:
            continue
        name = f"{wdq.input[0]}_groups{counts[best]}"
        qdq_model.graph.initializer.append(numpy_helper.from_array(block_diagonal(w, groups, counts[best]), name))
        wdq.input[0] = name
        for a in node.attribute:
            if a.name == "group":
                a.CopyFrom(helper.make_attribute("group", counts[best]))
        changed[node.name] = (groups, counts[best])
    if changed:
        _drop_unused_initializers(qdq_model)
    return changed


def tune_conv_kernels(qdq_model, prepared_model, threads=1):
    """``regroup_convs``, then ``choose_conv_kernels`` (a Conv regrouped to one group is dense and has its kernel
    chosen too), on ``qdq_model`` in place: ({name: (old groups, new)}, [names on the general kernel])."""
    regrouped = regroup_convs(qdq_model, prepared_model, threads)
    return regrouped, choose_conv_kernels(qdq_model, prepared_model, threads)


# ops between the classifier's last layer and the output that pass one tensor on (their other inputs, if any,
# are shapes or constants)
_HEAD_PASS_OPS = {"Softmax", "LogSoftmax", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast",
                  "Transpose", "Add", "Mul", "Div", "Sub"}


def head_nodes(model):
    """Names of the classifier head's nodes: the last Conv / Gemm / MatMul before the (single) output and the
    ops after it (softmax, reshapes, a bias Add). They stay float32 by default: int8 there would round the
    logits themselves to the uint8 steps of their range (about 0.1 to 0.2 on a digits model), which ties and
    flips classes whose scores are close, and the softmax output to steps of 1/255; a float head costs one
    small layer (a [N, C] x [C, K] product)."""
    if len(model.graph.output) != 1:
        return []
    producer = {o: n for n in model.graph.node for o in n.output}
    constants = {i.name for i in model.graph.initializer}
    constants |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    names, tensor = [], model.graph.output[0].name
    while tensor in producer:
        node = producer[tensor]
        names.append(node.name)
        if node.op_type in WEIGHTED_OPS:
            return names
        if node.op_type not in _HEAD_PASS_OPS:
            break
        if node.op_type in ("Add", "Mul", "Div", "Sub"):
            data = [i for i in node.input if i and i not in constants]
            if len(data) != 1:
                break
            tensor = data[0]
        else:
            tensor = node.input[0]
    return []  # no single path from the output back to a weighted layer: quantize as onnxruntime chooses


# -- per-layer sensitivity ---------------------------------------------------------------------------------
def quantized_nodes(qdq_model, op_types=WEIGHTED_OPS):
    """Names of the ``op_types`` nodes of a QDQ model that read a DequantizeLinear output (int8 after
    onnxruntime's fusion), in graph order."""
    producers = {o: n for n in qdq_model.graph.node for o in n.output}
    return [n.name for n in qdq_model.graph.node
            if n.op_type in op_types and n.input and getattr(producers.get(n.input[0]), "op_type", None) == "DequantizeLinear"]


def float_nodes_model(qdq_model, prepared_model, names):
    """A copy of the QDQ model in which the nodes ``names`` read their float32 inputs (the tensors before
    QuantizeLinear, the float weights of the prepared model) instead of the dequantized ones: those nodes
    run in float32, everything else as quantized. Calibration ranges come from the float model, so this
    equals quantizing with the nodes excluded, without calibrating again."""
    import onnx
    from onnx import helper
    original = {n.name: n for n in prepared_model.graph.node}
    model = copy.deepcopy(qdq_model)
    # a tensor some node already produces under the float name (onnxruntime dequantizes a bias under its own
    # name; its int32 steps are far below the float rounding) is used as it is
    have = {i.name for i in model.graph.initializer} | {o for n in model.graph.node for o in n.output}
    float_inits = {i.name: i for i in prepared_model.graph.initializer}
    prepared_producer = {o: n for n in prepared_model.graph.node for o in n.output}
    qdq_producer = {o: n for n in model.graph.node for o in n.output}
    added = []

    def float_input(name):
        """The float32 tensor ``name`` of the prepared model, in the QDQ model. onnxruntime's quantizer drops a
        Relu / Clip after a Conv or Add (the QuantizeLinear's range clips instead) and the Conv then writes the
        activation's output name with values before the activation: that activation is applied again here."""
        if name in float_inits and name not in have:
            model.graph.initializer.append(float_inits[name])
            have.add(name)
        p, q = prepared_producer.get(name), qdq_producer.get(name)
        if p is None or q is None or q.name == p.name:
            return name
        if p.op_type not in ("Relu", "Clip"):
            raise ValueError(f"tensor {name}: made by {q.op_type} {q.name} in the QDQ model, by {p.op_type} {p.name} "
                             "in the prepared model")
        out = f"{name}_float_input"
        if out not in have:
            for extra in p.input[1:]:
                float_input(extra)
            added.append((q, helper.make_node(p.op_type, [name] + list(p.input[1:]), [out], name=f"{p.name}_float_input")))
            have.add(out)
        return out

    for node in model.graph.node:
        if node.name not in names:
            continue
        if node.name not in original:
            raise ValueError(f"node {node.name} is not in the prepared model")
        inputs = [float_input(i) if i else i for i in original[node.name].input]
        del node.input[:]
        node.input.extend(inputs)
    if added:  # each re-applied activation right after the node that writes its input
        after = collections.defaultdict(list)
        for q, n in added:
            after[id(q)].append(n)
        nodes = []
        for n in model.graph.node:
            nodes.append(n)
            nodes.extend(after[id(n)])
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def _session(model, threads=1, optimize=True):
    """An onnxruntime CPU session of the ModelProto ``model``; ``optimize=False``: no graph optimisation (each node
    runs as written)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = int(threads or 1)
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _logits(sess, batches):
    inp = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {inp: b})[0].reshape(len(b), -1) for b in batches])


def sensitivity(qdq_model, prepared_model, fp32_logits, batches, candidates=None, threads=1):
    """Per quantized layer: how much of the int8 model's error (mean squared difference of the logits from
    the float model's on ``batches``) goes away when that layer alone runs in float32. Returns
    ([(node, score)] most sensitive first, the error of the fully quantized model)."""
    base = float(np.mean((_logits(_session(qdq_model, threads), batches) - fp32_logits) ** 2))
    scores = []
    for name in candidates if candidates is not None else quantized_nodes(qdq_model):
        out = _logits(_session(float_nodes_model(qdq_model, prepared_model, {name}), threads), batches)
        scores.append((name, base - float(np.mean((out - fp32_logits) ** 2))))
    scores.sort(key=lambda t: -t[1])
    return scores, base


def top1_flips(logits, reference):
    """Fraction of images whose top-1 class differs from the reference's (bounds the change of top-1 accuracy)."""
    return float(np.mean(np.argmax(logits, 1) != np.argmax(reference, 1)))


def choose_float_layers(qdq_model, prepared_model, ranked, fp32_logits, batches, max_flips, max_layers, threads=1):
    """The fewest of the ``ranked`` layers (most sensitive first) to keep in float32 so that the top-1 of the
    held-out ``batches`` differs from the float model's on at most ``max_flips`` of them. When ``max_layers``
    do not get there, the fewest that gave the lowest flips seen (layers that do not help are not kept: each
    costs speed). Returns (names, [(k, flips)] tried)."""
    tried = []
    k, step = 0, 1
    while True:
        model = float_nodes_model(qdq_model, prepared_model, {n for n, _ in ranked[:k]}) if k else qdq_model
        flips = top1_flips(_logits(_session(model, threads), batches), fp32_logits)
        tried.append((k, flips))
        if flips <= max_flips or k >= min(max_layers, len(ranked)):
            break
        k = min(k + step, max_layers, len(ranked))
        step = min(step * 2, 4)
    best = tried[-1] if tried[-1][1] <= max_flips else min(tried, key=lambda t: (t[1], t[0]))
    return [n for n, _ in ranked[:best[0]]], tried


def op_report(onnx_path, threads=0):
    """What runs after onnxruntime's graph optimisation of ``onnx_path`` (the fused graph its CPU
    provider executes): {"int8": Counter, "float32": Counter, "quantize": n, "dequantize": n,
    "transpose": n}. float32 counts compute ops that stayed float (layout ops excluded)."""
    import onnx
    import onnxruntime as ort
    with tempfile.TemporaryDirectory(prefix="ppcls_opt_") as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or 1)
        so.log_severity_level = 3
        so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        graph = onnx.load(so.optimized_model_filepath).graph
    int8, fp32 = collections.Counter(), collections.Counter()
    for n in graph.node:
        t = n.op_type
        if t in ("QuantizeLinear", "DequantizeLinear") or t in _LAYOUT_OPS:
            continue
        (int8 if t.startswith("QLinear") or t in _INT8_OPS else fp32)[t] += 1
    types = collections.Counter(n.op_type for n in graph.node)
    return {"int8": int8, "float32": fp32, "quantize": types["QuantizeLinear"], "dequantize": types["DequantizeLinear"],
            "transpose": types["Transpose"]}


def format_ops(counter):
    return ", ".join(f"{k} x{v}" for k, v in counter.most_common()) or "none"


# -- data --------------------------------------------------------------------------------------------------
def _eval_dataset(config, split):
    """The config's ``split`` ("Train" or "Eval") file list through the Eval transforms."""
    from ..data import build_dataset
    loaders = config.get("DataLoader") or {}
    if "Eval" not in loaders or not (loaders["Eval"].get("dataset") or {}).get("transform_ops"):
        raise ConfigError("DataLoader.Eval.dataset.transform_ops: required (quantize calibrates and evaluates "
                          "with the eval transforms)")
    if split not in loaders:
        raise ConfigError(f"DataLoader.{split}: required (quantize calibrates on the train list)")
    ds = copy.deepcopy(loaders[split]["dataset"])
    ds["transform_ops"] = copy.deepcopy(loaders["Eval"]["dataset"]["transform_ops"])
    ds.pop("batch_transform_ops", None)
    class_num = (config.get("Arch") or {}).get("class_num")
    return build_dataset({"dataset": ds}, f"DataLoader.{split}", class_num)


def choose_images(labels, n, seed=0, select="stratified", exclude=()):
    """Indices of ``n`` images among ``labels`` (the list's class ids), seeded. ``stratified``: the classes take
    turns (each class's images in a seeded order), so every class is in the calibration set in proportion
    however small ``n`` is (a random choice of 64 among 1000 classes misses most); ``random``: a uniform
    choice. ``exclude``: indices not to choose (the calibration images, when choosing a held-out set)."""
    if select not in CALIB_SELECT:
        raise ConfigError(f"--calib-select: one of {', '.join(CALIB_SELECT)}, got {select!r}")
    skip = set(int(i) for i in exclude)
    pool = np.array([i for i in range(len(labels)) if i not in skip], dtype=np.int64)
    n = min(int(n), len(pool))
    rng = np.random.RandomState(seed)
    if select == "random":
        return np.sort(rng.choice(pool, n, replace=False))
    by_class = collections.defaultdict(list)
    for i in rng.permutation(pool):
        by_class[labels[i]].append(int(i))
    queues = [by_class[c] for c in sorted(by_class, key=str)]
    order = []
    for turn in range(max((len(q) for q in queues), default=0)):
        order.extend(q[turn] for q in queues if turn < len(q))
    return np.sort(np.array(order[:n], dtype=np.int64))


def calibration_batches(config, n_images, batch_size=8, seed=0, select="stratified", exclude=(), whole_batches=True,
                        indices=None):
    """``n_images`` images of the train list (``choose_images``; or the given ``indices``) through the Eval
    transforms, as float32 batches of ``batch_size`` (rounded down to whole batches: the histogram
    calibrators stack them). Returns (batches, labels, indices)."""
    dataset = _eval_dataset(config, "Train")
    if int(n_images) < 1:
        raise ConfigError(f"--calib-images: must be >= 1, got {n_images}")
    idx = np.asarray(indices) if indices is not None else choose_images(dataset.labels, n_images, seed, select, exclude)
    if len(idx) == 0:
        raise ConfigError("DataLoader.Train: no train image left to choose from")
    batch_size = min(batch_size, len(idx))
    if whole_batches:
        idx = idx[: len(idx) - len(idx) % batch_size]
    samples = [dataset[int(i)] for i in idx]
    images = [s[0] for s in samples]
    labels = np.array([int(s[1]) for s in samples])
    batches = [np.stack(images[i:i + batch_size]).astype(np.float32) for i in range(0, len(images), batch_size)]
    return batches, labels, idx


def evaluate(predictors, config, batch_size=64, topk=5):
    """{name: (top-1, top-k, samples, top-1 classes, top-1 correct)} of each predictor (name -> an object with
    ``run(batch)``, as Predictor) over the eval list; the last two are arrays, one entry per image."""
    dataset = _eval_dataset(config, "Eval")
    hits = {name: [0, 0] for name in predictors}
    classes = {name: [] for name in predictors}
    labels = []
    for start in range(0, len(dataset), batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        x = np.stack([s[0] for s in samples]).astype(np.float32)
        y = np.array([int(s[1]) for s in samples])
        labels.append(y)
        for name, p in predictors.items():
            out = p.run(x).reshape(len(y), -1)
            k = min(topk, out.shape[1])
            top = np.argsort(-out, axis=1, kind="stable")[:, :k]
            classes[name].append(top[:, 0])
            hits[name][0] += int((top[:, 0] == y).sum())
            hits[name][1] += int((top == y[:, None]).any(axis=1).sum())
    y = np.concatenate(labels)
    n = len(y)
    result = {}
    for name, h in hits.items():
        top1 = np.concatenate(classes[name])
        result[name] = (h[0] / n, h[1] / n, n, top1, top1 == y)
    return result


def top1_changes(before, after):
    """Between two ``evaluate`` entries: {"changed": images whose top-1 class differs, "gained": now right and
    wrong before, "lost": right before and now wrong}. A top-1 difference nets gains against losses; these
    say how many images moved."""
    return {"changed": int(np.sum(before[3] != after[3])), "gained": int(np.sum(~before[4] & after[4])),
            "lost": int(np.sum(before[4] & ~after[4]))}


class QDQReference:
    """An INT8 model's QDQ graph evaluated as written: onnxruntime with its graph optimisations off runs every
    QuantizeLinear / DequantizeLinear and the float op between them, the ONNX definition of the model, instead
    of fusing them into int8 kernels (whose integer arithmetic rounds at other points)."""

    def __init__(self, onnx_path, threads=1):
        import onnx
        self.sess = _session(onnx.load(onnx_path), threads, optimize=False)
        self.input_name = self.sess.get_inputs()[0].name

    def run(self, batch):
        return self.sess.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


# -- the command -------------------------------------------------------------------------------------------
def write_int8_folder(int8_path, out_dir, source_dir, info):
    os.makedirs(out_dir, exist_ok=True)
    shutil.copy(int8_path, os.path.join(out_dir, "inference.onnx"))
    for f in ("inference.json", "inference.pdmodel", "inference.pdiparams", BACKEND_FILE):  # not the int8 model's
        if os.path.isfile(os.path.join(out_dir, f)):
            os.remove(os.path.join(out_dir, f))
    meta = dict(read_meta(source_dir), precision="int8", quantization=info)
    with open(os.path.join(out_dir, "inference.yml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(meta, f, sort_keys=False, allow_unicode=True)
    from .onnx_metadata import write_onnx_metadata
    write_onnx_metadata(os.path.join(out_dir, "inference.onnx"), meta, os.path.join(source_dir, "inference.yml"))
    return out_dir


def _install(staged, out_dir):
    """Move the finished INT8 folder into place: the files of a previous INT8 model in ``out_dir`` are
    replaced only now, when the new one is complete (and accepted)."""
    os.makedirs(out_dir, exist_ok=True)
    for f in ("inference.json", "inference.pdmodel", "inference.pdiparams", BACKEND_FILE):  # not the int8 model's
        if os.path.isfile(os.path.join(out_dir, f)) and not os.path.isfile(os.path.join(staged, f)):
            os.remove(os.path.join(out_dir, f))
    for f in sorted(os.listdir(staged)):
        os.replace(os.path.join(staged, f), os.path.join(out_dir, f))
    return out_dir


def quantize(config, model_dir, out_dir, calib_images=64, calib_method="percentile", fp32_op_types=(), threads=0,
             bn_as_conv=True, calib_batch=8, evaluate_models=True, speed_batches=(1, 8), split_concat=True,
             split_ratio=4.0, int8_op_types=None, calib_select="random", seed=0, sensitivity_sweep=False,
             max_drop=None, max_fp32_layers=8, holdout_images=1000, calib_trials=1, int8_head=False, pad=True,
             kernel_choice=True, reference_eval=False, pool_as_conv=True):
    """Quantize the export in ``model_dir`` into ``out_dir`` (see the module docstring). Returns a dict
    with the op report, the speeds and (with ``evaluate_models``) fp32 / int8 top-1 and top-5.

    ``sensitivity_sweep``: rank the quantized Conv / Gemm / MatMul layers by how much of the logits' error
    each one alone causes, and keep in float32 the fewest most sensitive ones (at most ``max_fp32_layers``)
    that bring the top-1 flips on ``holdout_images`` train images (not the calibration ones) within
    ``max_drop`` points (0.5 when not set). ``max_drop`` (points of top-1): with ``evaluate_models``, a
    larger fp32 - int8 drop on the eval list raises RunError and ``out_dir`` is left as it was.
    ``calib_trials``: calibrate on that many seeded choices of images (seeds ``seed``, ``seed + 1``, ...) and
    keep the one whose top-1 differs least from the float model's on the held-out images. ``int8_head``:
    quantize the classifier head too (``head_nodes``; by default it stays float32). ``reference_eval``: also
    evaluate the int8 model's QDQ graph as written (``QDQReference``) and count the images onnxruntime's int8
    kernels move against it."""
    _require_ort()
    import onnx
    from ..utils.device import available_cores
    from ..utils.errors import RunError
    if not os.path.isdir(model_dir):
        raise ConfigError(f"--model-dir {model_dir}: not found (export a model with tools/export_model.py)")
    if os.path.abspath(out_dir) == os.path.abspath(model_dir):
        raise ConfigError(f"--out {out_dir}: must differ from --model-dir (the INT8 model gets its own folder)")
    if read_meta(model_dir).get("dense_output"):
        raise ConfigError(f"--model-dir {model_dir}: a dense model; quantize evaluates classifiers by top-1")
    if max_drop is not None and not 0 <= float(max_drop) <= 100:
        raise ConfigError(f"--max-drop: points of top-1 between 0 and 100, got {max_drop}")
    if max_drop is not None and not evaluate_models:
        raise ConfigError("--max-drop: needs the fp32 / int8 evaluation on the eval list")
    if reference_eval and not evaluate_models:
        raise ConfigError("--reference-eval: needs the fp32 / int8 evaluation on the eval list")
    threads = int(threads or 0) or available_cores()
    work = tempfile.mkdtemp(prefix="ppcls_quant_")
    try:
        fp32_dir = os.path.join(work, "fp32")
        fp32_path = fp32_onnx(model_dir, fp32_dir)
        trials = max(1, int(calib_trials))
        labels = _eval_dataset(config, "Train").labels
        chosen = [choose_images(labels, calib_images, seed + t, calib_select) for t in range(trials)]
        held = ref = None
        if trials > 1 or sensitivity_sweep:
            # held-out: train images no trial calibrates on, through the same eval transforms
            used = np.unique(np.concatenate(chosen))
            held, _, _ = calibration_batches(config, holdout_images, calib_batch, seed + HOLDOUT_SEED, calib_select,
                                             exclude=used, whole_batches=False)
            ref = _logits(_session(onnx.load(fp32_path), threads), held)
        results = []
        for t, idx in enumerate(chosen):
            batches, _, calib_idx = calibration_batches(config, calib_images, calib_batch, indices=idx)
            n_calib = sum(len(b) for b in batches)
            prepared, rewrites = prepare(fp32_path, os.path.join(work, f"prepared{t}.onnx"), bn_as_conv, batches,
                                         split_ratio if split_concat else 0, pad, pool_as_conv)
            n_bn = rewrites["bn_as_conv"]
            logger.info(f"calibrating on {n_calib} images of the train list ({calib_select}, seed {seed + t}, eval "
                        f"transforms, {calib_method}); {n_bn} BatchNorm(s) not foldable into a Conv rewritten as 1x1 "
                        f"depthwise Conv, {rewrites['avgpool_as_conv']} AveragePool(s) as depthwise Conv, "
                        f"{rewrites['split_concat_conv']} Conv(Concat) split into a sum of Convs "
                        f"(inputs' ranges differing by more than {split_ratio:g}x), {rewrites['pad_channels']} channel region(s) "
                        "padded with zero channels to the int8 kernels' multiples")
            head = [] if int8_head else head_nodes(onnx.load(prepared))
            int8_path = quantize_onnx(prepared, os.path.join(work, f"int8_{t}.onnx"), batches, calib_method,
                                      fp32_op_types, int8_op_types=int8_op_types, fp32_nodes=head)
            score = None
            if trials > 1:
                out = _logits(_session(onnx.load(int8_path), threads), held)
                score = (top1_flips(out, ref), float(np.mean((out - ref) ** 2)))
                logger.info(f"calibration seed {seed + t}: top-1 flips against fp32 {100 * score[0]:.2f}% of "
                            f"{len(ref)} held-out train images, mean squared logit error {score[1]:.4g}")
            results.append((score, seed + t, batches, calib_idx, n_calib, prepared, rewrites, int8_path, head))
        best = min(results, key=lambda r: r[0] or (0, 0))
        _, calib_seed, batches, calib_idx, n_calib, prepared, rewrites, int8_path, head = best
        if head:
            logger.info(f"classifier head kept in float32 (--int8-head quantizes it): {', '.join(head)}")
        n_bn = rewrites["bn_as_conv"]
        if trials > 1:
            logger.info(f"kept the calibration of seed {calib_seed} (fewest flips, then the lowest error)")
        kept, swept = [], None
        if sensitivity_sweep:
            qdq, prep = onnx.load(int8_path), onnx.load(prepared)
            ranked, base = sensitivity(qdq, prep, ref, held, threads=threads)
            limit = 0.5 if max_drop is None else float(max_drop)
            kept, tried = choose_float_layers(qdq, prep, ranked, ref, held, limit / 100.0, max_fp32_layers, threads)
            n_held = sum(len(b) for b in held)
            logger.info(f"sensitivity over {len(ranked)} int8 layers on {n_held} held-out train images (mean squared "
                        f"logit error of the int8 model {base:.4g}); most sensitive: "
                        + ", ".join(f"{n} {v:.3g}" for n, v in ranked[:8]))
            logger.info("top-1 flips against fp32 with the k most sensitive layers in float32: "
                        + ", ".join(f"k={k} {100 * f:.2f}%" for k, f in tried))
            logger.info(f"kept in float32: {', '.join(kept) if kept else 'none'}")
            swept = {"layers": len(ranked), "holdout_images": n_held, "ranked": [[n, round(v, 6)] for n, v in ranked[:20]],
                     "tried": [[k, round(f, 5)] for k, f in tried]}
            if kept:
                int8_path = quantize_onnx(prepared, os.path.join(work, "int8_kept.onnx"), batches, calib_method,
                                          fp32_op_types, int8_op_types=int8_op_types, fp32_nodes=head + kept)
        regrouped, general = {}, []
        if kernel_choice:
            qdq = onnx.load(int8_path)
            regrouped, general = tune_conv_kernels(qdq, onnx.load(prepared), threads)
            if regrouped or general:
                int8_path = os.path.join(work, "int8_kernels.onnx")
                onnx.save(qdq, int8_path)
            if regrouped:
                logger.info(f"{len(regrouped)} grouped Conv(s) run with fewer groups (zero weights between the old "
                            "groups, timed faster here): " + ", ".join(f"{n} {a} -> {b}" for n, (a, b) in regrouped.items()))
            logger.info(f"{len(general)} Conv(s) run onnxruntime's general int8 kernel (QGEMM; AMX where the CPU has it), "
                        "timed faster here than its symmetric Conv kernel on the layer's shape")
        report = op_report(int8_path, threads)
        info = {"method": "onnxruntime static quantization, QDQ, uint8 activations, int8 per-channel weights",
                "calibration": {"images": n_calib, "list": "train", "transforms": "eval", "method": calib_method,
                                "select": calib_select, "seed": int(calib_seed), "trials": trials},
                "bn_as_conv": n_bn, "avgpool_as_conv": rewrites["avgpool_as_conv"], "split_concat_conv": rewrites["split_concat_conv"],
                "pad_channels": rewrites["pad_channels"], "general_kernel_convs": len(general),
                "regrouped_convs": {n: list(g) for n, g in regrouped.items()}, "fp32_op_types": list(fp32_op_types),
                "int8_op_types": list(int8_op_types) if int8_op_types else "all", "fp32_layers": list(kept),
                "fp32_head": list(head),
                "int8_ops": dict(report["int8"]), "float32_ops": dict(report["float32"])}
        if swept is not None:
            info["sensitivity"] = swept
        staged = write_int8_folder(int8_path, os.path.join(work, "int8_out"), model_dir, info)
        logger.info(f"int8 ops after onnxruntime's graph optimisation: {format_ops(report['int8'])}")
        head_note = f" (with the classifier head: {', '.join(head)})" if head else ""
        logger.info(f"float32 compute ops left: {format_ops(report['float32'])}{head_note}; QuantizeLinear x{report['quantize']}, "
                    f"DequantizeLinear x{report['dequantize']}, Transpose x{report['transpose']}")
        settings = {"backend": "onnxruntime", "cpu_num_threads": threads}
        p32, p8 = Predictor(settings, fp32_dir, announce=False), Predictor(settings, staged, announce=False)
        shape = list(read_meta(model_dir).get("image_shape") or batches[0].shape[1:])
        ips, by_batch, ratio = {"int8": {}, "fp32": {}}, {}, {}
        for b in speed_batches:
            r = time_interleaved({"int8": p8.run, "fp32": p32.run}, [int(b)] + shape)
            for k, v in r.items():
                ips[k][str(b)] = round(v, 2)
            by_batch[str(b)] = "onnxruntime"
            ratio[str(b)] = round(r["int8"] / r["fp32"], 3)
            logger.info(f"onnxruntime batch {b}, {threads} threads: int8 {r['int8']:.1f} img/s, fp32 {r['fp32']:.1f} img/s "
                        f"({r['int8'] / r['fp32']:.2f}x)")
        write_probe(staged, {"backend": "onnxruntime", "by_batch": by_batch, "images_per_s": ips, "threads": threads,
                             "image_shape": shape, "precision": "int8",
                             "reason": "INT8 QDQ model (tools/quantize.py): onnxruntime only"})
        result = {"out_dir": out_dir, "ops": report, "images_per_s": ips, "speedup": ratio, "threads": threads,
                  "calib_images": n_calib, "fp32_layers": list(kept), **rewrites}
        if evaluate_models:
            predictors = {"fp32": p32, "int8": p8}
            if reference_eval:
                predictors["reference"] = QDQReference(os.path.join(staged, "inference.onnx"), threads)
            acc = evaluate(predictors, config)
            n_eval = acc["fp32"][2]
            changes = top1_changes(acc["fp32"], acc["int8"])
            result.update(fp32_top1=acc["fp32"][0], int8_top1=acc["int8"][0], fp32_top5=acc["fp32"][1],
                          int8_top5=acc["int8"][1], eval_samples=n_eval, top1_changes=changes)
            meta_path = os.path.join(staged, "inference.yml")
            meta = read_meta(staged)
            meta["quantization"]["eval"] = {"samples": n_eval, "fp32_top1": round(acc["fp32"][0], 5),
                                            "int8_top1": round(acc["int8"][0], 5), "top1_changes": changes}
            logger.info(f"eval list ({n_eval} images): fp32 top-5 {acc['fp32'][1]:.5f}, int8 top-5 {acc['int8'][1]:.5f}; "
                        f"int8 changes the top-1 class of {changes['changed']} images against fp32 "
                        f"({changes['gained']} now right, {changes['lost']} now wrong)")
            if reference_eval:
                ref = top1_changes(acc["reference"], acc["int8"])
                result.update(reference_top1=acc["reference"][0], reference_changes=ref)
                meta["quantization"]["eval"]["reference"] = {"top1": round(acc["reference"][0], 5), "top1_changes": ref}
                logger.info(f"reference: the int8 model's QDQ graph evaluated in float (onnxruntime, no graph "
                            f"optimisation) top-1 {acc['reference'][0]:.5f}; onnxruntime's int8 kernels change the "
                            f"top-1 class of {ref['changed']} images against it ({ref['gained']} now right, "
                            f"{ref['lost']} now wrong)")
            with open(meta_path, "w", encoding="utf-8") as f:
                yaml.safe_dump(meta, f, sort_keys=False, allow_unicode=True)
            drop = 100.0 * (acc["fp32"][0] - acc["int8"][0])
            result["drop_points"] = drop
            if max_drop is not None and drop > float(max_drop) + 1e-9:
                raise RunError(f"--max-drop {max_drop:g}: int8 top-1 {acc['int8'][0]:.5f} is {drop:.2f} points below fp32 "
                               f"{acc['fp32'][0]:.5f} on the eval list ({acc['fp32'][2]} images); {out_dir} not written "
                               "(try --sensitivity, --calib-method, more --calib-images)")
        _install(staged, out_dir)
        from .paddleclas_deploy import write_paddleclas_config  # after the move: it names out_dir's files
        write_paddleclas_config(out_dir, read_meta(out_dir), infer_imgs=(config.get("Infer") or {}).get("infer_imgs"))
        logger.info(f"INT8 model written to {out_dir} (inference.onnx, inference.yml, {BACKEND_FILE})")
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
