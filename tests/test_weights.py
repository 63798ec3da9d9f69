"""Pretrained weights end to end: the weights table's sources served by a loopback HTTP server (through
PPCLS_WEIGHTS_MIRROR, so the table's own URLs and Hub paths are the ones requested), every format
converted and checked against reference outputs, and hostile pickles refused at every entry point."""
import os
import pickle
import subprocess
import sys

import numpy as np
import paddle
import pytest
from safetensors.numpy import save_file

import alignment
from datasets import mx_record, write_mx_params
from engine_utils import ROOT, eval_avg, run_tool, tiny_config
from http_server import Server
from ppcls.arch import build_model
from ppcls.arch.convert import convert_state_dict, get_rules
from ppcls.arch.weights import cached_path, find_weights
from ppcls.utils.errors import ConfigError

INTEROP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "interop")


@pytest.fixture(autouse=True)
def env(download_env):
    return download_env


@pytest.fixture
def server(env):
    s = Server()
    env.setenv("PPCLS_WEIGHTS_MIRROR", s.url)
    yield s
    s.close()


def _path_of(url):
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def _relerr(out, expected):
    out = np.asarray(out.numpy() if hasattr(out, "numpy") else out, np.float64)
    return float(np.linalg.norm(out - expected) / np.linalg.norm(expected))


def _paddleclas_file(fixture, name, folder=None):
    """A PaddleClas-layout .pdparams of the fixture's weights: the original keys with Paddle's BatchNorm
    names (_mean / _variance), nothing else changed: PaddleClas builds, like timm, no dead projections."""
    meta, weights, x, expected = alignment.load_fixture(fixture, folder)
    renamed = {k.replace("running_mean", "_mean").replace("running_var", "_variance"): v
               for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    model = build_model({"name": name})
    assert set(renamed) == set(model.state_dict()), "PaddleClas's names are this project's"
    return pickle.dumps({k: np.asarray(v) for k, v in renamed.items()}, protocol=4), x, expected[0]


# -- the weights table through the cache ------------------------------------------------------------------
def test_tag_downloads_verifies_caches_and_loads_paddleclas_layout(server):
    data, x, expected = _paddleclas_file("timm_dla46_c", "DLA46_c", INTEROP)
    w = find_weights("DLA46_c", "paddleclas_in1k")
    server.files[_path_of(w.url)] = data
    model = build_model({"name": "DLA46_c", "pretrained": "DLA46_c.paddleclas_in1k"})
    model.eval()
    assert _relerr(model(paddle.to_tensor(x)), expected) < 1e-3  # PaddleClas's files load as they are
    assert server.count(_path_of(w.url)) == 1
    path = cached_path("DLA46_c", w)
    assert os.path.isfile(path) and open(path + ".sha256").read().split()[0]  # hash recorded at first use
    # a second use hits the cache: no request; True picks the default tag (this one)
    build_model({"name": "DLA46_c", "pretrained": True, "class_num": 10})  # fine-tuning: classifier skipped
    assert server.count() == 1
    # a cached file that changed afterwards is refused, naming both hashes
    with open(path, "r+b") as f:
        f.seek(200)
        f.write(b"\0" * 8)
    with pytest.raises(ConfigError, match="sha256"):
        build_model({"name": "DLA46_c", "pretrained": True})


def test_timm_hub_file_is_converted_once_and_cached(server, tmp_path):
    meta, weights, x, expected = alignment.load_fixture("timm_rexnet_100", INTEROP)
    st = str(tmp_path / "model.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, st)
    w = find_weights("ReXNet_1_0", "timm_nav_in1k")
    assert w.hub == "timm/rexnet_100.nav_in1k" and w.source.endswith("/resolve/main/model.safetensors")
    server.files[_path_of(w.source)] = open(st, "rb").read()
    model = build_model({"name": "ReXNet_1_0", "pretrained": "timm_nav_in1k"})
    model.eval()
    err = _relerr(model(paddle.to_tensor(x)), expected[0])
    assert err < alignment.tolerance(meta), err
    converted = cached_path("ReXNet_1_0", w) + ".ReXNet_1_0.pdparams"
    assert os.path.isfile(converted) and os.path.isfile(converted + ".sha256")
    stamp = os.path.getmtime(converted)
    model2 = build_model({"name": "ReXNet_1_0", "pretrained": "ReXNet_1_0.timm_nav_in1k"})
    model2.eval()
    assert os.path.getmtime(converted) == stamp and server.count() == 1  # no request, no second conversion
    np.testing.assert_array_equal(model2(paddle.to_tensor(x)).numpy(), model(paddle.to_tensor(x)).numpy())


def test_published_hash_prefix_mismatch_fails_and_leaves_nothing(server):
    w = find_weights("DLA46_c", "original")
    assert w.sha256_prefix == "2bfd52c3" and w.url.startswith("http://dl.yf.io/")
    server.files[_path_of(w.url)] = b"not the published file" * 100
    with pytest.raises(ConfigError) as e:
        build_model({"name": "DLA46_c", "pretrained": "original"})
    assert "2bfd52c3" in str(e.value) and "\n" not in str(e.value)
    path = cached_path("DLA46_c", w)
    assert not os.path.exists(path) and not os.path.exists(path + ".part")


def test_404_refused_connection_offline_and_unknown_tag(server, env):
    with pytest.raises(ConfigError, match=r"could not download .*DLA34_pretrained.pdparams.*404"):
        build_model({"name": "DLA34", "pretrained": True})
    env.setenv("PPCLS_WEIGHTS_MIRROR", "http://127.0.0.1:9")  # nothing listens on the discard port
    env.setenv("PPCLS_DOWNLOAD_RETRIES", "2")
    with pytest.raises(ConfigError, match=r"127.0.0.1:9/dygraph/DLA34_pretrained.pdparams.*connection refused"):
        build_model({"name": "DLA34", "pretrained": True})
    env.setenv("PPCLS_OFFLINE", "1")
    w = find_weights("DLA34", True)
    with pytest.raises(ConfigError) as e:
        build_model({"name": "DLA34", "pretrained": True})
    assert cached_path("DLA34", w) in str(e.value) and "DLA34_pretrained.pdparams" in str(e.value)
    with pytest.raises(ConfigError, match=r"'timm_in2k' is not a file, a folder, a URL or a known tag .*DLA34.timm_in1k"):
        build_model({"name": "DLA34", "pretrained": "timm_in2k"})
    with pytest.raises(ConfigError, match="no published weights are known for AttentionNet56"):
        build_model({"name": "AttentionNet56", "pretrained": True})


def test_manual_download_says_where_the_file_goes(tmp_path):
    pytest.importorskip("torch")
    import torch
    with pytest.raises(ConfigError) as e:
        build_model({"name": "RLA_MobileNetV2", "pretrained": True})
    w = find_weights("RLA_MobileNetV2", True)
    message = str(e.value)
    assert "drive.google.com" in message and "pan.baidu.com" in message and cached_path("RLA_MobileNetV2", w) in message
    # the file put there by hand (the authors' training checkpoint format) is used, its hash recorded
    meta, weights, x, expected = alignment.load_fixture("dsrla_mobilenetv2_k32")
    os.makedirs(os.path.dirname(cached_path("RLA_MobileNetV2", w)))
    torch.save({"epoch": 100, "state_dict": {"module." + k: torch.from_numpy(np.ascontiguousarray(v))
                                             for k, v in weights.items()}}, cached_path("RLA_MobileNetV2", w))
    model = build_model({"name": "RLA_MobileNetV2", "pretrained": True})
    model.eval()
    assert _relerr(model(paddle.to_tensor(x)), expected[0]) < alignment.tolerance(meta)
    assert os.path.isfile(cached_path("RLA_MobileNetV2", w) + ".sha256")


@pytest.mark.parametrize("fixture,folder,name", [("timm_dla34", INTEROP, "DLA34"), ("rexnet_1_0", None, "ReXNet_1_0")])
def test_paddleclas_files_load_as_they_are(tmp_path, fixture, folder, name):
    """PaddleClas's DLA and ReXNet module trees are this project's: their .pdparams load key for key,
    with the original's logits."""
    data, x, expected = _paddleclas_file(fixture, name, folder)
    path = tmp_path / f"{name}_pretrained.pdparams"
    path.write_bytes(data)
    model = build_model({"name": name, "pretrained": str(path)[:-len(".pdparams")]})
    model.eval()
    assert _relerr(model(paddle.to_tensor(x)), expected) < 1e-3


def test_url_given_directly(server):
    data, x, expected = _paddleclas_file("timm_dla46_c", "DLA46_c", INTEROP)
    server.files["/mine/dla46c.pdparams"] = data
    model = build_model({"name": "DLA46_c", "pretrained": f"{server.url}/mine/dla46c.pdparams"})
    model.eval()
    assert _relerr(model(paddle.to_tensor(x)), expected) < 1e-3


# -- every format, converted, against reference outputs ------------------------------------------------------
def test_mxnet_params_of_a_residual_attention_net_convert_and_match(tmp_path):
    meta, weights, x, expected = alignment.load_fixture("attention56_cifar10")
    names = list(weights)
    src = write_mx_params(tmp_path / "attention56-0000.params", [mx_record(np.ascontiguousarray(weights[k])) for k in names],
                          [("aux:" if "running_" in k else "arg:") + k for k in names])  # the Module checkpoint form
    r = run_tool("convert_weights.py", "-a", "AttentionNet56_CIFAR", "--src", src, "--dst", str(tmp_path / "a56"))
    assert r.returncode == 0, r.stderr[-2000:]
    model = build_model({"name": "AttentionNet56_CIFAR", "pretrained": str(tmp_path / "a56")})
    model.eval()
    err = _relerr(model(paddle.to_tensor(x)), expected[0])
    assert err < alignment.tolerance(meta), err
    # the same file given straight as the pretrained weights (converted on the fly)
    direct = build_model({"name": "AttentionNet56_CIFAR", "pretrained": src})
    direct.eval()
    np.testing.assert_allclose(direct(paddle.to_tensor(x)).numpy(), model(paddle.to_tensor(x)).numpy(), rtol=1e-6)


@pytest.mark.parametrize("fixture,name", [("timm_dla34", "DLA34"), ("timm_rexnet_130", "ReXNet_1_3")])
def test_timm_safetensors_file_and_hub_folder_as_pretrained(tmp_path, fixture, name):
    meta, weights, x, expected = alignment.load_fixture(fixture, INTEROP)
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"architecture": "%s", "num_classes": 1000}' % fixture[5:])
    for source in (str(folder), str(folder / "model.safetensors")):
        model = build_model({"name": name, "pretrained": source})
        model.eval()
        err = _relerr(model(paddle.to_tensor(x)), expected[0])
        assert err < alignment.tolerance(meta), (source, err)
    r = run_tool("convert_weights.py", "-a", name, "--src", str(folder), "--dst", str(tmp_path / "out"))
    assert r.returncode == 0 and "converted" in r.stdout, r.stderr[-2000:]


def test_refusals_list_missing_unexpected_and_mis_shaped_keys(tmp_path):
    meta, weights, x, expected = alignment.load_fixture("timm_dla46_c", INTEROP)
    broken = dict(weights)
    broken.pop("level5.root.bn.running_var")
    broken["extra.weight"] = np.zeros(3, np.float32)
    broken["fc.bias"] = np.zeros(7, np.float32)
    save_file({k: np.ascontiguousarray(v) for k, v in broken.items()}, str(tmp_path / "b.safetensors"))
    r = run_tool("convert_weights.py", "-a", "DLA46_c", "--src", str(tmp_path / "b.safetensors"), "--dst",
                 str(tmp_path / "o"))
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "missing 1: level5.root.bn._variance" in line and "unexpected 1: extra.weight" in line
    assert "mis-shaped 1: fc.bias [7]" in line


def test_convert_needs_only_the_model_name(tmp_path):
    meta, weights, x, expected = alignment.load_fixture("dla46_c")
    np.savez(tmp_path / "orig.npz", **weights)
    state, dropped = convert_state_dict(build_model({"name": "DLA46_c"}), weights, get_rules("DLA46_c", keys=weights))
    assert sorted(dropped) == sorted(meta.get("unused_keys", []))  # ucbdrive's file: detected, dead keys dropped
    r = run_tool("convert_weights.py", "-a", "DLA46_c", "--src", str(tmp_path / "orig.npz"), "--dst", str(tmp_path / "c"))
    assert r.returncode == 0, r.stderr


# -- loading never runs code from a file ---------------------------------------------------------------------
class _Creates:
    """A pickle whose loading calls open(path, 'w'): the file appearing means code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _hostile(path, marker, wrap=None):
    payload = {"conv.weight": np.zeros(2, np.float32), "evil": _Creates(str(marker))}
    with open(path, "wb") as f:
        pickle.dump(wrap(payload) if wrap else payload, f, protocol=4)
    return str(path)


def test_hostile_pretrained_model_and_arch_pretrained_are_refused(tmp_path):
    marker = tmp_path / "ran"
    evil = _hostile(tmp_path / "evil.pdparams", marker)
    with pytest.raises(ConfigError, match=r"evil.pdparams: refusing to load (builtins|io)\.open"):
        build_model({"name": "DLA46_c", "pretrained": evil})
    assert not marker.exists()
    path, _ = tiny_config(tmp_path, arch="DLA46_c")
    r = run_tool("eval.py", "-c", path, "-o", f"Global.pretrained_model={evil[:-len('.pdparams')]}")
    assert r.returncode == 2, r.stderr[-2000:]
    err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and "evil.pdparams: refusing to load" in err[0] and "Traceback" not in r.stderr
    assert not marker.exists()


def test_hostile_file_from_a_url_is_refused(server, tmp_path):
    marker = tmp_path / "ran"
    server.files["/x/evil.pdparams"] = open(_hostile(tmp_path / "e.pdparams", marker), "rb").read()
    with pytest.raises(ConfigError, match="refusing to load"):
        build_model({"name": "DLA46_c", "pretrained": f"{server.url}/x/evil.pdparams"})
    assert not marker.exists()


@pytest.fixture(scope="module")
def checkpoint(module_tmp):
    tmp = module_tmp("ckpt")
    path, _ = tiny_config(tmp, epochs=1, per_class=4, extra={"Global": {"eval_during_train": False}, "EMA": {"decay": 0.9}})
    r = run_tool("train.py", "-c", path)
    assert r.returncode == 0, r.stderr[-2000:]
    return path, os.path.join(str(tmp), "output", "ResNet18", "latest")


@pytest.mark.parametrize("part", [".pdparams", ".pdopt", ".ema.pdparams", ".pdstates"])
def test_hostile_part_of_a_resumed_checkpoint_is_refused(tmp_path, checkpoint, part):
    """A checkpoint whose every digest is consistent (an attacker can rewrite .pdstates too) and whose
    one part asks for a function: refused with one line, and the function never runs."""
    import shutil
    from ppcls.engine.checkpoint import _digest
    from ppcls.utils.save_load import load_state_file
    path, latest = checkpoint
    prefix = str(tmp_path / "latest")
    for suffix in (".pdparams", ".pdopt", ".ema.pdparams", ".pdstates"):
        shutil.copy(latest + suffix, prefix + suffix)
    marker = tmp_path / "ran"
    states = load_state_file(prefix + ".pdstates")
    if part == ".pdstates":
        _hostile(prefix + ".pdstates", marker, wrap=lambda p: dict(states, extra=p))
    else:
        _hostile(prefix + part, marker)
        states["files"][part] = list(_digest(prefix + part))
        with open(prefix + ".pdstates", "wb") as f:
            pickle.dump(states, f, protocol=4)
    r = run_tool("train.py", "-c", path, "-o", f"Global.checkpoints={prefix}", "-o", "Global.epochs=2",
                 "-o", f"Global.output_dir={tmp_path}/out")
    assert r.returncode == 2, (r.stdout + r.stderr)[-2000:]
    err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and f"latest{part}: refusing to load" in err[0], r.stderr[-2000:]
    assert not marker.exists()
