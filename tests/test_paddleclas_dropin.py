"""A PaddleClas user's scripts work here unchanged: PaddleClas's config paths (and those of the earlier
layouts), every key PaddleClas's engine, tools and deploy/python/predict_cls.py read (each acts, or says in
one warning why it cannot), and its test chain (TIPC: test_tipc/test_train_inference_python.sh) over the
TIPC configs this project ships in test_tipc/configs."""
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

from engine_utils import ROOT, tiny_config
from ppcls.schema import GLOBAL, GLOBAL_COMPAT, get_config
from ppcls.utils.errors import ConfigError

CONFIGS = os.path.join(ROOT, "ppcls", "configs")


# -- config paths ---------------------------------------------------------------------------------
# (path as typed, the file it must load, Arch.name)
PATH_FORMS = [
    ("ppcls/configs/ImageNet/DLA/DLA34.yaml", "ImageNet/DLA/DLA34.yaml", "DLA34"),  # PaddleClas's TIPC
    ("ppcls/configs/ImageNet/ReXNet/ReXNet_3_0.yaml", "ImageNet/ReXNet/ReXNet_3_0.yaml", "ReXNet_3_0"),
    ("configs/ImageNet/RLANet/RLA_ResNet50.yaml", "ImageNet/RLANet/RLA_ResNet50.yaml", "RLA_ResNet50"),
    ("ImageNet/ResidualAttention/AttentionNet92.yaml", "ImageNet/ResidualAttention/AttentionNet92.yaml",
     "AttentionNet92"),
    ("configs/DLA/DLA60.yaml", "ImageNet/DLA/DLA60.yaml", "DLA60"),  # release/2.0 (the DLA60 reproduction)
    ("DLA/DLA60_best.yaml", "ImageNet/DLA/DLA60_best.yaml", "DLA60"),  # relative to the package
    ("ppcls/configs/ReXNet/ReXNet_1_0.yaml", "ImageNet/ReXNet/ReXNet_1_0.yaml", "ReXNet_1_0"),  # this project's old
    ("configs/ResidualAttention/AttentionNet56_CIFAR10.yaml", "quick_start/professional/AttentionNet56_CIFAR10.yaml",
     "AttentionNet56_CIFAR"),
    ("ResidualAttention/AttentionNet56.yaml", "ImageNet/ResidualAttention/AttentionNet56.yaml", "AttentionNet56"),
    ("quick_start/professional/AttentionNet92_CIFAR10_mixup.yaml",
     "quick_start/professional/AttentionNet92_CIFAR10_mixup.yaml", "AttentionNet92_CIFAR"),
    ("configs/ReXUNet/ReXUNet.yaml", "ReXUNet/ReXUNet.yaml", "ReXUNet"),
]


@pytest.mark.parametrize("where", ["checkout", "elsewhere"])
@pytest.mark.parametrize("typed,expected,arch", PATH_FORMS, ids=[p[0] for p in PATH_FORMS])
def test_config_path_forms(typed, expected, arch, where, tmp_path, monkeypatch):
    from ppcls.utils.config import resolve_config_path
    monkeypatch.chdir(ROOT if where == "checkout" else tmp_path)
    assert os.path.samefile(resolve_config_path(typed), os.path.join(CONFIGS, expected))
    assert get_config(typed)["Arch"]["name"] == arch


def test_paddleclas_model_files_exist_and_no_config_is_duplicated():
    """PaddleClas's own file names for the models it has, one physical copy of every config, and every
    _BASE_ of every config resolving."""
    import glob
    for name in [f"DLA{n}" for n in ("34", "46_c", "46x_c", "60", "60x", "60x_c", "102", "102x", "102x2", "169")]:
        assert os.path.isfile(os.path.join(CONFIGS, "ImageNet", "DLA", f"{name}.yaml")), name
    for name in ("ReXNet_1_0", "ReXNet_1_3", "ReXNet_1_5", "ReXNet_2_0", "ReXNet_3_0"):
        assert os.path.isfile(os.path.join(CONFIGS, "ImageNet", "ReXNet", f"{name}.yaml")), name
    for old in ("DLA", "ReXNet", "RLANet", "ResidualAttention"):  # the old folders are resolved, not copied
        assert not os.path.exists(os.path.join(CONFIGS, old)), old
    # detection / segmentation configs are PaddleDetection's and PaddleSeg's (their own schema and _base_)
    others = tuple(os.path.join(CONFIGS, d) + os.sep for d in ("detection", "segmentation"))
    files = [p for p in glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True) if not p.startswith(others)]
    names = [os.path.basename(p) for p in files]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    contents = {}
    for p in files:
        with open(p, "rb") as f:
            contents.setdefault(f.read(), []).append(p)
    assert all(len(v) == 1 for v in contents.values()), [v for v in contents.values() if len(v) > 1]
    for p in files:
        if os.sep + "_base_" + os.sep in p or os.sep + "deploy" + os.sep in p:
            continue
        assert get_config(p)["Arch"]["name"], p


def test_unknown_paths_still_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for typed in ("ppcls/configs/ImageNet/DLA/DLA35.yaml", "foo/DLA34.yaml", "configs/DLA/DLA61.yaml"):
        with pytest.raises(ConfigError, match=f"config file not found: {typed}"):
            get_config(typed)


# -- the Global keys of PaddleClas's engine and tools ---------------------------------------------
# Read from PaddleClas (ppcls/engine/engine.py, engine/train/*.py, engine/evaluation/*.py,
# ppcls/utils/config.py, ppcls/static/*.py, tools/*.py), with a value a config of its would carry.
# Acting here; what each does is tested where named.
PADDLECLAS_ACTING = {
    "checkpoints": "null",            # test_engine.py (resume)
    "pretrained_model": "null",       # test_engine.py, test_export_deploy.py
    "output_dir": "./output/",        # test_engine.py
    "device": "cpu",                  # test_front_door.py
    "save_interval": "1",             # test_engine.py
    "eval_during_train": "True",      # test_engine.py
    "eval_interval": "1",             # test_engine.py
    "start_eval_epoch": "0",          # test_engine.py
    "epochs": "2",                    # test_engine.py
    "print_batch_step": "10",         # test_engine.py
    "use_visualdl": "False",          # test_engine.py
    "image_shape": "[3,32,32]",       # test_export_deploy.py
    "save_inference_dir": "./inference",  # test_export_deploy.py
    "seed": "1234",                   # test_engine.py
    "update_freq": "1",               # test_engine.py
    "class_num": "3",                 # test_config.py
    "to_static": "False",             # test_engine.py
    "print_mem_info": "True",         # here: test_print_mem_info_*
    "log_ranks": "0,1,2,3,4,5,6,7",   # here: test_log_ranks_*
    "iter_per_epoch": "2",            # here: test_iter_per_epoch_*
}
# Accepted with one warning saying why they cannot act here.
PADDLECLAS_WARNED = {
    "eval_mode": "retrieval", "train_mode": "fixmatch", "use_dali": "True", "use_multilabel": "True",
    "distributed": "True", "is_distributed": "True", "export_for_fd": "False",
    "uniform_output_enabled": "True", "pdx_model_name": "PP-LCNet_x1_0", "hpi_config_path": "hpi.yaml",
    "warmup_iter": "10", "sim_block_size": "64", "re_ranking": "True", "retrieval_feature_from": "backbone",
    "feature_normalize": "False", "feature_binarize": "round",
}
# ... and silently where the value asks for what happens here anyway
PADDLECLAS_SAME = {"eval_mode": "classification", "train_mode": "null", "use_dali": "False",
                   "use_multilabel": "False", "distributed": "False", "export_for_fd": "True"}


@pytest.mark.parametrize("key", sorted(PADDLECLAS_ACTING))
def test_paddleclas_acting_keys_are_schema_keys(key, tmp_path, ppcls_warnings):
    path, _ = tiny_config(tmp_path, per_class=2)
    cfg = get_config(path, [f"Global.{key}={PADDLECLAS_ACTING[key]}"])
    assert key in GLOBAL and key not in GLOBAL_COMPAT
    assert key in cfg["Global"]
    assert not [w for w in ppcls_warnings if f"Global.{key}" in w]


@pytest.mark.parametrize("key", sorted(PADDLECLAS_WARNED))
def test_paddleclas_keys_that_cannot_act_warn_why(key, tmp_path, ppcls_warnings):
    path, _ = tiny_config(tmp_path, per_class=2)
    get_config(path, [f"Global.{key}={PADDLECLAS_WARNED[key]}"])
    warned = [w for w in ppcls_warnings if f"Global.{key}" in w]
    assert len(warned) == 1 and "no effect (" in warned[0] and len(warned[0].splitlines()) == 1, warned
    if key in PADDLECLAS_SAME:
        get_config(path, [f"Global.{key}={PADDLECLAS_SAME[key]}"])
        assert len([w for w in ppcls_warnings if f"Global.{key}" in w]) == 1  # no second warning


@pytest.mark.parametrize("bad", ["a,b", "-1", "[0, x]", "''", "True"])
def test_log_ranks_bad_values_name_the_key(bad, tmp_path):
    path, _ = tiny_config(tmp_path, per_class=2)
    with pytest.raises(ConfigError, match="Global.log_ranks"):
        get_config(path, [f"Global.log_ranks={bad}"])


def _train(tmp_path, *overrides):
    path, _ = tiny_config(tmp_path, epochs=1, per_class=4, extra={"Global": {"eval_during_train": False}})
    from engine_utils import run_tool
    return run_tool("train.py", "-c", path, *overrides)


def test_print_mem_info_adds_peak_memory_to_train_lines(tmp_path):
    r = _train(tmp_path, "-o", "Global.print_mem_info=True")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [line for line in r.stdout.splitlines() if "[Train][Epoch 1/1][Iter:" in line]
    assert lines
    import re
    for line in lines:  # a CPU run: the peak resident memory of the training process
        mb = float(re.search(r", max_mem_rss: ([0-9.]+) MB$", line).group(1))
        assert 50 < mb < 64 * 1024, line
    with open(os.path.join(str(tmp_path), "output", "ResNet18", "train.log"), encoding="utf-8") as f:
        assert "max_mem_rss:" in f.read()
    r = _train(tmp_path / "off")
    assert r.returncode == 0 and "max_mem_" not in r.stdout, r.stderr[-2000:]


LOG_SCRIPT = """
import sys
from ppcls.utils.logger import init_logger, logger
init_logger(sys.argv[1], None if sys.argv[2] == "none" else sys.argv[2])
logger.info("an info line")
logger.error("an error line")
"""


@pytest.mark.parametrize("rank,log_ranks,console_info", [
    ("0", "none", True), ("1", "none", True), ("1", "0", False), ("1", "0,1,2,3,4,5,6,7", True), ("0", "1", False),
])
def test_log_ranks_choose_the_ranks_printing_to_the_console(rank, log_ranks, console_info, tmp_path):
    """Ranks outside Global.log_ranks print only errors (as in PaddleClas) and keep their whole log in a
    file of their own; rank 0 writes the run's log file in every case."""
    log_file = str(tmp_path / "train.log")
    env = dict(os.environ, PADDLE_TRAINER_ID=rank, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", LOG_SCRIPT, log_file, log_ranks], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert ("an info line" in r.stdout) == console_info and "an error line" in r.stdout
    own_file = log_file if rank == "0" else str(tmp_path / f"train.rank{rank}.log")
    if rank == "0" or not console_info:
        with open(own_file, encoding="utf-8") as f:
            text = f.read()
        assert "an info line" in text and "an error line" in text
    else:  # a rank printing to the console: its worker log (log/workerlog.N) has it all already
        assert not os.listdir(tmp_path)


def test_log_ranks_in_a_training_run(tmp_path):
    r = _train(tmp_path, "-o", "Global.log_ranks=0,1")
    assert r.returncode == 0 and "[Train][Epoch 1/1]" in r.stdout, r.stderr[-2000:]
    r = _train(tmp_path / "quiet", "-o", "Global.log_ranks=1")  # rank 0 off the console, its log file kept
    assert r.returncode == 0 and "[Train]" not in r.stdout, r.stderr[-2000:]
    with open(os.path.join(str(tmp_path / "quiet"), "output", "ResNet18", "train.log"), encoding="utf-8") as f:
        assert "[Train][Epoch 1/1]" in f.read()


# -- deploy/python/predict_cls.py's keys ----------------------------------------------------------
@pytest.fixture(scope="module")
def exported(module_tmp):
    from ppcls.inference.export import export
    tmp = module_tmp("dropin_deploy")
    path, data = tiny_config(tmp, per_class=2)
    out = str(tmp / "inference")
    export(get_config(path, [f"Global.save_inference_dir={out}", "Global.backend_probe=False"]))
    return out, os.path.join(data, "val")


def _predict(exported, **global_keys):
    from ppcls.inference.predictor import predict_folder
    model_dir, images = exported
    post = global_keys.pop("PostProcess", None)
    cfg = {"Global": dict({"inference_model_dir": model_dir, "infer_imgs": images, "backend": "paddle",
                           "enable_mkldnn": False, "cpu_num_threads": 1}, **global_keys)}
    if post is not None:
        cfg["PostProcess"] = post
    return predict_folder(cfg)


# every Global key of PaddleClas's deploy/python/predict_cls.py and deploy/utils/predictor.py
PREDICT_CLS_KEYS = ("infer_imgs", "inference_model_dir", "batch_size", "use_gpu", "gpu_mem", "enable_mkldnn",
                    "cpu_num_threads", "enable_benchmark", "benchmark", "use_fp16", "use_int8", "ir_optim",
                    "use_tensorrt", "enable_profile", "use_onnx", "use_npu", "use_xpu", "use_mlu", "model_name",
                    "save_log_path")


def test_every_predict_cls_key_is_accepted(exported, ppcls_warnings, tmp_path):
    from ppcls.inference.predictor import GLOBAL_DEFAULTS
    assert set(PREDICT_CLS_KEYS) <= set(GLOBAL_DEFAULTS)
    # PaddleClas's deploy/configs/inference_cls.yaml Global section, as a CPU user runs it
    results = _predict(exported, batch_size=1, use_gpu=False, gpu_mem=8000, enable_mkldnn=True, cpu_num_threads=10,
                       enable_benchmark=True, use_fp16=False, ir_optim=True, use_tensorrt=False,
                       enable_profile=False, use_int8=False, use_onnx=False, use_npu=False, use_xpu=False,
                       use_mlu=False, benchmark=False, model_name="cls", save_log_path=str(tmp_path / "a.log"))
    assert len(results) == len(os.listdir(exported[1])) and os.path.isfile(tmp_path / "a.log")
    assert not ppcls_warnings


def test_save_log_path_gets_the_benchmark_report(exported, tmp_path, ppcls_warnings):
    report = tmp_path / "logs" / "infer_cpu.log"
    results = _predict(exported, benchmark=True, batch_size=2, model_name="ResNet18_tiny", save_log_path=str(report))
    text = report.read_text()
    n = len(os.listdir(exported[1]))
    assert "model_name: ResNet18_tiny" in text and f"data_num: {n}" in text and "batch_size: 2" in text
    assert "input_shape: [3, 32, 32]" in text and "enable_mkldnn: False" in text
    assert "cpu_math_library_num_threads: 1" in text and "precision: fp32" in text
    import re
    times = re.search(r"preprocess_time\(ms\): ([0-9.]+), inference_time\(ms\): ([0-9.]+), "
                      r"postprocess_time\(ms\): ([0-9.]+)", text)
    assert times and float(times.group(2)) > 0 and len(results) == n
    assert float(re.search(r"cpu_rss\(MB\): ([0-9.]+)", text).group(1)) > 50
    # without the benchmark there is no report: said once per key
    other = tmp_path / "other.log"
    _predict(exported, save_log_path=str(other), model_name="x")
    assert not other.exists()
    warned = ppcls_warnings
    assert any("Global.save_log_path" in w and "Global.benchmark=True" in w for w in warned), warned
    assert any("Global.model_name" in w for w in warned), warned


def test_use_int8_on_a_float_model_is_refused(exported):
    with pytest.raises(ConfigError, match=r"Global.use_int8: True, but .* holds a fp32 model"):
        _predict(exported, use_int8=True)


def test_accelerator_keys_without_the_device_warn_and_predict_on_the_cpu(exported, ppcls_warnings):
    import paddle
    cpu = _predict(exported)
    for key in ("use_xpu", "use_npu", "use_mlu") + (() if paddle.device.is_compiled_with_cuda() else ("use_gpu",)):
        assert _predict(exported, **{key: True}) == cpu
        assert any(f"Global.{key}" in w and "predicting on the CPU" in w for w in ppcls_warnings), key


def test_enable_profile_prints_paddle_inference_profile(exported, tmp_path):
    model_dir, images = exported
    r = subprocess.run([sys.executable, os.path.join(ROOT, "deploy", "python", "predict_cls.py"),
                        "-o", f"Global.inference_model_dir={model_dir}", "-o", f"Global.infer_imgs={images}",
                        "-o", "Global.backend=paddle", "-o", "Global.enable_profile=True"],
                       capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Profiling Report" in r.stdout + r.stderr


def test_postprocess_save_pre_label_and_others(exported, tmp_path, ppcls_warnings):
    out = tmp_path / "pre_label"
    results = _predict(exported, PostProcess={"main_indicator": "Topk", "Topk": {"topk": 2},
                                              "SavePreLabel": {"save_dir": str(out)}, "ThreshOutput": {}})
    for r in results:
        assert os.path.isfile(out / str(r["class_ids"][0]) / os.path.basename(r["file_name"]))
    assert sum(len(files) for _, _, files in os.walk(out)) == len(results) == len(os.listdir(exported[1]))
    assert any("PostProcess.ThreshOutput" in w for w in ppcls_warnings)
    with pytest.raises(ConfigError, match="PostProcess.SavePreLabel.save_dir"):
        _predict(exported, PostProcess={"SavePreLabel": {}})
    with pytest.raises(ConfigError, match="PostProcess.Topk.delimiter"):
        _predict(exported, PostProcess={"Topk": {"topk": 1, "delimiter": "\t"}})


# -- TIPC ------------------------------------------------------------------------------------------
TIPC = os.path.join(ROOT, "test_tipc", "configs")


def tipc_files():
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(TIPC) for f in fs if f.endswith("_train_infer_python.txt"))


def _key(line):
    return line.split(":")[0]


def _value(line):
    parts = line.split(":")
    return parts[1] if len(parts) > 1 else ""


def _set(key, value):
    """test_tipc/common_func.sh's func_set_params."""
    return "" if key == "null" or value.strip() in ("null", "") else f"{key}={value}"


@pytest.mark.parametrize("path", tipc_files(), ids=lambda p: os.path.relpath(p, TIPC))
def test_tipc_config_is_in_paddleclas_format(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[0].startswith("===") and "train_params" in lines[0] and "eval_params" in lines[22]
    assert "infer_params" in lines[26] and "infer_benchmark_params" in lines[52]
    model = _value(lines[1])
    assert _key(lines[15]) == "norm_train" and _value(lines[15]).startswith("tools/train.py -c ")
    for i, tool in ((15, "train"), (23, "eval"), (29, "export_model")):
        args = shlex.split(_value(lines[i]))
        assert args[0] == f"tools/{tool}.py"
        cfg = get_config(os.path.join(ROOT, args[2]), [a for a in args[3:] if a != "-o"])
        assert cfg["Arch"]["name"] == model  # the harness reads <output_dir>/<model_name>/train.log
    assert _value(lines[39]) == "python/predict_cls.py -c configs/inference_cls.yaml"
    assert [_key(line) for line in lines[40:50]] == [
        "-o Global.use_gpu", "-o Global.enable_mkldnn", "-o Global.cpu_num_threads", "-o Global.batch_size",
        "-o Global.use_tensorrt", "-o Global.use_fp16", "-o Global.inference_model_dir", "-o Global.infer_imgs",
        "-o Global.save_log_path", "-o Global.benchmark"]


def _checkout(tmp_path):
    """A PaddleClas-style working copy: this project's tools and packages, the user's dataset/."""
    root = tmp_path / "PaddleClas"
    (root / "deploy").mkdir(parents=True)
    for name in ("ppcls", "tools"):
        os.symlink(os.path.join(ROOT, name), root / name)
    # deploy/ is a real folder: the harness runs predict_cls.py from it with paths relative to it
    os.symlink(os.path.join(ROOT, "deploy", "python"), root / "deploy" / "python")
    os.symlink(os.path.join(ROOT, "ppcls", "configs", "deploy"), root / "deploy" / "configs")
    return root


def _ilsvrc2012(root, num_classes):
    """An ILSVRC2012-shaped folder: train/ and val/ JPEGs, train_list.txt and val_list.txt, and the
    val image TIPC predicts, ILSVRC2012_val_00000001.JPEG."""
    import cv2
    from datasets import make_synthetic_dataset
    data = root / "dataset" / "ILSVRC2012"
    make_synthetic_dataset(str(data), num_classes=num_classes, per_class=4, size=64, val_per_class=2)
    first = open(data / "val_list.txt").readline().split()[0]
    cv2.imwrite(str(data / "val" / "ILSVRC2012_val_00000001.JPEG"), cv2.imread(str(data / first)))
    return data


def _run(cmd, cwd, timeout=900):
    """One harness command (``eval $cmd``), the PaddleClas python swapped for this one."""
    args = shlex.split(cmd)
    r = subprocess.run(args, capture_output=True, text=True, cwd=str(cwd), timeout=timeout,
                       env=dict(os.environ, PYTHONPATH=""))
    assert r.returncode == 0, f"{cmd}\n{(r.stdout + r.stderr)[-3000:]}"
    return r


@pytest.mark.slow
@pytest.mark.parametrize("tipc", ["ResidualAttention/AttentionNet56_CIFAR_train_infer_python.txt",
                                  "RLANet/RLA_MobileNetV2_train_infer_python.txt"])
def test_tipc_lite_train_lite_infer_chain(tipc, tmp_path):
    """test_tipc/test_train_inference_python.sh CONFIG lite_train_lite_infer, step by step with its commands
    and -o flags, the config changed as a CPU user does (python, gpu_list:-1, Global.device:cpu,
    Global.use_gpu:False): train 2 epochs, eval 'latest', export, predict_cls.py from deploy/."""
    with open(os.path.join(TIPC, tipc), encoding="utf-8") as f:
        lines = f.read().split("\n")
    lines[2], lines[3], lines[4] = f"python:{sys.executable}", "gpu_list:-1", "-o Global.device:cpu"
    lines[40] = "-o Global.use_gpu:False"
    mode = "lite_train_lite_infer"
    root = _checkout(tmp_path)
    model, python = _value(lines[1]), _value(lines[2])
    _ilsvrc2012(root, 10)
    if "CIFAR" in model:
        from datasets import write_cifar_archive
        imgs = np.random.RandomState(0).randint(0, 256, (40, 32, 32, 3)).astype(np.uint8)
        write_cifar_archive(str(root / "dataset" / "cifar-10-python.tar.gz"), imgs, np.arange(40) % 10)
    epoch_num = [p.split("=")[1] for p in _value(lines[6]).split("|") if p.split("=")[0] == mode][0]
    log_path = root / "test_tipc" / "output" / model / mode
    log_path.mkdir(parents=True)
    save_log = str(log_path / "norm_train_gpus_-1_autocast_null_nodes_1")
    train = " ".join([python, _value(lines[15]), _set(_key(lines[4]), _value(lines[4])),
                      _set(_key(lines[7]), save_log), _set(_key(lines[6]), epoch_num),
                      _set(_key(lines[9]), _value(lines[9])), "-o AMP.use_amp=False",
                      _set(_key(lines[8]), _value(lines[8])), _set(_key(lines[12]), _value(lines[12])),
                      "-o Global.print_mem_info=True"])
    _run(train, root)
    with open(os.path.join(save_log, model, "train.log"), encoding="utf-8") as f:  # what the harness cats
        train_log = f.read()
    assert "[Train][Epoch 2/2]" in train_log and "max_mem_rss:" in train_log
    weights = os.path.join(save_log, model, _value(lines[10]))
    r = _run(" ".join([python, _value(lines[23]), _set(_key(lines[9]), weights),
                       _set(_key(lines[4]), _value(lines[4])), _set(_key(lines[24]), _value(lines[24]))]), root)
    assert "[Eval][Epoch 0][Avg]" in r.stdout
    r = _run(" ".join([python, _value(lines[29]), _set(_key(lines[28]), weights), _set(_key(lines[27]), save_log)]),
             root)
    assert os.path.isfile(os.path.join(save_log, "inference.pdiparams"))
    for use_gpu in _value(lines[40]).split("|"):
        for mkldnn in _value(lines[41]).split("|"):
            for threads in _value(lines[42]).split("|"):
                for batch_size in _value(lines[43]).split("|"):
                    cmd = " ".join([python, _value(lines[39]), f"{_key(lines[40])}={use_gpu}",
                                    f"{_key(lines[41])}={mkldnn}", _set(_key(lines[42]), threads),
                                    _set(_key(lines[46]), save_log), _set(_key(lines[43]), batch_size),
                                    _set(_key(lines[47]), _value(lines[47])),
                                    _set(_key(lines[49]), _value(lines[49])),
                                    _set(_key(lines[50]), _value(lines[50]))])
                    r = _run(cmd, root / "deploy")
                    assert "ILSVRC2012_val_00000001.JPEG:\tclass id(s): [" in r.stdout, r.stdout[-2000:]
    # the benchmark modes add Global.benchmark=True and Global.save_log_path
    report = log_path / "python_infer_cpu_benchmark.log"
    r = _run(" ".join([python, _value(lines[39]), f"{_key(lines[40])}=False", f"{_key(lines[41])}=True",
                       _set(_key(lines[42]), "2"), _set(_key(lines[46]), save_log), _set(_key(lines[43]), "2"),
                       _set(_key(lines[47]), "../dataset/ILSVRC2012/val"), _set(_key(lines[48]), str(report)),
                       _set(_key(lines[49]), "True")]), root / "deploy")
    assert "inference_time(ms):" in report.read_text()


def test_iter_per_epoch_ends_each_epoch_and_sizes_the_schedule(tmp_path):
    """Global.iter_per_epoch below one pass: every epoch takes that many steps (log lines, global step, the
    schedule's length); above one pass: a warning, and one pass."""
    path, _ = tiny_config(tmp_path, epochs=2, per_class=8, batch_size=4, extra={"Global": {"eval_during_train": False,
                                                                               "print_batch_step": 1}})
    from engine_utils import run_tool
    from ppcls.utils.save_load import load_state_file
    out = tmp_path / "out"
    r = run_tool("train.py", "-c", path, "-o", "Global.iter_per_epoch=2", "-o", f"Global.output_dir={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    import re
    its = re.findall(r"\[Train\]\[Epoch (\d)/2\]\[Iter: (\d+)/(\d+)\]", r.stdout)
    assert its == [("1", "0", "2"), ("1", "1", "2"), ("2", "0", "2"), ("2", "1", "2")], its
    arch = get_config(path)["Arch"]["name"]
    states = load_state_file(str(out / arch / "latest.pdstates"))
    assert states["global_step"] == 4 and states["epoch"] == 2
    r = run_tool("train.py", "-c", path, "-o", "Global.iter_per_epoch=1000", "-o", "Global.epochs=1",
                 "-o", f"Global.output_dir={tmp_path / 'out2'}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Global.iter_per_epoch=1000 is more than one pass over the train list" in r.stdout
    full = re.findall(r"\[Iter: \d+/(\d+)\]", r.stdout)
    assert full and int(full[0]) > 2
