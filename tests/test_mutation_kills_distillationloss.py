"""The distillation losses' behaviour that tests/test_distillation.py left open, found by mutation testing (bash
tests/mutation.sh loss/distillationloss.py): the option errors of each loss, the key of a model with several
outputs (by name or index, negative too), saturated probabilities in DML, the defaults, and temperatures
below 1."""
import numpy as np
import paddle
import pytest

from ppcls.loss import LOSSES
from ppcls.loss.distillationloss import dkd_loss, dml_loss, kldiv_loss
from ppcls.utils.errors import ConfigError

RNG = np.random.RandomState(1)
S = (RNG.randn(4, 3) * 2).astype("float32")  # 4 samples, 3 classes: the batch and class axes differ
T = (RNG.randn(4, 3) * 2).astype("float32")
Y = np.array([0, 2, 1, 2], dtype="int64")
PAIR = {"model_name_pairs": [["Student", "Teacher"]]}
CASES = {"DistillationCELoss": PAIR, "DistillationGTCELoss": {"model_names": ["Student"]},
         "DistillationDMLLoss": PAIR, "DistillationKLDivLoss": PAIR, "DistillationDKDLoss": PAIR}


def loss_of(name, **options):
    return LOSSES.get(name)(**dict(CASES[name], **options))


def outputs(student=S, teacher=T):
    return {"Student": paddle.to_tensor(student), "Teacher": paddle.to_tensor(teacher)}


def values(result):
    return {k: float(v) for k, v in result.items()}


def message(fn, *args, **kwargs):
    with pytest.raises(ConfigError) as e:
        fn(*args, **kwargs)
    return str(e.value)


@pytest.mark.parametrize("name", list(CASES))
def test_the_names_option_is_required_and_checked(name):
    cls = LOSSES.get(name)
    if name == "DistillationGTCELoss":
        assert message(cls) == f"{name}.model_names: required, a list of names of Arch.models, got None"
        assert message(cls, model_names=["Student", 3]) == f"{name}.model_names: every entry is a model name, got 3"
        return
    assert message(cls) == (f"{name}.model_name_pairs: required, a list of [student, teacher] name pairs of "
                            "Arch.models, got None")
    assert message(cls, model_name_pairs=[["Student"]]) == (
        f"{name}.model_name_pairs: every entry is a pair of model names, got ['Student']")


@pytest.mark.parametrize("name", list(CASES))
def test_the_outputs_must_be_a_distillation_models(name):
    loss = loss_of(name)
    assert message(loss, paddle.to_tensor(S), paddle.to_tensor(Y)) == (
        f"{name}: works on the outputs of Arch.name: DistillationModel (one per model), got a Tensor")
    assert message(loss, {"Pupil": paddle.to_tensor(S), "Teacher": paddle.to_tensor(T)}, paddle.to_tensor(Y)) == (
        f"{name}: 'Student' is not a model of Arch.models ('Pupil', 'Teacher')")


@pytest.mark.parametrize("name", list(CASES))
def test_key_picks_the_logits_by_name_or_index(name):
    plain = values(loss_of(name)(outputs(), paddle.to_tensor(Y)))
    s, t = paddle.to_tensor(S), paddle.to_tensor(T)
    feats = paddle.ones([4, 7])
    for key, wrap in (("logits", lambda x: {"logits": x, "features": feats}), (0, lambda x: [x, feats]),
                      (-2, lambda x: (x, feats))):
        got = loss_of(name, key=key)({"Student": wrap(s), "Teacher": wrap(t)}, paddle.to_tensor(Y))
        assert all(v.dtype == paddle.float32 for v in got.values())
        assert values(got) == pytest.approx(plain, rel=1e-6), key
    # float16 logits behind a key are computed in float32 too (AMP)
    half = {"Student": {"logits": s.astype("float16")}, "Teacher": {"logits": t.astype("float16")}}
    got = loss_of(name, key="logits")(half, paddle.to_tensor(Y))
    assert all(v.dtype == paddle.float32 for v in got.values())


@pytest.mark.parametrize("name", list(CASES))
def test_a_key_that_is_no_output_is_one_line(name):
    s, t = paddle.to_tensor(S), paddle.to_tensor(T)
    for key in (2, -3):
        assert message(loss_of(name, key=key), {"Student": [s, s], "Teacher": [t, t]}, paddle.to_tensor(Y)) == (
            f"{name}.key: {key} is not an output of Student (list of 2)")
    assert message(loss_of(name, key="logits"), outputs(), paddle.to_tensor(Y)) == (
        f"{name}.key: 'logits' is not an output of Student (it returns one tensor: leave key unset)")
    assert message(loss_of(name, key="logits"), {"Student": {"feat": s}, "Teacher": t}, paddle.to_tensor(Y)) == (
        f"{name}.key: 'logits' is not an output of Student (dict of 1)")
    assert message(loss_of(name), {"Student": (s, s), "Teacher": t}, paddle.to_tensor(Y)) == (
        f"{name}.key: Student returns several outputs; give key (the index of the logits)")


@pytest.mark.parametrize("name", ["DistillationCELoss", "DistillationDMLLoss", "DistillationKLDivLoss",
                                  "DistillationDKDLoss"])
def test_pairs_of_another_class_count_are_refused(name):
    wide = np.zeros((4, 5), "float32")
    assert message(loss_of(name), outputs(teacher=wide), paddle.to_tensor(Y)) == (
        f"{name}: Student has 3 outputs and Teacher 5: distilling logits needs the same class_num")


def test_dml_defaults_and_saturated_probabilities():
    default = values(loss_of("DistillationDMLLoss")(outputs(), paddle.to_tensor(Y)))
    mean = values(loss_of("DistillationDMLLoss", act="softmax", sum_across_class_dim=False)(outputs(),
                                                                                          paddle.to_tensor(Y)))
    assert default == mean
    # a probability of exactly 0 (softmax underflows in float32): eps keeps the logarithms finite
    s = np.array([[200.0, 0.0, 0.0]] * 4, "float32")
    t = np.array([[0.0, 200.0, 0.0]] * 4, "float32")
    got = float(loss_of("DistillationDMLLoss")(outputs(s, t), paddle.to_tensor(Y))["DMLLoss_Student_Teacher_0"])
    eps, k = 1e-12, 3
    p, q = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    kl = lambda a, b: b * np.log((b + eps) / (a + eps)) * k  # noqa: E731
    assert np.isfinite(got) and got == pytest.approx(((kl(p, q) + kl(q, p)) / 2).mean(), rel=1e-4)


def test_dml_option_errors():
    assert message(loss_of, "DistillationDMLLoss", weight_ratio=True) == (
        "DistillationDMLLoss.weight_ratio: weights multi-label attributes by their label ratios; the classifiers "
        "here are single-label (leave it False)")
    assert message(loss_of, "DistillationDMLLoss", act="relu") == (
        "DistillationDMLLoss.act: softmax, sigmoid or null, got 'relu'")


@pytest.mark.parametrize("name", ["DistillationKLDivLoss", "DistillationDKDLoss"])
def test_temperatures_below_one_are_accepted_and_zero_refused(name):
    assert loss_of(name, temperature=0.5).temperature == 0.5
    assert message(loss_of, name, temperature=0) == f"{name}.temperature: must be > 0, got 0"


def test_dkd_function_defaults_are_the_losses():
    s, t, y = paddle.to_tensor(S), paddle.to_tensor(T), paddle.to_tensor(Y)
    by_loss = float(loss_of("DistillationDKDLoss")(outputs(), y)["loss_dkd_Student_Teacher"])
    assert float(dkd_loss(s, t, y)) == pytest.approx(by_loss, rel=1e-6)
    assert float(dkd_loss(s, t, y)) == pytest.approx(float(dkd_loss(s, t, y, 1.0, 1.0, 1.0)), rel=1e-6)
    named = LOSSES.get("DistillationDKDLoss")(name="dkd", **PAIR)(outputs(), y)
    assert list(named) == ["dkd_Student_Teacher"]


def test_an_empty_list_of_names_is_refused():
    assert message(LOSSES.get("DistillationKLDivLoss"), model_name_pairs=[]) == (
        "DistillationKLDivLoss.model_name_pairs: required, a list of [student, teacher] name pairs of Arch.models, "
        "got []")
    assert message(LOSSES.get("DistillationGTCELoss"), model_names=()) == (
        "DistillationGTCELoss.model_names: required, a list of names of Arch.models, got ()")


def test_the_loss_functions_defaults_are_the_losses():
    s, t = paddle.to_tensor(S), paddle.to_tensor(T)
    kl = LOSSES.get("DistillationKLDivLoss")(**PAIR)
    assert kl.temperature == 4.0  # PaddleClas's default
    assert float(kldiv_loss(s, t)) == pytest.approx(float(kl(outputs(), None)["loss_kldiv_Student_Teacher"]), rel=1e-6)
    dml = float(loss_of("DistillationDMLLoss")(outputs(), None)["DMLLoss_Student_Teacher_0"])
    assert float(dml_loss(s, t)) == pytest.approx(dml, rel=1e-6)


@pytest.mark.parametrize("layout", ["n1_int64", "n1_float32", "n_float32"])
def test_dkd_reads_hard_labels_in_every_layout_the_loaders_give(layout):
    """[N, 1] int64 labels (what the data loaders give), and float labels, name the target class as [N] int64
    ones do; only an [N, K] float target is a soft (mixup) target."""
    reference = values(loss_of("DistillationDKDLoss")(outputs(), paddle.to_tensor(Y)))
    labels = {"n1_int64": Y.reshape(-1, 1), "n1_float32": Y.reshape(-1, 1).astype("float32"),
              "n_float32": Y.astype("float32")}[layout]
    got = values(loss_of("DistillationDKDLoss")(outputs(), paddle.to_tensor(labels)))
    assert got == pytest.approx(reference, rel=1e-6)

