"""ppcls.seg.cli, the `ppcls seg` command layer (found open by mutation testing, bash tests/mutation.sh seg/cli.py):
PaddleSeg's flags with their defaults per command, the device choice, and the one-line errors (naming the flag
or the config) that come before any model is built. Nothing here trains: tests/test_paddleseg.py runs the
commands on the digit canvases."""
import os

import numpy as np
import paddle
import pytest

pytest.importorskip("paddleseg")

from ppcls.seg import cli  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "segmentation", "digits", "dlaup_dla34_digits.yaml")
COMMON = {"config": "c.yaml", "device": "auto", "opts": None}
EVAL = {"scales": 1.0, "flip_horizontal": False, "flip_vertical": False, "is_slide": False, "crop_size": None,
        "stride": None}


@pytest.mark.parametrize("argv, expected", [
    (["train", "--config", "c.yaml"],
     dict(COMMON, save_dir="./output", num_workers=0, do_eval=False, use_vdl=False, resume_model=None, iters=None,
          batch_size=None, learning_rate=None, save_interval=1000, log_iters=10, keep_checkpoint_max=5, seed=None,
          precision="fp32", amp_level="O1", repeats=1)),
    (["val", "--config", "c.yaml", "--model_path", "m"], dict(COMMON, model_path="m", num_workers=0, aug_eval=False,
                                                               **EVAL)),
    (["predict", "--config", "c.yaml", "--model_path", "m", "--image_path", "i"],
     dict(COMMON, model_path="m", image_path="i", save_dir="./output/result", custom_color=None, aug_pred=False,
          **EVAL)),
    (["export", "--config", "c.yaml"], dict(COMMON, model_path=None, save_dir="./output/inference_model",
                                            input_shape=None, output_op="argmax")),
    (["infer", "--model_dir", "d", "--image_path", "i"],
     {"model_dir": "d", "image_path": "i", "save_dir": "./output/infer", "device": "cpu", "disable_mkldnn": False,
      "cpu_threads": None}),
])
def test_every_command_takes_paddleseg_s_flags_with_their_defaults(argv, expected):
    assert vars(cli.parser().parse_args(argv)) == dict(expected, command=argv[0])


def test_flags_take_their_types():
    args = cli.parser().parse_args(
        ["train", "--config", "c", "--device", "cpu", "--opts", "a=1", "b=2", "--save_dir", "s", "--num_workers", "2",
         "--do_eval", "--use_vdl", "--resume_model", "r", "--iters", "3", "--batch_size", "4", "--learning_rate",
         "0.5", "--save_interval", "6", "--log_iters", "7", "--keep_checkpoint_max", "8", "--seed", "9",
         "--precision", "fp16", "--amp_level", "O2", "--repeats", "3"])
    assert vars(args) == {"command": "train", "config": "c", "device": "cpu", "opts": ["a=1", "b=2"], "save_dir": "s",
                          "num_workers": 2, "do_eval": True, "use_vdl": True, "resume_model": "r", "iters": 3,
                          "batch_size": 4, "learning_rate": 0.5, "save_interval": 6, "log_iters": 7,
                          "keep_checkpoint_max": 8, "seed": 9, "precision": "fp16", "amp_level": "O2", "repeats": 3}
    args = cli.parser().parse_args(
        ["predict", "--config", "c", "--model_path", "m", "--image_path", "i", "--custom_color", "1", "2", "3",
         "--aug_pred", "--scales", "0.5", "1.5", "--flip_horizontal", "--flip_vertical", "--is_slide",
         "--crop_size", "64", "32", "--stride", "16", "8"])
    assert (args.custom_color, args.aug_pred, args.scales, args.crop_size, args.stride) == (
        [1, 2, 3], True, [0.5, 1.5], [64, 32], [16, 8])
    assert cli._test_config(args) == {"aug_eval": False, "scales": [0.5, 1.5], "flip_horizontal": True,
                                      "flip_vertical": True, "is_slide": True, "crop_size": [64, 32],
                                      "stride": [16, 8]}
    args = cli.parser().parse_args(["export", "--config", "c", "--input_shape", "1", "3", "-1", "-1",
                                    "--output_op", "none"])
    assert (args.input_shape, args.output_op) == ([1, 3, -1, -1], "none")
    args = cli.parser().parse_args(["infer", "--model_dir", "d", "--image_path", "i", "--device", "gpu",
                                    "--disable_mkldnn", "--cpu_threads", "2"])
    assert (args.device, args.disable_mkldnn, args.cpu_threads) == ("gpu", True, 2)


@pytest.mark.parametrize("argv, words", [
    (["train"], "the following arguments are required: --config"),
    (["val", "--config", "c"], "the following arguments are required: --model_path"),
    (["predict", "--config", "c", "--model_path", "m"], "the following arguments are required: --image_path"),
    (["infer", "--image_path", "i"], "the following arguments are required: --model_dir"),
    (["infer", "--model_dir", "d"], "the following arguments are required: --image_path"),
    (["train", "--config", "c", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["train", "--config", "c", "--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
    (["train", "--config", "c", "--amp_level", "O3"], "argument --amp_level: invalid choice: 'O3'"),
    (["export", "--config", "c", "--output_op", "sigmoid"], "argument --output_op: invalid choice: 'sigmoid'"),
    (["export", "--config", "c", "--input_shape", "1", "3"], "argument --input_shape: expected 4 arguments"),
    (["infer", "--model_dir", "d", "--image_path", "i", "--device", "auto"], "argument --device: invalid choice"),
    (["segment"], "invalid choice: 'segment'"),
])
def test_bad_flags_are_a_usage_error(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert words in capsys.readouterr().err


def test_no_command_prints_the_commands(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: ppcls seg [-h] COMMAND")
    assert "``ppcls seg train|val|predict|export|infer``: PaddleSeg's tools with this project's networks." in out
    for name, (_, _, help_text) in cli.COMMANDS.items():
        assert f"{name} " in out and help_text in " ".join(out.split())


def test_auto_device_is_the_gpu_only_with_cuda(monkeypatch):
    chosen = []
    monkeypatch.setattr(paddle, "set_device", chosen.append)
    monkeypatch.setattr(paddle, "is_compiled_with_cuda", lambda: False)
    assert cli._set_device("auto") == "cpu"
    monkeypatch.setattr(paddle, "is_compiled_with_cuda", lambda: True)
    assert cli._set_device("auto") == "gpu"
    assert cli._set_device("cpu") == "cpu"
    assert chosen == ["cpu", "gpu", "cpu"]


def _ns(**kw):
    import argparse
    return argparse.Namespace(**{"opts": None, **kw})


def test_config_errors_name_the_flag_or_the_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        cli._config(_ns(config=str(tmp_path / "none.yaml")))
    assert str(e.value) == f"--config: file not found: {tmp_path}/none.yaml"
    with pytest.raises(ConfigError) as e:
        cli._config(_ns(config=DEMO, opts=["batch_size=2", "iters"]))
    assert str(e.value) == "--opts: 'iters' is not key=value"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"_base_: {DEMO}\nmodel: null\n")  # PaddleSeg's sanity check fails (a RuntimeError)
    with pytest.raises(ConfigError) as e:
        cli._config(_ns(config=str(bad)))
    assert str(e.value).startswith(f"{bad}: Sanity check on the configuration file has failed.")
    assert "\n" not in str(e.value)
    cfg = cli._config(_ns(config=DEMO, opts=["batch_size=3"]), iters=5)
    assert (cfg.batch_size, cfg.iters) == (3, 5)


@pytest.mark.parametrize("message, line", [
    ("one reason", "one reason"),
    ("  first\n\n advice\n  the real reason  \n", "first the real reason"),
    ("same\nsame", "same"),
    (None, "KeyError"),
])
def test_a_paddleseg_failure_is_one_line(message, line):
    assert cli._one_line(KeyError() if message is None else ValueError(message)) == line


class Builder:
    """What _build reads of PaddleSeg's SegBuilder: one attribute per component, built on access."""

    def __init__(self, error):
        self.error = error

    @property
    def model(self):
        raise self.error


@pytest.mark.parametrize("error", [ValueError("bad\nadvice\nreason"), RuntimeError("r"), AssertionError("a"),
                                   KeyError("k"), TypeError("t"), FileNotFoundError("f")])
def test_a_component_that_cannot_be_built_is_one_line_naming_the_config(error):
    with pytest.raises(ConfigError) as e:
        cli._build({"builder": Builder(error)}, "model", "c.yaml")
    assert str(e.value) == f"c.yaml: cannot build model: {cli._one_line(error)}"


def test_a_builder_s_own_config_error_and_other_failures_pass_through():
    with pytest.raises(ConfigError) as e:
        cli._build({"builder": Builder(ConfigError("model.backbone: unknown"))}, "model", "c.yaml")
    assert str(e.value) == "model.backbone: unknown"
    with pytest.raises(ZeroDivisionError):
        cli._build({"builder": Builder(ZeroDivisionError())}, "model", "c.yaml")


def test_weights_and_images_that_are_not_there_are_named(tmp_path):
    for path in (None, "", str(tmp_path / "none.pdparams"), str(tmp_path)):
        with pytest.raises(ConfigError) as e:
            cli._load(None, path)
        assert str(e.value) == f"--model_path: file not found: {path}"
    with pytest.raises(ConfigError, match=r"^--resume: file not found: x$"):
        cli._load(None, "x", what="--resume")
    with pytest.raises(ConfigError) as e:
        cli._image_list(str(tmp_path / "none.png"))
    assert str(e.value) == f"--image_path: not found: {tmp_path}/none.png"
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ConfigError) as e:
        cli._image_list(str(tmp_path / "empty"))
    assert str(e.value) == f"--image_path: no images in {tmp_path}/empty"
    (tmp_path / "a.png").write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text("a.png\nb.png x\n")
    with pytest.raises(ConfigError) as e:
        cli._image_list(str(listing))
    assert str(e.value) == f"--image_path {listing}: image not found: {tmp_path}/b.png"
    assert cli._image_list(str(tmp_path / "a.png")) == ([str(tmp_path / "a.png")], None)


def test_commands_refuse_missing_inputs_before_building_a_model(tmp_path, monkeypatch):
    monkeypatch.setattr(paddle, "set_device", lambda device: None)
    with pytest.raises(ConfigError, match="^--model_path: file not found: "):
        cli.main(["predict", "--config", DEMO, "--model_path", str(tmp_path / "m.pdparams"), "--image_path", "x"])
    with pytest.raises(ConfigError, match="^--image_path: not found: "):
        cli.main(["infer", "--model_dir", str(tmp_path), "--image_path", str(tmp_path / "none")])


def test_help_says_what_each_flag_does(capsys):
    expected = {
        "train": ["--config CONFIG the PaddleSeg config (YAML)",
                  "--device {auto,cpu,gpu,xpu,npu,mlu} auto: the GPU when Paddle has CUDA, else the CPU",
                  "--opts OPTS [OPTS ...] override config keys: key=value ...",
                  "--do_eval evaluate at every save_interval, keep best_model", "--use_vdl log to VisualDL in save_dir",
                  "--resume_model RESUME_MODEL an iter_N directory of save_dir", "--batch_size BATCH_SIZE per process",
                  "--precision {fp32,fp16}", "--amp_level {O1,O2}",
                  "--repeats REPEATS repeat the train list this many times per epoch"],
        "val": ["--model_path MODEL_PATH model.pdparams of a checkpoint",
                "--aug_eval multi-scale / flip augmentation", "--is_slide sliding-window inference",
                "--crop_size CROP_SIZE CROP_SIZE window width height",
                "--stride STRIDE STRIDE window stride width height"],
        "predict": ["--image_path IMAGE_PATH an image, a directory or a list file",
                    "--custom_color CUSTOM_COLOR [CUSTOM_COLOR ...] r g b per class",
                    "--aug_pred multi-scale / flip augmentation"],
        "export": ["--model_path MODEL_PATH model.pdparams (none: the config's initial weights)",
                   "--input_shape INPUT_SHAPE INPUT_SHAPE INPUT_SHAPE INPUT_SHAPE N C H W (-1: any)",
                   "--output_op {argmax,softmax,none}"],
        "infer": ["--model_dir MODEL_DIR a directory written by `ppcls seg export`",
                  "--image_path IMAGE_PATH an image, a directory or a list file", "--device {cpu,gpu}"],
    }
    for command, lines in expected.items():
        with pytest.raises(SystemExit):
            cli.main([command, "-h"])
        text = " ".join(capsys.readouterr().out.split())
        assert text.startswith(f"usage: ppcls seg {command} [-h]")
        assert cli.COMMANDS[command][2] in text
        for line in lines:
            assert line in text, (command, line)


def test_main_reads_the_command_line_when_given_no_arguments(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["ppcls-seg"])
    assert cli.main() == 2
    assert capsys.readouterr().out.startswith("usage: ppcls seg")
    monkeypatch.setattr("sys.argv", ["ppcls-seg", "export"])
    with pytest.raises(SystemExit):
        cli.main()
    assert "the following arguments are required: --config" in capsys.readouterr().err


# -- the commands, with PaddleSeg's loops recorded (tests/test_paddleseg.py runs them for real, slow) -------------
@pytest.fixture(scope="module")
def digits(module_tmp):
    from ppcls.data.dataset.digit_canvas import make_digit_canvas_dataset
    root = module_tmp("seg_cli_digits")
    make_digit_canvas_dataset(str(root / "dataset" / "digit_canvas"), n_train=4, n_val=2, canvas=64, kinds=("seg",))
    return root


@pytest.fixture
def recorded(digits, monkeypatch):
    """In the demo dataset's folder; PaddleSeg's train / evaluate / predict, the export and the predictor
    record their arguments; the device is recorded, not set."""
    import paddleseg.core
    from paddleseg.utils import utils as seg_utils
    from ppcls.seg import deploy
    calls = {}
    monkeypatch.chdir(digits)
    monkeypatch.setattr(paddle, "set_device", lambda device: calls.setdefault("devices", []).append(device))
    for name in ("train", "evaluate", "predict"):
        monkeypatch.setattr(paddleseg.core, name, lambda *a, _name=name, **kw: calls.__setitem__(_name, (a, kw)))
    monkeypatch.setattr(seg_utils, "set_seed", lambda seed: calls.__setitem__("seed", seed))

    def convert_sync_batchnorm(model, device):
        calls["sync_bn_device"] = device  # SyncBatchNorm only on GPUs
        return model
    monkeypatch.setattr(seg_utils, "convert_sync_batchnorm", convert_sync_batchnorm)

    def export_model(*a):
        calls["export"] = a
        return ["model.json", "deploy.yaml"]
    monkeypatch.setattr(deploy, "export_model", export_model)

    class Predictor:
        def __init__(self, model_dir, **kw):
            calls["predictor"] = (model_dir, kw)

        def predict_one(self, path):
            return (np.arange(64 * 64).reshape(64, 64) % 3).astype("uint8")
    monkeypatch.setattr(deploy, "SegPredictor", Predictor)
    return calls


def test_train_hands_paddleseg_the_flags_and_the_built_components(recorded, tmp_path):
    assert cli.main(["train", "--config", DEMO, "--iters", "3", "--batch_size", "2", "--learning_rate", "0.5",
                     "--do_eval", "--repeats", "2", "--save_dir", str(tmp_path), "--save_interval", "2",
                     "--log_iters", "1", "--num_workers", "1", "--use_vdl", "--keep_checkpoint_max", "4",
                     "--precision", "fp16", "--amp_level", "O2", "--seed", "5"]) == 0
    (model, train_set), kw = recorded["train"]
    assert type(model).__name__ == "DLAUp" and len(train_set.file_list) == 8  # 4 images, repeated twice
    assert len(kw["val_dataset"].file_list) == 2
    assert kw["optimizer"]._learning_rate.end_lr == 0.5  # the config's warmup climbs to the rate asked for
    assert kw["losses"]["types"] and kw["test_config"] == {} and kw["to_static_training"] is False
    assert {k: kw[k] for k in ("save_dir", "iters", "batch_size", "resume_model", "save_interval", "log_iters",
                               "num_workers", "use_vdl", "keep_checkpoint_max", "precision", "amp_level")} == {
        "save_dir": str(tmp_path), "iters": 3, "batch_size": 2, "resume_model": None, "save_interval": 2,
        "log_iters": 1, "num_workers": 1, "use_vdl": True, "keep_checkpoint_max": 4, "precision": "fp16",
        "amp_level": "O2"}
    assert recorded["devices"] == ["cpu"] and recorded["sync_bn_device"] == "cpu" and recorded["seed"] == 5
    names = [p.name for p in model.parameters()] + [p.name for p in kw["optimizer"]._parameter_list]
    cli.main(["train", "--config", DEMO])
    (model, train_set), kw = recorded["train"]
    # every run names parameters alike, whatever was built before: a checkpoint's optimizer state then fits
    assert [p.name for p in model.parameters()] + [p.name for p in kw["optimizer"]._parameter_list] == names
    assert len(train_set.file_list) == 4 and kw["val_dataset"] is None and kw["iters"] == 300 and kw["batch_size"] == 8
    (tmp_path / "iter_2").mkdir()
    with pytest.raises(ConfigError) as e:
        cli.main(["train", "--config", DEMO, "--resume_model", str(tmp_path / "iter_2")])
    assert str(e.value) == f"--resume_model: {tmp_path}/iter_2 holds no model.pdparams (give an iter_N directory)"
    (tmp_path / "iter_2" / "model.pdparams").write_bytes(b"")
    cli.main(["train", "--config", DEMO, "--resume_model", str(tmp_path / "iter_2")])
    assert recorded["train"][1]["resume_model"] == str(tmp_path / "iter_2")
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"_base_: {DEMO}\nmodel:\n  type: DLAUpp\n")
    with pytest.raises(ConfigError, match=rf"^{typo}: cannot build model: .*DLAUpp"):
        cli.main(["train", "--config", str(typo)])


def test_train_checks_the_lists_it_will_read(recorded, tmp_path):
    bad = tmp_path / "val.txt"
    bad.write_text("images/none.png labels/none.png\n")
    opts = ["--opts", f"val_dataset.val_path={bad}"]
    cli.main(["train", "--config", DEMO] + opts)  # no evaluation: the val list is not read
    with pytest.raises(ConfigError, match=r"val\.txt:1: image file not found"):
        cli.main(["train", "--config", DEMO, "--do_eval"] + opts)


@pytest.fixture(scope="module")
def weights(digits, module_tmp):
    from paddleseg.cvlibs import Config, SegBuilder
    tmp_path = module_tmp("seg_cli_weights")
    cfg = Config(DEMO)
    with paddle.utils.unique_name.guard():
        model = SegBuilder(cfg).model
    paddle.seed(3)
    first = next(iter(model.state_dict()))
    state = model.state_dict()
    state[first] = paddle.full_like(state[first], 0.25)
    paddle.save(state, str(tmp_path / "model.pdparams"))
    return str(tmp_path / "model.pdparams"), first


def test_val_evaluates_the_loaded_weights_with_the_flags_over_the_config(recorded, weights):
    path, first = weights
    assert cli.main(["val", "--config", DEMO, "--model_path", path, "--flip_horizontal", "--num_workers", "2"]) == 0
    (model, dataset), kw = recorded["evaluate"]
    assert float(model.state_dict()[first].mean()) == 0.25
    assert len(dataset.file_list) == 2 and dataset.mode == "val"
    assert kw == {"num_workers": 2, "flip_horizontal": True}  # the config has no test_config
    with pytest.raises(ConfigError) as e:  # the val list is checked first, and named by the config's key
        cli.main(["val", "--config", DEMO, "--model_path", path, "--opts", "val_dataset.val_path="])
    assert str(e.value) == f"{DEMO}: val_dataset.val_path: required by type Dataset"
    cli.main(["val", "--config", DEMO, "--model_path", path, "--aug_eval", "--scales", "0.75", "1.0", "--is_slide",
              "--crop_size", "32", "32", "--stride", "16", "16", "--flip_vertical"])
    assert recorded["evaluate"][1] == {"num_workers": 0, "aug_eval": True, "scales": [0.75, 1.0], "is_slide": True,
                                       "crop_size": [32, 32], "stride": [16, 16], "flip_vertical": True}


def test_predict_hands_paddleseg_the_images_and_the_options(recorded, weights, digits, tmp_path):
    path, _ = weights
    images = str(digits / "dataset" / "digit_canvas" / "seg" / "images")
    assert cli.main(["predict", "--config", DEMO, "--model_path", path, "--image_path", images, "--save_dir",
                     str(tmp_path / "p"), "--custom_color", "1", "2", "3", "--aug_pred", "--is_slide",
                     "--crop_size", "32", "32", "--stride", "16", "16"]) == 0
    (model,), kw = recorded["predict"]
    assert type(model).__name__ == "DLAUp" and type(kw.pop("transforms")).__name__ == "Compose"
    assert recorded["devices"] == ["cpu"]
    assert len(kw.pop("image_list")) == 6
    assert kw == {"model_path": path, "image_dir": images, "save_dir": str(tmp_path / "p"), "aug_pred": True,
                  "custom_color": [1, 2, 3], "scales": 1.0, "flip_horizontal": False, "flip_vertical": False,
                  "is_slide": True, "crop_size": [32, 32], "stride": [16, 16]}
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"_base_: {DEMO}\nval_dataset:\n  transforms: [{{type: Normalise}}]\n")
    with pytest.raises(ConfigError, match=rf"^{typo}: cannot build val_transforms: .*Normalise"):
        cli.main(["predict", "--config", str(typo), "--model_path", path, "--image_path", images])


def test_export_hands_the_model_and_the_val_transforms_to_the_exporter(recorded, weights, tmp_path, capsys):
    path, first = weights
    assert cli.main(["export", "--config", DEMO, "--model_path", path, "--save_dir", str(tmp_path / "e"),
                     "--input_shape", "1", "3", "64", "64", "--output_op", "softmax"]) == 0
    model, save_dir, transforms, shape, op = recorded["export"]
    assert float(model.state_dict()[first].mean()) == 0.25
    assert (save_dir, shape, op) == (str(tmp_path / "e"), [1, 3, 64, 64], "softmax")
    assert transforms == [{"type": "Normalize"}]  # the config's val transforms
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"exported to {tmp_path}/e: model.json, deploy.yaml"
    assert recorded["devices"] == ["cpu"]
    nothing = tmp_path / "bare.yaml"  # no val transforms: the exported model still normalises its input
    nothing.write_text(f"_base_: {DEMO}\nval_dataset:\n  transforms: []\n")
    cli.main(["export", "--config", str(nothing), "--device", "cpu"])
    assert recorded["export"][2] == [{"type": "Normalize"}] and recorded["export"][3:] == (None, "argmax")
    resized = tmp_path / "resized.yaml"
    resized.write_text(f"_base_: {DEMO}\nval_dataset:\n  transforms: [{{type: Resize, target_size: [32, 32]}}, "
                       "{type: Normalize}]\n")
    cli.main(["export", "--config", str(resized)])
    assert recorded["export"][2] == [{"type": "Resize", "target_size": [32, 32]}, {"type": "Normalize"}]


def test_infer_writes_a_mask_and_an_overlay_per_image(recorded, tmp_path, capsys):
    import cv2
    from PIL import Image
    images = tmp_path / "imgs"
    (images / "sub").mkdir(parents=True)
    for rel in ("a.png", "sub/b.jpg"):
        cv2.imwrite(str(images / rel), np.full((64, 64, 3), 100, np.uint8))
    out = tmp_path / "out"
    assert cli.main(["infer", "--model_dir", "m", "--image_path", str(images), "--save_dir", str(out),
                     "--disable_mkldnn", "--cpu_threads", "2"]) == 0
    assert recorded["predictor"] == ("m", {"enable_mkldnn": False, "cpu_threads": 2, "use_gpu": False})
    for rel, name in (("a.png", "a"), ("sub/b.jpg", "sub/b")):
        mask = np.array(Image.open(out / "pseudo_color_prediction" / f"{name}.png"))
        np.testing.assert_array_equal(mask, np.arange(64 * 64).reshape(64, 64) % 3)
        assert cv2.imread(str(out / "added_prediction" / rel)).shape == (64, 64, 3)
    assert capsys.readouterr().out.strip() == (f"predicted 2 images with m: masks in {out}/pseudo_color_prediction, "
                                               f"overlays in {out}/added_prediction")
    cli.main(["infer", "--model_dir", "m", "--image_path", str(images / "a.png"), "--save_dir", str(out),
              "--device", "gpu"])  # one image: named by its file name; a second run writes over the first
    assert recorded["predictor"][1] == {"enable_mkldnn": True, "cpu_threads": None, "use_gpu": True}
    assert (out / "pseudo_color_prediction" / "a.png").exists()
