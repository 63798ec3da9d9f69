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
    # the input is named x: what code driving Paddle Inference directly asks for (get_input_handle("x"))
    config = paddle.inference.Config(os.path.join(out, "inference.json"), os.path.join(out, "inference.pdiparams"))
    assert paddle.inference.create_predictor(config).get_input_names() == ["x"]
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
    bad = {"Infer": {"transforms": [{"ResizeImage": {"size": 4}}, {"CropImage": {"size": 4}, "ToCHWImage": None}]}}
    with pytest.raises(ConfigError, match=r"^Infer\.transforms\.1: expected a one-key mapping"):
        ex.deploy_transforms(bad)  # the op's place in the config is named
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


@pytest.fixture
def ppcls_infos():
    """The messages the ppcls logger logs at INFO and above during the test (it does not propagate)."""
    import logging
    from ppcls.utils.logger import logger
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_inference_yml_keeps_the_given_order_and_non_ascii_labels_readable(tmp_path):
    meta = {"model": "Tiny", "PostProcess": {"Topk": {"topk": 2, "label_list": ["猫", "狗"]}}}
    out = ex.export_model(Classifier(), str(tmp_path / "m"), [3, 8, 8], meta=meta)
    text = open(os.path.join(out, "inference.yml"), encoding="utf-8").read()
    assert "- 猫" in text and "\\u" not in text, "label names written as escapes: unreadable to a person"
    assert list(yaml.safe_load(text)) == ["model", "PostProcess", "image_shape", "dense_output", "softmax"]


def _image(h=12, w=10, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)


def test_portable_normalize_spreads_a_scalar_mean_and_std_over_the_channels():
    from ppcls.inference.pipeline import Preprocess
    ops = [{"ResizeImage": {"size": 8}}, {"NormalizeImage": {"mean": 0.5, "std": 0.25, "order": "hwc"}}]
    recorded = ex.portable_transforms(ops, [3, 8, 8])
    assert recorded[1] == {"NormalizeImage": {"mean": [0.5] * 3, "std": [0.25] * 3, "scale": 1 / 255, "order": ""}}
    np.testing.assert_allclose(Preprocess(recorded)(_image()), Preprocess(ops + [{"ToCHWImage": None}])(_image()),
                               rtol=1e-6)


def test_portable_ops_keep_what_no_reader_could_run_so_the_predictor_names_it():
    """A bad NormalizeImage order or resize backend is recorded as the config gives it: the predictor then
    refuses it by name, instead of the export silently deploying something else."""
    from ppcls.inference.pipeline import Preprocess
    for op, key in (({"NormalizeImage": {"order": "CHW"}}, "order"),
                    ({"ResizeImage": {"size": 8, "interpolation": 2, "backend": "skimage"}}, "backend")):
        recorded = ex.portable_transforms([op])
        name = next(iter(op))
        assert [r[name][key] for r in recorded if name in r] == [op[name][key]]
        with pytest.raises(ConfigError, match=key):
            Preprocess(recorded)


@pytest.mark.parametrize("resize, recorded", [
    ({"resize_short": 10}, {"resize_short": 10}),  # no interpolation: nothing to translate
    ({"size": 8, "interpolation": "bilinear", "backend": "pil"},
     {"size": 8, "interpolation": "BILINEAR", "backend": "pil"}),
    ({"size": 8, "interpolation": 1, "backend": "pil"}, {"size": 8, "interpolation": "BILINEAR", "backend": "pil"}),
    ({"size": 8, "interpolation": "area", "backend": "pil"}, {"size": 8, "interpolation": "area", "backend": "pil"}),
    ({"size": 8, "interpolation": "area"}, {"size": 8, "interpolation": "AREA"}),
])
def test_portable_resize_names_the_interpolation_for_its_backend(resize, recorded):
    """PaddleX names interpolations per backend (PIL's BILINEAR is cv2's LINEAR); PIL's box filter has no
    name both read, so it stays as given."""
    from ppcls.inference.pipeline import Preprocess
    ops = [{"ResizeImage": resize}, {"NormalizeImage": None}]
    got = ex.portable_transforms(ops, [3, 8, 8])
    assert got[0] == {"ResizeImage": recorded}
    np.testing.assert_allclose(Preprocess(got)(_image()), Preprocess(ops)(_image()), rtol=1e-6)


def test_portable_ops_are_copies_of_the_config_s():
    ops = [{"CropImage": {"size": [4, 4]}}, {"NormalizeImage": {"mean": [0.5, 0.5, 0.5], "order": "hwc"}}]
    recorded = ex.portable_transforms(ops)
    recorded[0]["CropImage"]["size"][0] = 9
    recorded[1]["NormalizeImage"]["mean"][0] = 9
    assert ops == [{"CropImage": {"size": [4, 4]}}, {"NormalizeImage": {"mean": [0.5, 0.5, 0.5], "order": "hwc"}}]


def test_portable_errors_name_the_config_key_of_the_op():
    with pytest.raises(ConfigError, match=r"^PreProcess\.transform_ops\.0\.ResizeImage\.interpolation: "):
        ex.portable_transforms([{"ResizeImage": {"size": 8, "interpolation": "bicubc"}}])  # inference.yml's key
    with pytest.raises(ConfigError) as e:
        ex.portable_transforms([{"NormalizeImage": None}, {"ResizeImage": {"size": 8, "interpolation": "bicubc"}}],
                               where="Infer.transforms")
    assert str(e.value) == "Infer.transforms.1.ResizeImage.interpolation: unknown 'bicubc' (did you mean 'bicubic'?)"
    # deploy_meta given the ops of an inference.yml names that file's key
    with pytest.raises(ConfigError) as e:
        ex.deploy_meta({"Arch": {"name": "Tiny"}}, [{"NormalizeImage": {"scale": "1/x"}}])
    assert str(e.value).startswith("PreProcess.transform_ops.0.NormalizeImage.scale: ")


DLA_CONFIG = {"Global": {"image_shape": [3, 32, 32]}, "Arch": {"name": "DLA46_c", "class_num": 3}}


def test_export_loads_global_pretrained_model_and_names_it_when_missing(tmp_path, ppcls_infos):
    from ppcls.arch import build_model
    paddle.seed(7)
    trained = build_model({"name": "DLA46_c", "class_num": 3})
    paddle.save(trained.state_dict(), str(tmp_path / "w.pdparams"))
    config = {**DLA_CONFIG, "Global": dict(DLA_CONFIG["Global"], pretrained_model=str(tmp_path / "w"),
                                           save_inference_dir=str(tmp_path / "inf")),
              "Infer": {"transforms": [NORM_HWC]}}
    out = ex.export(config, probe=False)
    assert out == str(tmp_path / "inf")
    x = np.random.RandomState(0).rand(2, 3, 32, 32).astype("float32")
    want = paddle.nn.functional.softmax(eager(trained, x)).numpy()
    np.testing.assert_allclose(Predictor({}, out).run(x), want, rtol=1e-4, atol=1e-6)
    # Infer.transforms given: nothing to say about the evaluation's preprocessing
    assert not [m for m in ppcls_infos if "Infer.transforms is not set" in m]
    config["Global"]["pretrained_model"] = str(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"^Global\.pretrained_model: "):
        ex.export(config, probe=False)


def test_export_of_a_distillation_model_deploys_its_infer_model_alone(tmp_path, ppcls_infos):
    arch = {"name": "DistillationModel", "class_num": 3, "infer_model_name": "Student",
            "models": [{"Teacher": {"name": "DLA46_c"}}, {"Student": {"name": "DLA46x_c"}}]}
    config = {"Global": {"image_shape": [3, 32, 32], "save_inference_dir": str(tmp_path / "inf")}, "Arch": arch,
              **eval_config([NORM_HWC])}
    out = ex.export(config, probe=False)
    meta = yaml.safe_load(open(os.path.join(out, "inference.yml")))
    assert meta["model"] == meta["Global"]["model_name"] == "DLA46x_c"
    assert Predictor({}, out).run(np.zeros((1, 3, 32, 32), "float32")).shape == (1, 3)
    assert "DistillationModel: exporting Student (DLA46x_c, Arch.infer_model_name) alone" in ppcls_infos
    assert any(m.startswith("Infer.transforms is not set: inference.yml records the evaluation's preprocessing "
                            "(DataLoader.Eval.dataset.transform_ops without DecodeImage") for m in ppcls_infos)


@pytest.fixture
def recorded_probe(monkeypatch):
    """export()'s backend probe replaced by a recorder (the probe itself, which converts to ONNX and times
    both backends for seconds, is tested end to end in tests/test_backend.py): what it was called on and what the
    folder held then. The model is the tiny Classifier, so an export takes a fraction of a second."""
    from ppcls.inference import probe
    calls = []

    def probe_backends(model_dir, threads=0):
        calls.append({"dir": model_dir, "threads": threads,
                      "onnx": os.path.exists(os.path.join(model_dir, "inference.onnx")),
                      "exported": os.path.isfile(os.path.join(model_dir, "inference.yml"))})
        return {"threads": threads or 2, "reason": "faster in the export probe at batch 1: x vs y img/s",
                "backend": "onnxruntime", "by_batch": {"1": "onnxruntime", "8": "paddle"}}

    monkeypatch.setattr(probe, "probe_backends", probe_backends)
    monkeypatch.setattr(ex, "build_model", lambda arch, training: Classifier())
    return calls


def test_export_probes_the_backends_of_the_fresh_export_when_asked(tmp_path, recorded_probe, ppcls_infos):
    out = str(tmp_path / "inf")
    os.makedirs(out)
    open(os.path.join(out, "inference.onnx"), "w").close()  # an earlier export's conversion
    config = {"Global": {"image_shape": [3, 8, 8], "backend_probe": True, "cpu_threads": "3",
                         "save_inference_dir": out},
              "Arch": {"name": "Tiny"}, "Infer": {"transforms": [NORM_HWC], "infer_imgs": "demo/images"}}
    ex.export(config)  # probe=None: Global.backend_probe decides
    # PaddleClas's deploy config written beside it predicts the config's images by default
    assert yaml.safe_load(open(os.path.join(out, "inference_cls.yaml")))["Global"]["infer_imgs"] == "demo/images"
    assert recorded_probe == [{"dir": out, "threads": 3, "onnx": False, "exported": True}]
    assert (f"backend probe (3 threads): faster in the export probe at batch 1: x vs y img/s; backend: auto will use "
            f"onnxruntime (per batch: 1: onnxruntime, 8: Paddle Inference), stored in {out}/backend.json"
            ) in ppcls_infos
    assert f'Export succeeded! The inference model exported has been saved in "{out}/inference".' in ppcls_infos
    ex.export(config, probe=False)  # the caller's word wins over the config's
    del config["Global"]["backend_probe"], config["Global"]["cpu_threads"], config["Global"]["image_shape"]
    ex.export(config)
    assert len(recorded_probe) == 1
    assert yaml.safe_load(open(os.path.join(out, "inference.yml")))["image_shape"] == [3, 224, 224]  # the default
    ex.export(config, probe=True)
    assert recorded_probe[1]["threads"] == 0  # no Global.cpu_threads: the probe takes the available cores
    config["Infer"]["transforms"] = [{"ResizeImage": {"size": 8, "interpolation": "bicubc"}}]
    with pytest.raises(ConfigError, match=r"^Infer\.transforms\.0\.ResizeImage\.interpolation: unknown 'bicubc'"):
        ex.export(config, probe=False)


def test_export_deploys_the_output_global_infer_output_index_names(tmp_path, monkeypatch):
    dense = Dense()
    monkeypatch.setattr(ex, "build_model", lambda arch, training: dense)
    config = {"Global": {"image_shape": [3, 8, 8], "infer_output_index": 1, "save_inference_dir": str(tmp_path)},
              "Arch": {"name": "Tiny"}, "Infer": {"transforms": [NORM_HWC]}}
    out = ex.export(config, probe=False)
    x = np.random.RandomState(0).rand(1, 3, 8, 8).astype("float32")
    np.testing.assert_allclose(Predictor({}, out).run(x), eager(dense, x)[1].numpy(), rtol=1e-4, atol=1e-6)
