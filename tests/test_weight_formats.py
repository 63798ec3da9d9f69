"""Weights as other toolkits write them: timm model folders (safetensors), MXNet / Gluon .params,
PyTorch files, and hostile or broken inputs (each must be a one-line ConfigError naming the file)."""
import json
import os
import struct

import numpy as np
import paddle
import paddle.nn as nn
import pytest
from safetensors.numpy import save_file

import alignment
from datasets import MX_FLAGS, mx_record, write_mx_params
from ppcls.arch import build_model
from ppcls.arch.convert import Rules, convert_state_dict
from ppcls.arch.convert.timm_layouts import (detect_timm_dla, detect_timm_rexnet, project_model_for,
                                             timm_rexnet_key, timm_rexnet_transform)
from ppcls.utils.errors import ConfigError
from ppcls.utils.model_stats import count_macs, count_params
from ppcls.utils.weight_files import read_torch, read_weights, unwrap_state

HERE = os.path.dirname(os.path.abspath(__file__))
INTEROP = os.path.join(HERE, "fixtures", "interop")
ALIGNMENT = os.path.join(HERE, "fixtures", "alignment")

# the timm layouts as the converter registers them: detector and Rules (DLA's mapping is the identity)
TIMM_LAYOUTS = {"DLA": (detect_timm_dla, Rules("torch")),
                "ReXNet": (detect_timm_rexnet, Rules("torch", rename=timm_rexnet_key, transform=timm_rexnet_transform))}
# fixture, timm architecture, project model, family, timm's classifier module
TIMM_FIXTURES = [("timm_dla34", "dla34", "DLA34", "DLA", "fc"),
                 ("timm_dla46_c", "dla46_c", "DLA46_c", "DLA", "fc"),
                 ("timm_rexnet_100", "rexnet_100", "ReXNet_1_0", "ReXNet", "head.fc"),
                 ("timm_rexnet_130", "rexnet_130", "ReXNet_1_3", "ReXNet", "head.fc")]


@pytest.fixture
def load_interop_fixture():
    """alignment.load_fixture (the rebuild recipe) reading tests/fixtures/interop."""
    return lambda name: alignment.load_fixture(name, INTEROP)


def _manifest_keys(folder, name):
    with open(os.path.join(folder, f"{name}.json")) as f:
        return [e["key"] for e in json.load(f)["manifest"]]


def _refused(path, *fragments):
    """read_weights(path) must raise a one-line ConfigError that starts with the path; returns the message."""
    with pytest.raises(ConfigError) as info:
        read_weights(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- timm model folders ----------------------------------------------------------------------------
def _write_timm_folder(folder, architecture, classifier, weights):
    """What the Hub holds for a timm model: model.safetensors and timm's config.json."""
    os.makedirs(folder)
    save_file(dict(weights), os.path.join(folder, "model.safetensors"))
    num_classes, num_features = weights[f"{classifier}.weight"].shape[:2]
    config = {"architecture": architecture, "num_classes": int(num_classes), "num_features": int(num_features),
              "pretrained_cfg": {"tag": "in1k", "custom_load": False, "input_size": [3, 224, 224],
                                 "interpolation": "bicubic", "crop_pct": 0.875, "mean": [0.485, 0.456, 0.406],
                                 "std": [0.229, 0.224, 0.225], "num_classes": int(num_classes),
                                 "classifier": classifier}}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    return folder


@pytest.mark.parametrize("tag,architecture,name,family,classifier", TIMM_FIXTURES)
def test_timm_hub_folder_converts_and_matches_timm(tmp_path, load_interop_fixture, tag, architecture, name,
                                                    family, classifier):
    meta, weights, x, expected = load_interop_fixture(tag)
    folder = _write_timm_folder(str(tmp_path / tag), architecture, classifier, weights)

    state = read_weights(folder)
    assert state.config["architecture"] == architecture and state.config["num_classes"] == 1000
    assert list(state) and set(state) == set(weights)
    assert all(np.array_equal(state[k], weights[k]) for k in weights)

    detect, rules = TIMM_LAYOUTS[family]
    assert detect(state.keys())
    assert project_model_for(state.config["architecture"]) == name
    model = build_model({"name": name})
    converted, dropped = convert_state_dict(model, state, rules)
    assert not dropped
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in converted.items()})
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(x))
    errs = alignment.relative_errors(out, expected)
    print(f"{tag} -> {name}: relative L2 error {errs[0]:.3g} (tolerance {alignment.tolerance(meta):.3g})")
    assert max(errs) <= alignment.tolerance(meta), errs
    assert count_params(model) == meta["params"]
    assert count_macs(model, [1] + list(meta["input_shape"][1:])) == meta["conv_linear_macs_per_image"]


@pytest.mark.parametrize("timm_tag,clovaai_tag", [("timm_rexnet_100", "rexnet_1_0"), ("timm_rexnet_130", "rexnet_1_3")])
def test_timm_rexnet_names_map_onto_clovaai_names_key_for_key(timm_tag, clovaai_tag):
    # both manifests list the same layers in the same order; the rename must pair them exactly
    timm_keys = _manifest_keys(INTEROP, timm_tag)
    clovaai_keys = _manifest_keys(ALIGNMENT, clovaai_tag)
    assert [timm_rexnet_key(k) for k in timm_keys] == clovaai_keys
    assert timm_rexnet_key("features.3.se.bn._mean") == "features.6.out.5.fc.1._mean"  # after the core's renames
    assert timm_rexnet_key("features.99.conv_dw.conv.weight") is None


def test_layouts_are_told_apart_by_their_keys():
    timm_dla, ucbdrive_dla = _manifest_keys(INTEROP, "timm_dla34"), _manifest_keys(ALIGNMENT, "dla34")
    timm_rexnet, clovaai_rexnet = _manifest_keys(INTEROP, "timm_rexnet_100"), _manifest_keys(ALIGNMENT, "rexnet_1_0")
    assert detect_timm_dla(timm_dla) and not detect_timm_dla(ucbdrive_dla)
    assert detect_timm_rexnet(timm_rexnet) and not detect_timm_rexnet(clovaai_rexnet)
    assert not detect_timm_dla(timm_rexnet) and not detect_timm_rexnet(timm_dla)
    assert project_model_for("rexnet_130.nav_in1k") == "ReXNet_1_3" and project_model_for("resnet50") is None


def test_sharded_hub_folder_and_its_broken_indexes(tmp_path):
    folder = tmp_path / "sharded"
    folder.mkdir()
    save_file({"a": np.arange(3, dtype=np.float32)}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({"b": np.ones((2, 2), np.float16)}, str(folder / "model-00002-of-00002.safetensors"))
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    state = read_weights(str(folder))
    assert state.config is None and list(state) == ["a", "b"] and state["b"].dtype == np.float16

    index["weight_map"]["c"] = "model-00002-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigError) as info:
        read_weights(str(folder))
    message = str(info.value)
    assert message.startswith(str(folder / "model.safetensors.index.json")) and "in no shard: c" in message
    for shard, complaint in (("../outside.safetensors", "file names in the folder"), ("gone.safetensors", "missing")):
        index["weight_map"] = {"a": shard}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        with pytest.raises(ConfigError, match=complaint):
            read_weights(str(folder))


def test_hub_folder_without_weights_or_with_a_broken_config(tmp_path):
    (tmp_path / "config.json").write_text('{"architecture": ')
    save_file({"a": np.zeros(1, np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match="config.json: not valid JSON"):
        read_weights(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    _refused(str(empty), "no model.safetensors")


# -- MXNet / Gluon ---------------------------------------------------------------------------------
GLUON_PARAMS = os.path.join(INTEROP, "tiny_gluon.params")
MODULE_PARAMS = os.path.join(INTEROP, "tiny_module-0000.params")


@pytest.mark.parametrize("path", [GLUON_PARAMS, MODULE_PARAMS])
def test_mxnet_params_read_to_exactly_the_saved_arrays(path):
    state = read_weights(path)
    with np.load(os.path.join(INTEROP, "tiny_gluon_expected.npz")) as data:
        expected = {k: data[k] for k in data.files}
    assert sorted(state) == sorted(expected)
    for name, array in expected.items():
        assert state[name].dtype == array.dtype and np.array_equal(state[name], array), name
    if path == MODULE_PARAMS:  # the Module form's prefixes are stripped but remembered
        assert {n for n, p in state.prefixes.items() if p == "aux"} == {"1.running_mean", "1.running_var"}
        assert len(state.prefixes) == len(expected)
    else:
        assert state.prefixes == {}


def _tiny_gluon_net(epsilon):
    """The Gluon net in Paddle, named by Gluon's structural indices (2 = ReLU, 3 = global average pool)."""
    return nn.Sequential(("0", nn.Conv2D(3, 8, 3, padding=1, bias_attr=False)),
                         ("1", nn.BatchNorm2D(8, epsilon=epsilon)), ("2", nn.ReLU()),
                         ("3", nn.AdaptiveAvgPool2D(1)), ("flatten", nn.Flatten()), ("4", nn.Linear(8, 10)))


def _tiny_gluon_error(epsilon):
    net = _tiny_gluon_net(epsilon)
    state, dropped = convert_state_dict(net, read_weights(GLUON_PARAMS), Rules("gluon"))
    assert not dropped
    net.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    net.eval()
    with np.load(os.path.join(INTEROP, "tiny_gluon_io.npz")) as io:
        x, y = io["x"], io["y"]
    out = net(paddle.to_tensor(x)).numpy()
    return float(np.linalg.norm(out - y) / np.linalg.norm(y))


def test_tiny_gluon_net_in_paddle_matches_gluon():
    err = _tiny_gluon_error(1e-5)  # Gluon BatchNorm's epsilon
    print(f"tiny Gluon net: relative L2 error {err:.3g}")
    assert err < 1e-6
    # the comparison is sharp enough to tell a wrong epsilon (Keras' default, 1e-3)
    assert _tiny_gluon_error(1e-3) > 1e-5


@pytest.mark.parametrize("version", ["legacy", "v1", "v2", "v3"])
def test_mxnet_formats_and_dtypes(tmp_path, version):
    rng = np.random.default_rng(0)
    arrays = {f"a{i}": rng.integers(0, 100, (2, 3, 1)).astype(dt) for i, dt in enumerate(MX_FLAGS)}
    if version == "v3":  # numpy-shape files can hold 0-d arrays
        arrays["scalar"] = np.array(2.5, np.float32)
    path = write_mx_params(tmp_path / "w.params", [mx_record(a, version) for a in arrays.values()], list(arrays))
    state = read_weights(path)
    assert list(state) == list(arrays)
    assert all(state[k].dtype == a.dtype and state[k].shape == a.shape and np.array_equal(state[k], a)
               for k, a in arrays.items())


def test_mxnet_file_without_the_params_extension_is_recognised_by_its_magic(tmp_path):
    path = write_mx_params(tmp_path / "weights.bin", [mx_record(np.ones(2, np.float32))], ["w"])
    assert list(read_weights(path)) == ["w"]


@pytest.mark.parametrize("source", [GLUON_PARAMS, MODULE_PARAMS])
def test_truncated_params_at_every_offset(tmp_path, source):
    with open(source, "rb") as f:
        data = f.read()
    path = tmp_path / "cut.params"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        _refused(path, "cut.params", f"truncated at byte {cut} while reading")


def test_corrupted_params_never_raise_anything_but_config_error(tmp_path):
    with open(GLUON_PARAMS, "rb") as f:
        data = f.read()
    original = list(read_weights(GLUON_PARAMS).items())
    rng = np.random.default_rng(1)
    path = tmp_path / "noisy.params"
    refused = 0
    for _ in range(300):
        noisy = bytearray(data)
        changed = {int(pos) for pos in rng.integers(0, len(data), size=rng.integers(1, 4))}
        for pos in changed:
            noisy[pos] = int(rng.integers(0, 256))
        path.write_bytes(bytes(noisy))
        try:
            got = list(read_weights(path).items())
        except ConfigError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)
            refused += 1
            continue
        # accepted: read exactly as written, array by array, so a changed byte alters one name character or
        # one value and nothing else (a parse that slipped out of step would differ everywhere after it)
        assert [(v.shape, v.dtype) for _, v in got] == [(v.shape, v.dtype) for _, v in original]
        differences = sum(int(np.sum(~((a == b) | (np.isnan(a) & np.isnan(b))))) for (_, a), (_, b) in zip(got, original))
        differences += sum(sum(x != y for x, y in zip(m, n)) + abs(len(m) - len(n)) for (m, _), (n, _) in zip(got, original))
        assert differences <= len(changed), (sorted(changed), differences)
    assert refused >= 30  # the header, the magics, the dims and the name lengths are checked, not trusted


def _patched(tmp_path, offset, packed, name="bad.params"):
    with open(GLUON_PARAMS, "rb") as f:
        data = bytearray(f.read())
    data[offset:offset + len(packed)] = packed
    (tmp_path / name).write_bytes(bytes(data))
    return tmp_path / name


# byte offsets in tiny_gluon.params: list header 0-23, array 0 magic 24, storage type 28, ndim 32,
# dims 36-67, context 68-75, type flag 76
@pytest.mark.parametrize("offset,packed,fragments", [
    (0, struct.pack("<Q", 0x113), ["not an MXNet NDArray file", "0x113"]),
    (24, struct.pack("<I", 0xDEADBEEF), ["unknown NDArray magic 0xDEADBEEF", "array 0 of 7"]),
    (28, struct.pack("<i", 1), ["sparse (row_sparse) storage is not supported"]),
    (28, struct.pack("<i", 2), ["sparse (csr) storage"]),
    (28, struct.pack("<i", 7), ["unknown storage type 7"]),
    (32, struct.pack("<i", 4000), ["implausible number of dimensions 4000"]),
    (36, struct.pack("<q", -8), ["unknown dimension"]),
    (76, struct.pack("<i", 12), ["dtype bfloat16 is not supported", "array 0 of 7"]),
    (76, struct.pack("<i", 9), ["dtype uint16 is not supported"]),
    (76, struct.pack("<i", 99), ["unknown dtype flag 99"]),
])
def test_broken_params_headers(tmp_path, offset, packed, fragments):
    _refused(_patched(tmp_path, offset, packed), "bad.params", *fragments)


def test_broken_params_name_lists(tmp_path):
    one = [mx_record(np.ones(2, np.float32))]
    two = one + [mx_record(np.zeros(1, np.float32))]
    _refused(write_mx_params(tmp_path / "unnamed.params", one, []), "have no names")
    _refused(write_mx_params(tmp_path / "short.params", two, ["a"]), "1 names for 2 arrays")
    _refused(write_mx_params(tmp_path / "latin1.params", one, [b"\xe9t\xe9"]), "not UTF-8")
    _refused(write_mx_params(tmp_path / "twice.params", two, ["arg:w", "aux:w"]), "two arrays are named 'w'")
    _refused(write_mx_params(tmp_path / "empty.params", [mx_record(np.ones((), np.float32), "v2")], ["e"]), "empty NDArray")
    path = write_mx_params(tmp_path / "tail.params", one, ["a"])
    with open(path, "ab") as f:
        f.write(b"\0\0\0")
    _refused(path, "3 unexpected bytes after the name list")


# -- safetensors -------------------------------------------------------------------------------------
def _raw_safetensors(path, header, data=b""):
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_bf16_tensors_are_widened_to_float32(tmp_path):
    values = np.array([1.0, -2.5, 0.15625, 2.0 ** 100, -0.0], np.float32)  # all exact in bfloat16
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    plain = np.arange(4, dtype="<f4").tobytes()
    header = {"__metadata__": {"format": "pt"},
              "half": {"dtype": "BF16", "shape": [5], "data_offsets": [0, 10]},
              "plain": {"dtype": "F32", "shape": [2, 2], "data_offsets": [10, 26]}}
    state = read_weights(_raw_safetensors(tmp_path / "bf.safetensors", header, bf16 + plain))
    assert state["half"].dtype == np.float32 and np.array_equal(state["half"], values)
    assert np.array_equal(state["plain"], np.arange(4, dtype=np.float32).reshape(2, 2))


def test_bf16_safetensors_written_by_torch_read_as_torch_widens_them(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch_file
    tensor = torch.randn(3, 5, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    save_torch_file({"w": tensor}, str(tmp_path / "model.safetensors"))
    assert np.array_equal(read_weights(tmp_path / "model.safetensors")["w"], tensor.float().numpy())


@pytest.mark.parametrize("header,data,fragment", [
    (b"{\"a\": ", b"", "not JSON"),
    (b"[1, 2]", b"", "not a JSON object"),
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "corrupt safetensors file"),
    ({"a": {"dtype": "Q99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "corrupt safetensors file"),
    ({"f8": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\0\0", "tensor 'f8' has dtype F8_E4M3"),
])
def test_broken_safetensors(tmp_path, header, data, fragment):
    _refused(_raw_safetensors(tmp_path / "bad.safetensors", header, data), "bad.safetensors", fragment)


def test_safetensors_header_length_beyond_the_file(tmp_path):
    (tmp_path / "long.safetensors").write_bytes(struct.pack("<Q", 10 ** 12) + b"{}")
    _refused(tmp_path / "long.safetensors", "claims 1000000000000 bytes")
    (tmp_path / "tiny.safetensors").write_bytes(b"\x01\x02")
    _refused(tmp_path / "tiny.safetensors", "shorter than the 8-byte header length")


# -- other kinds and dispatch ------------------------------------------------------------------------
def test_unknown_missing_and_paddle_files_are_refused(tmp_path):
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    message = _refused(tmp_path / "weights.h5", "unsupported weights file")
    assert all(kind in message for kind in (".safetensors", ".params", ".npz", ".pth", "Hugging Face model folder"))
    (tmp_path / "own.pdparams").write_bytes(b"\x80\x04")
    _refused(tmp_path / "own.pdparams", "pass it as pretrained weights")
    _refused(tmp_path / "absent.npz", "file not found")


def test_npz_with_objects_or_truncated_is_refused(tmp_path):
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    _refused(tmp_path / "objects.npz", "not a readable .npz archive")
    np.savez(tmp_path / "ok.npz", **{"module.w": np.ones(3, np.float32)})
    assert list(read_weights(tmp_path / "ok.npz")) == ["w"]
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:40])
    _refused(tmp_path / "cut.npz", "not a readable .npz archive")


def test_unwrap_state_takes_the_weights_out_of_a_training_checkpoint():
    weights = {"module.conv.weight": np.ones((2, 1, 1, 1), np.float32), "module.bn.num_batches_tracked": np.array(3)}
    state = unwrap_state({"epoch": 4, "arch": "x", "state_dict": weights, "best": 0.5}, "ckpt.pth")
    assert list(state) == ["conv.weight", "bn.num_batches_tracked"] and state.path == "ckpt.pth"
    with pytest.raises(ConfigError, match="^ckpt.pth: no state dict found"):
        unwrap_state([1, 2], "ckpt.pth")
    with pytest.raises(ConfigError, match="^ckpt.pth: the file holds no arrays"):
        unwrap_state({"epoch": 4}, "ckpt.pth")


def test_torch_missing_is_one_clear_line(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    (tmp_path / "w.pth").write_bytes(b"PK")
    with pytest.raises(ConfigError, match=r"w\.pth: reading a PyTorch checkpoint needs torch"):
        read_torch(str(tmp_path / "w.pth"))


class _CreatesFileWhenUnpickled:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return exec, (f"open({self.target!r}, 'w').close()",)


@pytest.mark.parametrize("zip_format", [True, False])
def test_pth_whose_pickle_runs_code_is_refused_and_never_runs(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(2), "payload": _CreatesFileWhenUnpickled(str(marker))}, path,
               _use_new_zipfile_serialization=zip_format)
    torch.load(path, weights_only=False)  # the payload is real: a trusting loader runs it
    assert marker.exists()
    marker.unlink()
    _refused(path, "evil.pth", "cannot be loaded safely")
    assert not marker.exists()


def test_torch_training_checkpoint_and_hub_folder(tmp_path):
    torch = pytest.importorskip("torch")
    weights = {"module.fc.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3).to(torch.bfloat16),
               "module.bn.num_batches_tracked": torch.tensor(5)}
    torch.save({"epoch": 3, "state_dict": weights, "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.ckpt")
    state = read_weights(tmp_path / "ckpt.ckpt")
    assert list(state) == ["fc.weight", "bn.num_batches_tracked"]
    assert state["fc.weight"].dtype == np.float32 and np.array_equal(state["fc.weight"], np.arange(6.0).reshape(2, 3))
    folder = tmp_path / "hub"
    folder.mkdir()
    torch.save({"head.fc.weight": torch.ones(3, 4)}, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({"architecture": "rexnet_100"}))
    state = read_weights(folder)
    assert list(state) == ["head.fc.weight"] and state.config == {"architecture": "rexnet_100"}
