"""ppcls.det.cli, the `ppcls det` command layer (found open by mutation testing, bash tests/mutation.sh det/cli.py):
its flags and their defaults in both spellings (`ppcls det train -c ...`, `ppcls det -c ... train`), the images
`infer` takes, the device choice, the config keys the flags set, and the one-line errors before ppdet starts.
Nothing here trains: tests/test_det.py runs the commands on tiny canvases (slow)."""
import os

import paddle
import pytest

pytest.importorskip("ppdet")

from ppcls.det import cli  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "ppcls", "configs", "detection", "demo", "faster_rcnn_dla46_c_fpn_digits.yml")


@pytest.fixture(autouse=True)
def no_config_left_loaded():
    """ppdet's workspace is process-wide: the configs loaded here (and the entries changed) do not outlive a test."""
    yield
    from ppcls.det.config import reset_workspace
    reset_workspace()


DEFAULTS = {"config": "x.yml", "opt": [], "eval": False, "resume": None, "use_vdl": False,
            "vdl_log_dir": "vdl_log_dir/scalar", "output_eval": None, "classwise": False,
            "save_prediction_only": False, "infer_img": None, "infer_dir": None, "output_dir": None,
            "draw_threshold": 0.5, "save_results": False, "amp": False}


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_command_takes_the_flags_with_their_defaults_in_either_order(command):
    assert vars(cli.parse_args([command, "-c", "x.yml"])) == dict(DEFAULTS, command=command)
    assert vars(cli.parse_args(["-c", "x.yml", command])) == dict(DEFAULTS, command=command)


def test_flags_reach_the_arguments():
    args = cli.parse_args(["infer", "--config", "x.yml", "-o", "a=1", "b=2", "--opt", "c=3", "--draw_threshold", "0.25",
                           "--infer_img", "i.png", "--infer_dir", "d", "--output_dir", "o", "--save_results",
                           "--eval", "-r", "ck", "--use_vdl", "--vdl_log_dir", "v", "--output_eval", "e",
                           "--classwise", "--save_prediction_only", "--amp"])
    assert vars(args) == {"config": "x.yml", "opt": ["a=1", "b=2", "c=3"], "eval": True, "resume": "ck",
                          "use_vdl": True, "vdl_log_dir": "v", "output_eval": "e", "classwise": True,
                          "save_prediction_only": True, "infer_img": "i.png", "infer_dir": "d", "output_dir": "o",
                          "draw_threshold": 0.25, "save_results": True, "amp": True, "command": "infer"}


@pytest.mark.parametrize("argv, words", [
    (["eval"], ["usage: ppcls det eval ", "the following arguments are required: -c/--config"]),
    (["serve", "-c", "x.yml"], ["usage: ppcls det ", "invalid choice: 'serve'"]),
    (["train", "-c", "x.yml", "--draw_threshold", "high"], ["usage: ppcls det train ", "invalid float value: 'high'"]),
])
def test_bad_flags_are_a_usage_error(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err


def test_help_says_what_each_flag_does():
    text = " ".join(cli.build_parser("export").format_help().split())
    assert text.startswith("usage: ppcls det export [-h] -c CONFIG [-o [OPT ...]] [--eval]")
    assert "ppcls det export -c CONFIG [--output_dir DIR]" in text  # the module's usage lines
    for flag, words in [
        ("-c CONFIG, --config CONFIG", "PaddleDetection config (.yml)"),
        ("-o [OPT ...], --opt [OPT ...]", "override config keys: key=value or Section.key=value (YAML values)"),
        ("--eval", "train: evaluate after each snapshot, keep best_model"),
        ("-r RESUME, --resume RESUME", "train: resume from this checkpoint prefix"),
        ("--use_vdl", "log to VisualDL"), ("--vdl_log_dir VDL_LOG_DIR", "VisualDL log folder"),
        ("--output_eval OUTPUT_EVAL", "eval: write bbox.json (segm.json) here"),
        ("--classwise", "eval: per-class AP"), ("--save_prediction_only", "eval: write the json, skip the AP"),
        ("--infer_img INFER_IMG", "infer: one image"), ("--infer_dir INFER_DIR", "infer: a folder of images"),
        ("--output_dir OUTPUT_DIR", "infer: where drawn images go (default output); export: model folder "
                                    "(default output_inference)"),
        ("--draw_threshold DRAW_THRESHOLD", "infer: score threshold to draw"),
        ("--save_results", "infer: also write bbox.json"), ("--amp", "train: automatic mixed precision (GPU)"),
    ]:
        assert f"{flag} {words}" in text, flag
    assert cli.build_parser().format_help().startswith("usage: ppcls det [-h] -c CONFIG")


def _args(**kw):
    return cli.parse_args(["infer", "-c", "x.yml"] + [f"--{k}={v}" for k, v in kw.items()])


def test_infer_takes_one_image_or_the_images_of_a_folder(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.jpeg", "d.bmp", "e.txt", "f.gif"):
        (tmp_path / name).write_bytes(b"")
    os.makedirs(tmp_path / "sub.jpg")  # a folder, whatever its name ends with, is no image
    found = cli._images(_args(infer_dir=tmp_path))
    assert found == [str(tmp_path / n) for n in ("a.jpg", "b.PNG", "c.jpeg", "d.bmp")]
    assert cli._images(_args(infer_img=tmp_path / "a.jpg", infer_dir=tmp_path)) == [str(tmp_path / "a.jpg")]
    rel = os.path.relpath(tmp_path / "d.bmp")
    assert cli._images(_args(infer_img=rel)) == [os.path.abspath(rel)]


@pytest.mark.parametrize("kw, message", [
    ({"infer_img": "{tmp}/none.jpg"}, "--infer_img: {tmp}/none.jpg not found"),
    ({"infer_img": "{tmp}"}, "--infer_img: {tmp} not found"),  # a folder is no image
    ({"infer_dir": "{tmp}/none"}, "--infer_dir: {tmp}/none is not a folder"),
    ({"infer_dir": "{tmp}/a.png"}, "--infer_dir: {tmp}/a.png is not a folder"),
    ({"infer_dir": "{tmp}/empty"}, "--infer_dir: no .jpg/.jpeg/.png/.bmp images in {tmp}/empty"),
    ({}, "infer: give --infer_img IMAGE or --infer_dir FOLDER"),
])
def test_infer_without_images_is_one_error_naming_the_flag(tmp_path, kw, message):
    (tmp_path / "a.png").write_bytes(b"")
    os.makedirs(tmp_path / "empty")
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError) as e:
        cli._images(_args(**{k: v.format(tmp=tmp_path) for k, v in kw.items()}))
    assert str(e.value) == message.format(tmp=tmp_path)


def test_mask_results_are_also_written_under_cocos_name(tmp_path):
    cli._name_masks_segm(str(tmp_path))
    assert os.listdir(tmp_path) == []
    (tmp_path / "mask.json").write_text('[{"image_id": 1}]')
    cli._name_masks_segm(str(tmp_path))
    assert (tmp_path / "segm.json").read_text() == '[{"image_id": 1}]'
    assert (tmp_path / "mask.json").exists()


@pytest.mark.skipif(paddle.is_compiled_with_cuda(), reason="the fallback of a Paddle without CUDA")
def test_use_gpu_without_cuda_runs_on_the_cpu_and_says_so(monkeypatch):
    import logging
    from ppdet.core.workspace import AttrDict
    from ppcls.utils.logger import logger
    infos = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: infos.append(record.getMessage())
    logger.addHandler(handler)
    monkeypatch.setattr(paddle, "set_device", lambda device: infos.append(f"device {device}"))
    try:
        cfg = AttrDict(use_gpu=True, use_npu=1)
        cli._select_device(cfg)
        assert infos == ["use_gpu: this PaddlePaddle has no CUDA; running on the CPU", "device cpu"]
        assert cfg == {"use_gpu": False, "use_xpu": False, "use_npu": True, "use_mlu": False}
        assert all(type(v) is bool for v in cfg.values())
        infos.clear()
        cfg = AttrDict()
        cli._select_device(cfg)
        assert infos == ["device cpu"] and cfg["use_gpu"] is False
        # with CUDA, use_gpu is followed
        monkeypatch.setattr(paddle, "is_compiled_with_cuda", lambda: True)
        infos.clear()
        cfg = AttrDict(use_gpu=True)
        cli._select_device(cfg)
        assert infos == ["device gpu"] and cfg["use_gpu"] is True
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def configured(monkeypatch):
    """cli.run up to the command: the config as the flags leave it, and the names parameters get then."""
    seen = {}

    def run_command(args, cfg):
        seen["name"] = paddle.utils.unique_name.generate("conv2d")
        return cfg
    monkeypatch.setattr(cli, "_run_command", run_command)
    monkeypatch.setattr(paddle, "set_device", lambda device: None)
    return seen


def test_flags_set_the_config_keys_ppdet_reads(tmp_path, configured):
    paddle.utils.unique_name.generate("conv2d")  # a name taken before: the command still starts from _0
    out = tmp_path / "ev" / "sub"
    cfg = cli.run(cli.parse_args(["eval", "-c", DEMO, "--use_vdl", "--vdl_log_dir", "v", "--classwise",
                                  "--save_prediction_only", "--amp", "--output_eval", str(out)]))
    assert (cfg.use_vdl, cfg.vdl_log_dir, cfg.classwise, cfg.save_prediction_only, cfg.amp) == (
        True, "v", True, True, True)
    assert cfg.output_eval == str(out) and out.is_dir()
    assert configured["name"] == "conv2d_0"
    cfg = cli.run(cli.parse_args(["eval", "-c", DEMO, "-o", "amp=false"]))
    assert (cfg.use_vdl, cfg.vdl_log_dir, cfg.classwise, cfg.save_prediction_only) == (
        False, "vdl_log_dir/scalar", False, False)
    assert cfg.amp is False, "without --amp the config's amp stays"
    assert "output_eval" not in cfg
    cfg = cli.run(cli.parse_args(["eval", "-c", DEMO, "--output_eval", str(out)]))  # a folder already there
    assert cfg.output_eval == str(out)


def test_under_a_launcher_only_training_joins_the_process_group(configured, monkeypatch):
    joined = []
    monkeypatch.setattr(paddle.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(paddle.distributed, "init_parallel_env", lambda: joined.append(True))
    for command in ("eval", "infer", "export"):
        cli.run(cli.parse_args([command, "-c", DEMO]))
    assert joined == []
    cli.run(cli.parse_args(["train", "-c", DEMO]))
    assert joined == [True]
    monkeypatch.setattr(paddle.distributed, "get_world_size", lambda: 1)
    cli.run(cli.parse_args(["train", "-c", DEMO]))
    assert joined == [True]


@pytest.mark.parametrize("command", ["eval", "infer", "export"])
def test_a_command_without_usable_weights_is_one_line_before_ppdet_starts(command, tmp_path, capsys):
    for weights, message in [("null", f"weights: required for {command} (-o weights=path/to/model_final)"),
                             (f"{tmp_path}/w.pdparams", f"weights: {tmp_path}/w.pdparams not found")]:
        with pytest.raises(SystemExit) as e:
            cli.main([command, "-c", DEMO, "-o", f"weights={weights}", "use_gpu=false"])
        assert e.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == "error: " + message


def test_a_run_from_whole_detector_weights_skips_the_backbones_imagenet_weights():
    from ppdet.core.workspace import global_config
    from ppcls.det.config import load_det_config
    cfg = load_det_config(DEMO, ["DLA46_c.pretrained=DLA46_c.paddleclas_in1k"])
    assert global_config["DLA46_c"]["pretrained"] == "DLA46_c.paddleclas_in1k"
    cli._disable_backbone_weights(cfg)
    assert global_config["DLA46_c"]["pretrained"] is None


def test_coco_datasets_are_checked_where_ppdet_will_read_them(tmp_path, monkeypatch):
    from ppdet.core.workspace import global_config
    from ppcls.det import coco_check
    from ppcls.det.config import load_det_config
    cfg = load_det_config(DEMO, [f"TrainDataset.dataset_dir={tmp_path}", f"EvalDataset.dataset_dir={tmp_path}"])
    with pytest.raises(ConfigError) as e:
        cli._check_datasets(cfg, ["TrainDataset"])
    assert str(e.value) == f"TrainDataset: {tmp_path}/annotations/instances_train.json: annotation file not found"
    calls = []
    monkeypatch.setattr(coco_check, "check_coco", lambda ann, image_dir, where, load_crowd: calls.append(
        (ann, image_dir, where, load_crowd)))
    global_config["EvalDataset"].update(load_crowd=True, image_dir=None)
    global_config["TrainDataset"].update(dataset_dir=None)  # paths relative to the working directory
    global_config["TestDataset"] = {"name": "ImageFolder", "anno_path": "a.json"}  # not COCO: nothing to check
    cli._check_datasets(cfg, ["TrainDataset", "EvalDataset", "TestDataset", "NoSuchDataset"])
    assert calls == [("annotations/instances_train.json", "images/train", "TrainDataset", False),
                     (f"{tmp_path}/annotations/instances_val.json", f"{tmp_path}/", "EvalDataset", True)]


class Trainer:
    """ppdet's Trainer as the commands drive it, recording each call (the real one is run by the slow tests
    of tests/test_det.py)."""
    made = []

    def __init__(self, cfg, mode):
        self.cfg, self.mode, self.calls, self.model = cfg, mode, [], object()
        Trainer.made.append(self)

    def train(self, validate):
        self.calls.append(("train", validate))

    def evaluate(self):
        self.calls.append(("evaluate",))
        with open(os.path.join(self.cfg.get("output_eval") or ".", "mask.json"), "w") as f:
            f.write("[]")

    def predict(self, images, draw_threshold, output_dir, save_results):
        self.calls.append(("predict", images, draw_threshold, output_dir, save_results))

    def export(self, output_dir):
        self.calls.append(("export", output_dir))


@pytest.fixture
def ppdet_recorded(monkeypatch, tmp_path):
    """The commands with Trainer, the weight loaders and the dataset check recorded; in tmp_path."""
    import ppdet.engine
    from ppcls.det import checkpoint
    monkeypatch.chdir(tmp_path)
    Trainer.made = []
    loaded = []
    monkeypatch.setattr(ppdet.engine, "Trainer", Trainer)
    monkeypatch.setattr(checkpoint, "load_detector_weights",
                        lambda model, path: loaded.append(("weights", model, path)))
    monkeypatch.setattr(checkpoint, "load_pretrain_weights",
                        lambda model, path: loaded.append(("pretrain", model, path)))
    monkeypatch.setattr(checkpoint, "resume", lambda trainer, path: loaded.append(("resume", trainer, path)))
    monkeypatch.setattr(cli, "_check_datasets", lambda cfg, names: loaded.append(("check", names)))
    (tmp_path / "w.pdparams").write_bytes(b"")
    return loaded


def test_train_checks_its_datasets_and_starts_from_the_weights_asked_for(ppdet_recorded):
    from ppdet.core.workspace import global_config
    trainer = cli.main(["train", "-c", DEMO, "-o", "use_gpu=false", "pretrain_weights=p"])
    assert (trainer.mode, trainer.calls) == ("train", [("train", False)])
    assert ppdet_recorded == [("check", ["TrainDataset"]), ("pretrain", trainer.model, "p")]
    ppdet_recorded.clear()
    trainer = cli.main(["train", "-c", DEMO, "--eval", "-r", "ck", "-o", "use_gpu=false", "pretrain_weights=p",
                        "DLA46_c.pretrained=DLA46_c.paddleclas_in1k"])
    assert trainer.calls == [("train", True)]
    assert ppdet_recorded == [("check", ["TrainDataset", "EvalDataset"]), ("resume", trainer, "ck")]
    assert global_config["DLA46_c"]["pretrained"] is None, "a resumed run loads no ImageNet weights first"
    assert trainer.cfg.use_gpu is False


def test_eval_infer_export_load_the_weights_and_hand_ppdet_the_flags(ppdet_recorded, tmp_path):
    base = ["-c", DEMO, "-o", "use_gpu=false", "weights=w"]
    trainer = cli.main(["eval"] + base)
    assert (trainer.mode, trainer.calls) == ("eval", [("evaluate",)])
    assert ppdet_recorded == [("check", ["EvalDataset"]), ("weights", trainer.model, "w")]
    assert (tmp_path / "segm.json").read_text() == "[]"  # the masks' results under COCO's name, in .
    trainer = cli.main(["eval"] + base + ["--output_eval", "ev"])
    assert (tmp_path / "ev" / "segm.json").exists()
    (tmp_path / "a.png").write_bytes(b"")
    trainer = cli.main(["infer"] + base + ["--infer_img", "a.png"])
    assert trainer.mode == "test" and ppdet_recorded[-1] == ("weights", trainer.model, "w")
    assert trainer.calls == [("predict", [str(tmp_path / "a.png")], 0.5, "output", False)]
    trainer = cli.main(["infer"] + base + ["--infer_img", "a.png", "--output_dir", "o", "--draw_threshold", "0.2",
                                           "--save_results"])
    assert trainer.calls == [("predict", [str(tmp_path / "a.png")], 0.2, "o", True)]
    assert cli.main(["export"] + base) == "output_inference"
    assert Trainer.made[-1].mode == "test" and Trainer.made[-1].calls == [("export", "output_inference")]
    assert ppdet_recorded[-1] == ("weights", Trainer.made[-1].model, "w")
    assert cli.main(["export"] + base + ["--output_dir", "m"]) == "m"
    # weights named with their suffix, or at a URL (ppdet downloads them): no file check
    for weights in ("w.pdparams", "https://example.com/w.pdparams"):
        cli.main(["export", "-c", DEMO, "-o", "use_gpu=false", f"weights={weights}"])
        assert ppdet_recorded[-1] == ("weights", Trainer.made[-1].model, weights)
