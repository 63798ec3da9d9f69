"""The PaddleSeg export's deploy.yaml and the predictor's checks (ppcls/seg/deploy.py): the one-line errors
of a bad export request or a bad export folder, the transforms built from deploy.yaml, and the output op of
an exported model. Written against the survivors of `bash tests/mutation.sh seg/deploy.py`."""
import numpy as np
import pytest
import yaml

pytest.importorskip("paddleseg")

import paddle  # noqa: E402

import ppcls.seg  # noqa: E402,F401
from ppcls.seg import deploy  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402


class _Scores(paddle.nn.Layer):
    """A PaddleSeg-style model: a list whose first entry is [N, 3, H, W] class scores."""

    def forward(self, x):
        return [paddle.concat([x[:, :1] * 2.0, x[:, 1:2], x[:, 2:3] - 1.0], axis=1), x]


def _error(fn, *args, **kw):
    with pytest.raises(ConfigError) as e:
        fn(*args, **kw)
    return str(e.value)


def test_mutation_kills_export_requests_are_checked_first(tmp_path):
    out = tmp_path / "out"
    assert _error(deploy.export_model, _Scores(), str(out), [], output_op="max") == \
        "--output_op: 'max'; choose one of argmax, softmax, none"
    assert _error(deploy.export_model, _Scores(), str(out), [], input_shape=[1, 3, 32]) == \
        "--input_shape: four numbers N C H W, got [1, 3, 32]"
    assert not out.exists()  # nothing written for a refused request


@pytest.mark.parametrize("output_op", ["argmax", "softmax", "none"])
def test_mutation_kills_output_ops_of_the_wrapped_model(output_op):
    x = paddle.rand([2, 3, 4, 5])
    scores = _Scores()(x)[0]
    got = deploy._WithOutputOp(_Scores(), output_op)(x)
    if output_op == "argmax":
        assert got.dtype == paddle.int32 and list(got.shape) == [2, 1, 4, 5]
        np.testing.assert_array_equal(got.numpy()[:, 0], scores.numpy().argmax(axis=1))
    elif output_op == "softmax":
        np.testing.assert_allclose(got.numpy(), paddle.nn.functional.softmax(scores, axis=1).numpy(), rtol=1e-6)
    else:
        np.testing.assert_array_equal(got.numpy(), scores.numpy())


def _export_dir(tmp_path, deploy_section, files=("model.json", "model.pdiparams")):
    for name in files:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(deploy_section))
    return str(tmp_path)


def test_mutation_kills_read_deploy_names_what_is_missing(tmp_path):
    assert _error(deploy.read_deploy, str(tmp_path)) == (
        f"--model_dir: {tmp_path} holds no deploy.yaml (export a model with `ppcls seg export`)")
    path = tmp_path / "deploy.yaml"
    for section in ({}, {"Deploy": "x"}, {"Deploy": {"model": "model.json"}}, {"Deploy": {"params": "p"}}):
        _export_dir(tmp_path, section)
        assert _error(deploy.read_deploy, str(tmp_path)) == f"{path}: no Deploy section with model and params"
    path.write_text("")  # an empty file
    assert _error(deploy.read_deploy, str(tmp_path)) == f"{path}: no Deploy section with model and params"
    _export_dir(tmp_path, {"Deploy": {"model": "gone.json", "params": "model.pdiparams"}})
    assert _error(deploy.read_deploy, str(tmp_path)) == f"{path}: Deploy.model gone.json not found in {tmp_path}"
    _export_dir(tmp_path, {"Deploy": {"model": "model.json", "params": "gone.pdiparams"}})
    assert _error(deploy.read_deploy, str(tmp_path)) == \
        f"{path}: Deploy.params gone.pdiparams not found in {tmp_path}"
    section = {"Deploy": {"model": "model.json", "params": "model.pdiparams", "output_op": "argmax"}}
    assert deploy.read_deploy(_export_dir(tmp_path, section)) == section["Deploy"]


def test_mutation_kills_transforms_are_paddleseg_s(tmp_path):
    compose = deploy.build_transforms([{"type": "Resize", "target_size": [8, 6]},
                                       {"type": "Normalize", "mean": [0.0] * 3, "std": [1.0] * 3}])
    from paddleseg.transforms import Normalize, Resize
    assert [type(t) for t in compose.transforms] == [Resize, Normalize]
    assert compose.transforms[0].target_size == [8, 6]
    assert deploy.build_transforms(None).transforms == []
    spec = [{"type": "Resize"}, {"type": "Resise"}]
    assert _error(deploy.build_transforms, spec) == "transforms[1].type: unknown transform 'Resise'"
    assert spec == [{"type": "Resize"}, {"type": "Resise"}]  # the config's list is left as it was
    assert _error(deploy.build_transforms, [{"target_size": 3}]) == "transforms[0].type: unknown transform None"


def test_mutation_kills_the_predictor_needs_an_argmax_export(tmp_path):
    model_dir = _export_dir(tmp_path, {"Deploy": {"model": "model.json", "params": "model.pdiparams",
                                                  "output_op": "softmax"}})
    assert _error(deploy.SegPredictor, model_dir) == \
        f"{model_dir}: exported with output_op softmax; the predictor needs argmax"


# -- an export and its predictor ---------------------------------------------------------------------------------
class _Conv(paddle.nn.Layer):
    """A one-layer PaddleSeg-style model with fixed weights: class 1 wherever red is above blue, class 2 where
    blue is above red by more than 0.5."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 3, 1)
        w = np.zeros([3, 3, 1, 1], "float32")
        w[1, 0], w[1, 2] = 1.0, -1.0
        w[2, 2], w[2, 0] = 1.0, -1.0
        self.conv.weight.set_value(w)
        self.conv.bias.set_value(np.array([0.0, 0.0, -0.5], "float32"))

    def forward(self, x):
        return [self.conv(x)]


NORMALIZE = [{"type": "Normalize", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}]


def _image(path, size=(12, 8)):
    from PIL import Image
    rgb = np.zeros((size[1], size[0], 3), np.uint8)
    rgb[:, : size[0] // 2, 0] = 255  # left half red: class 1
    rgb[:, size[0] // 2:, 2] = 255  # right half blue: class 2
    Image.fromarray(rgb).save(path)
    return str(path)


def test_mutation_kills_export_writes_the_model_and_deploy_yaml(tmp_path):
    out = tmp_path / "nested" / "export"
    files = deploy.export_model(_Conv(), str(out), NORMALIZE)
    assert files[1:] == ["model.pdiparams", "deploy.yaml"] and files[0] in ("model.json", "model.pdmodel")
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    section = yaml.safe_load((out / "deploy.yaml").read_text(encoding="utf-8"))
    assert section == {"Deploy": {"model": files[0], "params": "model.pdiparams", "transforms": NORMALIZE,
                                  "output_op": "argmax", "input_shape": [-1, 3, -1, -1]}}
    assert list(section["Deploy"]) == ["model", "params", "transforms", "output_op", "input_shape"]
    # again into the same folder, with fixed sides and another output op
    deploy.export_model(_Conv(), str(out), [], input_shape=[None, 3, 8, "12"], output_op="none")
    section = yaml.safe_load((out / "deploy.yaml").read_text(encoding="utf-8"))["Deploy"]
    assert section["input_shape"] == [-1, 3, 8, 12] and section["output_op"] == "none"
    assert section["transforms"] == []


def test_mutation_kills_predictions_come_back_at_each_image_s_size(tmp_path):
    out = str(tmp_path / "export")
    deploy.export_model(_Conv(), out, [{"type": "Resize", "target_size": [16, 16]}] + NORMALIZE)
    predictor = deploy.SegPredictor(out, enable_mkldnn=False, cpu_threads=1)
    masks = predictor.predict([_image(tmp_path / "a.png"), _image(tmp_path / "b.png", size=(20, 6))])
    assert [m.shape for m in masks] == [(8, 12), (6, 20)] and all(m.dtype == np.uint8 for m in masks)
    for m in masks:
        w = m.shape[1]
        assert (m[:, : w // 2 - 1] == 1).all() and (m[:, w // 2 + 1:] == 2).all()
    with pytest.raises(ConfigError) as e:
        predictor.predict_one(str(tmp_path / "none.png"))
    assert str(e.value) == f"image not found: {tmp_path / 'none.png'}"


def test_mutation_kills_a_fixed_size_export_names_a_wrong_image_size(tmp_path):
    out = str(tmp_path / "export")
    deploy.export_model(_Conv(), out, NORMALIZE, input_shape=[1, 3, 8, 12])
    predictor = deploy.SegPredictor(out, enable_mkldnn=False)
    assert (predictor.predict_one(_image(tmp_path / "a.png"))[:, :5] == 1).all()
    image = _image(tmp_path / "b.png", size=(10, 8))
    with pytest.raises(ConfigError) as e:
        predictor.predict_one(image)
    assert str(e.value) == (f"{image}: 10x8 after the transforms, but the model was exported for 12x8 (export with "
                            f"--input_shape -1 3 -1 -1 or resize)")
    # a side of one pixel is a fixed side too
    deploy.export_model(_Conv(), out, NORMALIZE, input_shape=[1, 3, 1, 12])
    with pytest.raises(ConfigError, match="exported for 12x1"):
        deploy.SegPredictor(out, enable_mkldnn=False).predict_one(_image(tmp_path / "c.png", size=(12, 2)))


def test_mutation_kills_the_export_s_transforms_and_default_output_op_are_used(tmp_path):
    out = tmp_path / "export"
    deploy.export_model(_Conv(), str(out), [{"type": "Resize", "target_size": [12, 8]}] + NORMALIZE,
                        input_shape=[1, 3, 8, 12])
    section = yaml.safe_load((out / "deploy.yaml").read_text(encoding="utf-8"))
    del section["Deploy"]["output_op"]  # PaddleSeg's own deploy.yaml files may leave it out: argmax
    (out / "deploy.yaml").write_text(yaml.safe_dump(section))
    mask = deploy.SegPredictor(str(out), enable_mkldnn=False).predict_one(_image(tmp_path / "a.png", size=(20, 6)))
    assert mask.shape == (6, 20) and (mask[:, :9] == 1).all() and (mask[:, 11:] == 2).all()


def test_mutation_kills_a_tracing_error_with_fixed_sides_is_not_hidden(tmp_path):
    class SidesChecked(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 2, 1)

        def forward(self, x):
            if x.shape[2] % 32:
                raise ValueError(f"sides must be multiples of 32, got {x.shape[2]}")
            return [self.conv(x)]
    with pytest.raises(ValueError, match="got 1"):
        deploy.export_model(SidesChecked(), str(tmp_path / "e"), [], [-1, 3, 1, 64])


def test_mutation_kills_a_onednn_failure_names_both_ways_out(tmp_path):
    """Paddle 3.3's oneDNN kernels raise NotImplementedError on some graphs traced with unknown sides (ReXUNet's
    x2 up-sampling): one line naming --disable_mkldnn and --input_shape. A stand-in predictor raises it here."""
    import types
    out = str(tmp_path / "export")
    deploy.export_model(_Conv(), out, NORMALIZE)
    predictor = deploy.SegPredictor(out, enable_mkldnn=False)

    def run():
        raise NotImplementedError("  (Unimplemented) the attribute scale of interpolate is not supported\nmore")
    # the real predictor stays referenced: its input and output handles point into it
    predictor.predictor = types.SimpleNamespace(run=run, real=predictor.predictor)
    with pytest.raises(ConfigError) as e:
        predictor.predict_one(_image(tmp_path / "a.png"))
    assert str(e.value) == ("Paddle Inference with oneDNN cannot run this export ((Unimplemented) the attribute scale "
                            "of interpolate is not supported); predict with --disable_mkldnn, or export with "
                            "--input_shape -1 3 H W")
