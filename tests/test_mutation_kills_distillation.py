"""DistillationModel and DistillationTopkAcc behaviour that tests/test_distillation.py's unit tests left open
(its run-based tests train a model and are not part of the mutation runs), found by mutation testing (bash
tests/mutation.sh arch/distillation.py metric/distillation.py): the errors of Arch.models, where Arch.class_num
and the weights go, freezing, the class count, loading checkpoints, and the static-graph forward. Small
models registered for the test stand in for the zoo (removed again afterwards)."""
import logging

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from ppcls.arch.distillation import SSLD_WHY, DistillationModel, infer_class_num, parse_arch
from ppcls.arch.registry import MODELS
from ppcls.metric.distillation import DistillationTopkAcc
from ppcls.utils import config as config_module
from ppcls.utils.errors import ConfigError


class TinyNet(nn.Layer):
    def __init__(self, class_num=3, width=4):
        super().__init__()
        self.conv = nn.Conv2D(3, width, 1)
        self.bn = nn.BatchNorm2D(width)
        self.fc = nn.Linear(width, class_num)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean(axis=[2, 3]))


class TinyPair(TinyNet):
    """Returns (logits, features): a model of several outputs."""

    def forward(self, x):
        feat = self.bn(self.conv(x)).mean(axis=[2, 3])
        return self.fc(feat), feat


def tiny_fixed(width=4):
    return TinyNet(class_num=6, width=width)  # no class_num option


def tiny_required(class_num, width=4):
    return TinyNet(class_num=class_num, width=width)  # class_num without a default


@pytest.fixture(autouse=True)
def tiny_models(monkeypatch):
    for name, obj in (("KDTiny", TinyNet), ("KDTinyPair", TinyPair), ("KDTinyFixed", tiny_fixed),
                      ("KDTinyRequired", tiny_required)):
        monkeypatch.setitem(MODELS._entries, name, obj)


@pytest.fixture
def log_lines():
    """The messages the ppcls logger gives during the test."""
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    log = logging.getLogger("ppcls")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield lambda: [r.getMessage() for r in records]
    log.removeHandler(handler)
    log.setLevel(level)


def models(teacher=None, student=None):
    return [{"Teacher": dict({"name": "KDTiny"}, **(teacher or {}))},
            {"Student": dict({"name": "KDTiny"}, **(student or {}))}]


def arch(**kw):
    return dict({"models": models(), "infer_model_name": "Student"}, **kw)


def error_of(fn, *args, **kwargs):
    with pytest.raises(ConfigError) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


def x_batch(n=2, seed=0):
    return paddle.to_tensor(np.random.RandomState(seed).randn(n, 3, 4, 4).astype("float32"))


# -- Arch.models ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry,expected", [
    ({"Teach.er": {"name": "KDTiny"}}, "Arch.models[0]: 'Teach.er' cannot name a model (a non-empty string without "
                                       "'.': it prefixes the parameter names)"),
    ({"": {"name": "KDTiny"}}, "Arch.models[0]: '' cannot name a model (a non-empty string without '.': it prefixes "
                               "the parameter names)"),
    ({1: {"name": "KDTiny"}}, "Arch.models[0]: 1 cannot name a model (a non-empty string without '.': it prefixes "
                              "the parameter names)"),
    ({"Teacher": {"pretrained": True}}, "Arch.models[0].Teacher.name: required (the model to build, e.g. DLA34)"),
    ({"Teacher": "KDTiny"}, "Arch.models[0].Teacher.name: required (the model to build, e.g. DLA34)"),
    ({"Teacher": {"name": "DistillationModel"}}, "Arch.models[0].Teacher.name: a DistillationModel cannot hold "
                                                 "another one"),
    ({"Teacher": {"name": "KDTiny", "dropout_prob": 0.2}},
     "Arch.models[0].Teacher.dropout_prob: PaddleClas's MobileNet option; give KDTiny's own option instead (its "
     "options: class_num, width)"),
    ({"Teacher": {"name": "KDTiny"}, "Student": {"name": "KDTiny"}},
     "Arch.models[0]: expected a one-key mapping {Name: {name: <model>, ...}}, got "
     "{'Teacher': {'name': 'KDTiny'}, 'Student': {'name': 'KDTiny'}}"),
])
def test_model_entries_are_refused_with_the_culprit(entry, expected):
    value = {"models": [entry, {"Student": {"name": "KDTiny"}}], "infer_model_name": "Student"}
    assert error_of(parse_arch, value) == expected
    assert error_of(DistillationModel, **value) == expected  # the default culprit is Arch


def test_models_must_be_a_non_empty_list():
    for value in (None, [], {"Teacher": {"name": "KDTiny"}}):
        assert error_of(parse_arch, {"models": value, "infer_model_name": "Student"}).startswith(
            "Arch.models: required for DistillationModel: a list of {Name: {name: <model>, ...}} entries")


def test_paddleclas_keys_null_dropout_is_accepted_and_use_ssld_warned(monkeypatch, log_lines):
    monkeypatch.setattr(config_module, "_warned", set())  # the warning is once per process
    entries, _, _, _ = parse_arch(arch(models=models(teacher={"use_ssld": True, "dropout_prob": None})))
    assert entries[0] == ("Teacher", "KDTiny", {}, None)  # neither reaches the model's options
    assert log_lines() == [f"Arch.models[0].Teacher.use_ssld: accepted for compatibility; it has no effect "
                           f"({SSLD_WHY})"]


def test_arch_class_num_is_the_default_of_models_that_take_one():
    entries, _, _, _ = parse_arch(arch(class_num=7, models=models(teacher={"class_num": 5}) + [
        {"Fixed": {"name": "KDTinyFixed"}}]))
    assert [(k, o) for k, _, o, _ in entries] == [("Teacher", {"class_num": 5}), ("Student", {"class_num": 7}),
                                                  ("Fixed", {})]
    entries, _, _, _ = parse_arch(arch())  # no Arch.class_num: each model's own default
    assert [o for _, _, o, _ in entries] == [{}, {}]
    with pytest.raises(ConfigError, match=r"^Arch\.class_num: expected int"):
        parse_arch(arch(class_num="7"))


def test_per_model_lists_are_checked():
    assert error_of(parse_arch, arch(freeze_params_list="True")) == (
        "Arch.freeze_params_list: expected a list of 2 entries (one per model of Arch.models), got 'True'")
    assert error_of(parse_arch, arch(freeze_params_list=[1, False])).startswith("Arch.freeze_params_list[0]: expected")
    assert error_of(parse_arch, arch(pretrained_list=[None, 3])).startswith("Arch.pretrained_list[1]: expected")
    _, freeze, pretrained, infer = parse_arch(arch(freeze_params_list=[True, None], pretrained_list=[None, "w"]))
    assert (freeze, pretrained, infer) == ([True, False], [None, "w"], "Student")


def test_unknown_arch_keys_list_the_valid_ones():
    assert error_of(parse_arch, arch(modles=[])) == (
        "Arch.modles: unknown key for DistillationModel (did you mean 'models'?)")
    message = error_of(parse_arch, arch(zzz=1))
    assert message.startswith("Arch.zzz: unknown key for DistillationModel; valid: ") and "infer_model_name" in message


def test_infer_class_num_of_the_evaluated_model():
    assert infer_class_num(arch(class_num=7)) == 7
    assert infer_class_num(arch(models=models(student={"class_num": 9}))) == 9
    assert infer_class_num(arch(models=models(teacher={"class_num": 9}))) == 3  # the student's default
    fixed = [{"Teacher": {"name": "KDTiny"}}, {"Student": {"name": "KDTinyFixed"}}]
    assert infer_class_num(arch(models=fixed)) == 1000  # a model without the option: ImageNet's
    required = [{"Teacher": {"name": "KDTiny"}}, {"Student": {"name": "KDTinyRequired"}}]
    assert infer_class_num(arch(models=required)) == 1000


# -- the model ------------------------------------------------------------------------------------------------
def test_options_reach_each_model_and_frozen_ones_are_frozen_at_once(log_lines):
    model = DistillationModel(**arch(models=models(teacher={"class_num": 5, "width": 8}),
                                     freeze_params_list=[True, False]))
    teacher, student = model.sub_model("Teacher"), model.sub_model("Student")
    assert teacher.fc.weight.shape == [8, 5] and student.fc.weight.shape == [4, 3]
    assert all(p.stop_gradient is True for p in teacher.parameters())
    assert not student.conv.weight.stop_gradient and not student.fc.weight.stop_gradient  # BN statistics never train
    assert not teacher.training and not teacher.bn.training and student.training
    assert model.frozen_names == ["Teacher"] and model.infer_model is student
    assert not any("every model is frozen" in m for m in log_lines())
    model.train()
    assert not teacher.training and not teacher.bn.training and student.bn.training
    out = model(x_batch())
    assert list(out) == ["Teacher", "Student"] and out["Teacher"].stop_gradient and not out["Student"].stop_gradient


def test_every_model_frozen_is_said(log_lines):
    DistillationModel(**arch(freeze_params_list=[True, True]))
    assert log_lines() == ["DistillationModel: every model is frozen (freeze_params_list); only evaluation and "
                           "export make sense"]


def test_sub_model_names_the_models():
    model = DistillationModel(**arch())
    assert error_of(model.sub_model, "Studnet") == ("'Studnet' is not a model of Arch.models ('Teacher', 'Student') "
                                                    "(did you mean 'Student'?)")
    assert error_of(model.sub_model, "bn").startswith("'bn' is not a model")


@pytest.fixture
def teacher_file(tmp_path):
    paddle.seed(3)
    net = TinyNet(width=8)
    path = str(tmp_path / "teacher.pdparams")
    paddle.save(net.state_dict(), path)
    return path, {k: v.numpy() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("how", ["pretrained_list", "own"])
def test_weights_of_a_model_are_loaded_when_training_and_only_the_infer_models_otherwise(teacher_file, how):
    path, weights = teacher_file
    spec = (dict(pretrained_list=[path, None], models=models(teacher={"width": 8})) if how == "pretrained_list"
            else dict(models=models(teacher={"width": 8, "pretrained": path})))
    model = DistillationModel(**arch(**spec))
    got = {k: v.numpy() for k, v in model.sub_model("Teacher").state_dict().items()}
    assert all(np.array_equal(got[k], weights[k]) for k in weights)
    # outside training the teacher does not run: its file is not read (a missing one is no error)
    missing = dict(spec)
    if how == "pretrained_list":
        missing["pretrained_list"] = [path + ".gone", None]
    else:
        missing["models"] = models(teacher={"width": 8, "pretrained": path + ".gone"})
    model = DistillationModel(**arch(**missing), training=False)
    assert model.infer_model_name == "Student"
    where = "Arch.pretrained_list[0]" if how == "pretrained_list" else "Arch.models[0].Teacher.pretrained"
    assert error_of(DistillationModel, **arch(**missing)).startswith(f"{where}: '{path}.gone' is not a file")


def test_the_infer_models_weights_load_outside_training(teacher_file):
    path, weights = teacher_file
    model = DistillationModel(**arch(models=models(student={"width": 8}), pretrained_list=[None, path]),
                              training=False)
    got = {k: v.numpy() for k, v in model.infer_model.state_dict().items()}
    assert all(np.array_equal(got[k], weights[k]) for k in weights)


def test_load_pretrained_takes_a_whole_checkpoint_or_the_infer_models_weights(tmp_path, teacher_file, log_lines):
    path, weights = teacher_file
    source = DistillationModel(**arch(models=models(student={"width": 8})))
    whole = str(tmp_path / "kd.pdparams")
    paddle.save(source.state_dict(), whole)
    model = DistillationModel(**arch(models=models(student={"width": 8})))
    model.load_pretrained(whole[:-len(".pdparams")])  # PaddleClas's prefix form
    for k, v in source.state_dict().items():
        assert np.array_equal(model.state_dict()[k].numpy(), v.numpy()), k
    model.load_pretrained(path)  # a student file: into Arch.infer_model_name's model
    got = {k: v.numpy() for k, v in model.infer_model.state_dict().items()}
    assert all(np.array_equal(got[k], weights[k]) for k in weights)
    assert f"{path} holds one model's weights: loading them into Student (Arch.infer_model_name)" in log_lines()


def test_load_pretrained_refusals(tmp_path):
    model = DistillationModel(**arch())
    assert error_of(model.load_pretrained, True) == (
        "Global.pretrained_model: True: no weights are published for a DistillationModel; give one of its "
        "checkpoints (e.g. output/DistillationModel/best_model), or each model's weights in Arch.models")
    npz = str(tmp_path / "w.npz")
    np.savez(npz, a=np.zeros(1))
    assert error_of(model.load_pretrained, npz, where="Arch.pretrained") == (
        f"Arch.pretrained: {npz}: a DistillationModel loads .pdparams files (its own checkpoints, or one of its "
        "models'); give each model's foreign weights in Arch.models[i].<Name>.pretrained")
    listed = str(tmp_path / "list.pdparams")
    paddle.save([1, 2], listed)
    assert error_of(model.load_pretrained, listed) == f"{listed}: not a state dict"
    assert error_of(model.load_pretrained, str(tmp_path / "nothing")).startswith("Global.pretrained_model: ")


def test_static_graph_forward_detaches_the_frozen_models_outputs():
    """What to_static (Global.to_static) builds: in a static program the frozen model's outputs are detached,
    each output of a model of several. (A program built directly: mutmut's wrappers of forward cannot be
    converted by to_static.)"""
    x_np = x_batch().numpy()
    paddle.enable_static()
    try:
        main, startup = paddle.static.Program(), paddle.static.Program()
        with paddle.static.program_guard(main, startup):
            x = paddle.static.data("x", [2, 3, 4, 4], "float32")
            pair = DistillationModel(**arch(models=[{"Teacher": {"name": "KDTinyPair"}},
                                                    {"Student": {"name": "KDTiny"}}], freeze_params_list=[True, False]))
            out = pair(x)
            single = DistillationModel(**arch(freeze_params_list=[True, False]))(x)
        assert isinstance(out["Teacher"], (list, tuple)) and len(out["Teacher"]) == 2
        assert all(t.stop_gradient for t in out["Teacher"]) and not out["Student"].stop_gradient
        assert not isinstance(single["Teacher"], (list, tuple)) and single["Teacher"].stop_gradient
        exe = paddle.static.Executor(paddle.CPUPlace())
        exe.run(startup)
        logits, feats, student, teacher = exe.run(main, feed={"x": x_np}, fetch_list=[
            out["Teacher"][0], out["Teacher"][1], out["Student"], single["Teacher"]])
        assert (logits.shape, feats.shape, student.shape, teacher.shape) == ((2, 3), (2, 4), (2, 3), (2, 3))
    finally:
        paddle.disable_static()


# -- DistillationTopkAcc ----------------------------------------------------------------------------------------
SCORES = paddle.to_tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
LABELS = paddle.to_tensor([1, 1])


@pytest.mark.parametrize("model_key", [None, "", 3])
def test_the_metric_needs_a_model_key(model_key):
    with pytest.raises(ConfigError) as e:
        DistillationTopkAcc(model_key=model_key)
    assert str(e.value) == ("DistillationTopkAcc.model_key: required, the name of a model of Arch.models (e.g. "
                            f"Student), got {model_key!r}")


def test_the_metric_reads_the_feature_key_of_the_named_model():
    m = DistillationTopkAcc(model_key="Student", feature_key="logits", topk=[1, 2])
    m.update({"Student": {"logits": SCORES}, "Teacher": {"logits": SCORES[:, ::-1]}}, LABELS)
    assert m.compute() == {"top1": pytest.approx(0.5), "top2": pytest.approx(1.0)}
    by_index = DistillationTopkAcc(model_key="Student", feature_key=0, topk=[1])
    by_index.update({"Student": (SCORES, SCORES[:, ::-1])}, LABELS)
    assert by_index.compute() == {"top1": pytest.approx(0.5)}
    assert DistillationTopkAcc(model_key="Student").topk == [1, 5]
    with pytest.raises(ConfigError) as e:
        m.update({"Student": SCORES}, LABELS)
    assert str(e.value) == "DistillationTopkAcc.feature_key: Student returns one tensor; leave feature_key unset"
    with pytest.raises(ConfigError) as e:
        m.update({"Teacher": SCORES, "Other": SCORES}, LABELS)
    assert str(e.value) == ("DistillationTopkAcc.model_key: 'Student' is not a model of Arch.models "
                            "('Teacher', 'Other')")


# -- more of Arch ---------------------------------------------------------------------------------------------------
def test_the_engines_arch_keys_are_accepted():
    parse_arch(arch(name="DistillationModel", pretrained=None, use_sync_bn=False, infer_add_softmax=True))


@pytest.mark.parametrize("typo,meant", [("pretrainde", "pretrained"), ("use_sync_b", "use_sync_bn"),
                                        ("infer_add_softmx", "infer_add_softmax"), ("class_nm", "class_num")])
def test_a_misspelt_arch_key_is_corrected(typo, meant):
    assert error_of(parse_arch, arch(**{typo: 1})) == (
        f"Arch.{typo}: unknown key for DistillationModel (did you mean '{meant}'?)")


def test_weights_given_twice_are_refused():
    value = arch(models=models(student={"pretrained": "b.pdparams"}), pretrained_list=[None, "a.pdparams"])
    assert error_of(parse_arch, value) == ("Arch.pretrained_list[1]: Student also gives Arch.models[1].Student."
                                           "pretrained; give its weights once")


def test_a_teachers_foreign_weights_are_converted_for_its_own_model(tmp_path, monkeypatch):
    """A PyTorch-layout file (running_mean, [out, in] Linear) as a model's pretrained weights: converted by the
    rules of that model's name."""
    from ppcls.arch.convert import CONVERTERS, Rules
    monkeypatch.setitem(CONVERTERS._entries, "KDTiny", {"original": Rules("torch")})
    net = TinyNet()
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    torch_layout = {k.replace("_mean", "running_mean").replace("_variance", "running_var"): v
                    for k, v in state.items()}
    torch_layout["fc.weight"] = state["fc.weight"].T
    src = str(tmp_path / "teacher_torch.npz")
    np.savez(src, **torch_layout)
    model = DistillationModel(**arch(models=models(teacher={"pretrained": src})))
    got = {k: v.numpy() for k, v in model.sub_model("Teacher").state_dict().items()}
    assert all(np.array_equal(got[k], state[k]) for k in state)


# -- the rest of the full mutant set (MUTATION_SAMPLE=1000) ---------------------------------------------------------
def test_another_culprit_prefix_and_class_num_given_to_the_model_directly():
    value = {"models": [{"Teacher": {}}, {"Student": {"name": "KDTiny"}}], "infer_model_name": "Student"}
    expected = "Export.Arch.models[0].Teacher.name: required (the model to build, e.g. DLA34)"
    assert error_of(parse_arch, value, "Export.Arch") == expected
    assert error_of(DistillationModel, **value, where="Export.Arch") == expected
    model = DistillationModel(**arch(class_num=7))
    assert model.sub_model("Teacher").fc.weight.shape == [4, 7] and model.infer_model.fc.weight.shape == [4, 7]


def test_frozen_models_report_training_false_whatever_switched_them():
    model = DistillationModel(**arch(freeze_params_list=[True, False]))
    teacher = model.sub_model("Teacher")

    def modes():
        return {teacher.training} | {sub.training for sub in teacher.sublayers()}
    assert modes() == {False}  # a bool, as Layer.training always is
    model.train()
    assert modes() == {False}
    paddle.nn.LayerList([model]).train()  # an enclosing layer's train() reaches the teacher ...
    model(x_batch())
    assert modes() == {False}  # ... and its forward puts it back


def test_a_trained_model_listed_before_a_frozen_one():
    model = DistillationModel(**{"models": [{"Student": {"name": "KDTiny"}}, {"Teacher": {"name": "KDTiny"}}],
                                 "freeze_params_list": [False, True], "infer_model_name": "Student"})
    out = model(x_batch())
    assert list(out) == ["Student", "Teacher"] and out["Teacher"].stop_gradient


def test_load_pretrained_errors_name_the_file(tmp_path):
    model = DistillationModel(**arch())
    garbage = tmp_path / "garbage.pdparams"
    garbage.write_bytes(b"not a pickle")
    assert error_of(model.load_pretrained, str(garbage)).startswith(
        f"{garbage}: unreadable or truncated pretrained weights file")
    other = tmp_path / "other.pdparams"
    paddle.save({"Teacher.conv.weight": paddle.zeros([1])}, str(other))  # a checkpoint of another DistillationModel
    assert error_of(model.load_pretrained, str(other)).startswith(f"{other} does not fit DistillationModel")
    alone = tmp_path / "alone.pdparams"
    paddle.save({"head.weight": paddle.zeros([1])}, str(alone))  # one model's weights, of another model
    assert error_of(model.load_pretrained, str(alone)).startswith(f"{alone} does not fit TinyNet")

