"""ppcls.inference.export behaviour a deployment relies on, tested in-process on tiny models (found open by
mutation testing, bash tests/mutation.sh inference/export.py): what the exported graph returns (softmaxed
logits, or the chosen output of a dense model, for any batch size), what inference.yml records, the
preprocessing recorded from the Infer or the evaluation transforms, and the export's defaults."""
import os

import numpy as np
import paddle
import pytest
import yaml

from ppcls.inference import export as ex
from ppcls.inference.predictor import Predictor
from ppcls.utils.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class Classifier(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        paddle.seed(0)
        self.conv = paddle.nn.Conv2D(3, 4, 3, padding=1)
        self.fc = paddle.nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(paddle.mean(self.conv(x), axis=[2, 3])) * 3


class Dense(paddle.nn.Layer):
    """A segmentation-like model: several outputs, the finest first."""

    def __init__(self):
        super().__init__()
        paddle.seed(1)
        self.conv = paddle.nn.Conv2D(3, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return [y, paddle.nn.functional.avg_pool2d(y, 2)]


def eager(model, x):
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x))


def test_the_export_model_picks_the_output_a_deployment_needs():
    x = np.random.RandomState(0).rand(2, 3, 8, 8).astype("float32")
    clf, dense = Classifier(), Dense()
    logits = eager(clf, x).numpy()
    wrapped = ex.ExportModel(clf)  # defaults: softmax over the classes, output 0
    assert wrapped.add_softmax is True and wrapped.output_index == 0
    np.testing.assert_allclose(eager(wrapped, x).numpy(), paddle.nn.functional.softmax(paddle.to_tensor(logits)).numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(eager(ex.ExportModel(clf, add_softmax=False), x).numpy(), logits, rtol=1e-5)
    outs = [o.numpy() for o in eager(dense, x)]
    np.testing.assert_allclose(eager(ex.ExportModel(dense), x).numpy(), outs[0], rtol=1e-5)
    np.testing.assert_allclose(eager(ex.ExportModel(dense, output_index=1), x).numpy(), outs[1], rtol=1e-5)


def test_an_exported_classifier_gives_softmaxed_logits_for_any_batch(tmp_path):
    out = str(tmp_path / "m")
    os.makedirs(out)
    with open(os.path.join(out, "backend.json"), "w") as f:
        f.write("{}")  # an earlier export's probe: it measured another model
    clf = Classifier()
    assert ex.export_model(clf, out, (3, 8, 8), meta={"model": "Tiny"}) == out
    assert not os.path.exists(os.path.join(out, "backend.json"))
    assert os.path.isfile(os.path.join(out, "inference.pdiparams"))
    meta = yaml.safe_load(open(os.path.join(out, "inference.yml")))
    assert meta == {"model": "Tiny", "image_shape": [3, 8, 8], "dense_output": False, "softmax": True}
    predictor = Predictor({}, out)
    for n in (1, 3):
        x = np.random.RandomState(n).rand(n, 3, 8, 8).astype("float32")
        want = paddle.nn.functional.softmax(eager(clf, x)).numpy()
        np.testing.assert_allclose(predictor.run(x), want, rtol=1e-4, atol=1e-6)


def test_an_exported_dense_model_gives_the_chosen_output_unsoftmaxed(tmp_path):
    dense = Dense()
    x = np.random.RandomState(0).rand(2, 3, 8, 8).astype("float32")
    outs = [o.numpy() for o in eager(dense, x)]
    out = ex.export_model(dense, str(tmp_path / "a"), [3, 8, 8], add_softmax=True, output_index=1)
    meta = yaml.safe_load(open(os.path.join(out, "inference.yml")))
    assert meta == {"image_shape": [3, 8, 8], "dense_output": True, "softmax": False}
    np.testing.assert_allclose(Predictor({}, out).run(x), outs[1], rtol=1e-4, atol=1e-6)
    # a classifier exported without softmax: raw logits, and inference.yml says so
    clf = Classifier()
    out = ex.export_model(clf, str(tmp_path / "b"), [3, 8, 8], add_softmax=False)
    assert yaml.safe_load(open(os.path.join(out, "inference.yml")))["softmax"] is False
    np.testing.assert_allclose(Predictor({}, out).run(x), eager(clf, x).numpy(), rtol=1e-4, atol=1e-5)


NORM_HWC = {"NormalizeImage": {"scale": 0.5, "mean": [0.1, 0.2, 0.3], "std": [1, 2, 3], "order": "hwc"}}


def eval_config(ops):
    return {"DataLoader": {"Eval": {"dataset": {"transform_ops": ops}}}}


def test_ops_end_chw_with_a_tochw_or_a_chw_normalize():
    assert ex._ends_chw([{"ToCHWImage": None}])
    assert ex._ends_chw([{"NormalizeImage": None}])  # order chw by default
    assert ex._ends_chw([{"NormalizeImage": {"order": "chw"}}, {"ResizeImage": {"size": 4}}])
    assert not ex._ends_chw([NORM_HWC, {"ResizeImage": {"size": 4}}])
    assert not ex._ends_chw([{"NormalizeImage": {"order": ""}}])
    assert not ex._ends_chw([])


def test_deploy_transforms_copies_the_ops_and_refuses_what_the_predictor_cannot_decode():
    config = eval_config([{"DecodeImage": {"to_rgb": True, "channel_first": False}}, NORM_HWC])
    ops, where = ex.deploy_transforms(config)
    assert (ops, where) == ([NORM_HWC, {"ToCHWImage": None}], "DataLoader.Eval.dataset.transform_ops")
    ops[0]["NormalizeImage"]["scale"] = 9
    assert NORM_HWC["NormalizeImage"]["scale"] == 0.5, "the recorded ops share the config's dicts"
    for key, value in (("to_rgb", False), ("channel_first", True), ("reduce", 2)):
        bad = {"Infer": {"transforms": [{"ResizeImage": {"size": 4}}, {"DecodeImage": {key: value}}]}}
        with pytest.raises(ConfigError) as e:
            ex.deploy_transforms(bad)
        want = dict(ex.PREDICTOR_DECODE)[key]
        assert str(e.value) == (f"Infer.transforms.1.DecodeImage.{key}: {value!r} cannot be deployed: the predictor "
                                f"and the service decode every image with {key}: {want!r}")
    with pytest.raises(ConfigError) as e:
        ex.deploy_transforms({"Infer": None, "DataLoader": {"Eval": None}})
    assert str(e.value) == ("Infer.transforms and DataLoader.Eval.dataset.transform_ops: neither is set, so the export "
                            "cannot record the preprocessing the model expects in inference.yml; give one of them")


def test_deploy_meta_records_the_model_the_preprocessing_and_topk(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("0 cat\n2 bird\n")
    config = {"Arch": {"name": "Tiny"}, "Global": {"image_shape": [3, 8, 6]},
              "Infer": {"transforms": [NORM_HWC, {"ToCHWImage": None}],
                        "PostProcess": {"name": "Topk", "topk": "3", "class_id_map_file": str(labels)}}}
    meta = ex.deploy_meta(config)
    assert meta["model"] == meta["Global"]["model_name"] == "Tiny"
    assert meta["PostProcess"] == {"Topk": {"topk": 3, "label_list": ["cat", "", "bird"]}}
    assert meta["PreProcess"]["transform_ops"] == ex.portable_transforms([NORM_HWC, {"ToCHWImage": None}], [3, 8, 6])
    assert meta["PreProcess"]["transform_ops"][0] == {"ResizeImage": {"size": [6, 8]}}
    # no Infer.PostProcess: top 5, no labels; no image_shape: 224
    meta = ex.deploy_meta({"Arch": {"name": "Tiny"}, **eval_config([NORM_HWC])})
    assert meta["PostProcess"] == {"Topk": {"topk": 5, "label_list": None}}
    assert meta["PreProcess"]["transform_ops"][0] == {"ResizeImage": {"size": [224, 224]}}
    meta = ex.deploy_meta({"Arch": {"name": "Tiny"}, "Infer": {"PostProcess": {"name": "Topk"}}}, [NORM_HWC])
    assert meta["PostProcess"]["Topk"]["topk"] == 5


def test_export_defaults_and_what_it_says(tmp_path, monkeypatch, ppcls_warnings):
    """A registered model end to end: without pretrained weights it warns; Arch.infer_add_softmax and
    Global.infer_output_index reach the graph; without save_inference_dir the export goes to ./inference."""
    monkeypatch.chdir(tmp_path)
    config = {"Global": {"image_shape": [3, 32, 32]}, "Arch": {"name": "DLA46_c", "class_num": 3,
                                                                  "infer_add_softmax": False},
              **eval_config([{"DecodeImage": None}, NORM_HWC])}
    out = ex.export(config, probe=False)
    assert out == "./inference" and os.path.isfile(tmp_path / "inference" / "inference.yml")
    assert "Global.pretrained_model is not set: exporting randomly initialised weights" in ppcls_warnings
    meta = yaml.safe_load(open(tmp_path / "inference" / "inference.yml"))
    assert meta["softmax"] is False and meta["image_shape"] == [3, 32, 32] and meta["model"] == "DLA46_c"
    assert config["Arch"]["infer_add_softmax"] is False, "the export changed the caller's config"
    x = np.random.RandomState(0).rand(2, 3, 32, 32).astype("float32")
    scores = Predictor({}, out).run(x)
    assert scores.shape == (2, 3) and not np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)
