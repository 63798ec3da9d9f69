"""Knowledge distillation (Arch.name: DistillationModel): the five losses against numpy, the metric and the
post-processing, the config errors, and a run on generated images (frozen teacher of another family,
mixup, EMA, VisualDL): teacher untouched, student saved alone, export == student, eval, infer, resume."""
import os
import re

import numpy as np
import paddle
import pytest
import yaml

from engine_utils import ROOT, eval_avg, run_tool, tiny_config
from ppcls.utils.errors import ConfigError


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    return np.log(softmax(x, axis))


def kl_sum(log_p, q):
    """sum q (log q - log_p), 0 where q is 0."""
    safe = np.where(q > 0, q, 1.0)
    return float(np.sum(np.where(q > 0, q * (np.log(safe) - log_p), 0.0)))


RNG = np.random.RandomState(0)
S = (RNG.randn(6, 5) * 2).astype("float32")    # student logits
T = (RNG.randn(6, 5) * 2).astype("float32")    # teacher logits
Y = np.array([0, 3, 1, 4, 2, 3], dtype="int64")


def run_loss(cls_name, options, labels=Y):
    from ppcls.loss import LOSSES
    loss = LOSSES.get(cls_name)(**options)
    outputs = {"Student": paddle.to_tensor(S), "Teacher": paddle.to_tensor(T)}
    return {k: float(v) for k, v in loss(outputs, paddle.to_tensor(labels)).items()}


def ce_soft(logits, q):
    return float(np.mean(-(q * log_softmax(logits)).sum(-1)))


def test_distillation_ce_loss():
    got = run_loss("DistillationCELoss", {"model_name_pairs": [["Student", "Teacher"]]})
    assert list(got) == ["CELoss_Student_Teacher"]
    assert got["CELoss_Student_Teacher"] == pytest.approx(ce_soft(S, softmax(T)), rel=1e-5)
    got = run_loss("DistillationCELoss", {"model_name_pairs": [["Student", "Teacher"]], "epsilon": 0.1})
    assert got["CELoss_Student_Teacher"] == pytest.approx(ce_soft(S, 0.9 * softmax(T) + 0.1 / 5), rel=1e-5)


def test_distillation_gt_ce_loss_hard_and_mixed_labels():
    got = run_loss("DistillationGTCELoss", {"model_names": ["Student", "Teacher"], "epsilon": 0.2})
    for name, logits in (("Student", S), ("Teacher", T)):
        q = np.eye(5)[Y] * 0.8 + 0.2 / 5
        assert got[f"CELoss_{name}"] == pytest.approx(ce_soft(logits, q), rel=1e-5)
    mixed = (0.7 * np.eye(5)[Y] + 0.3 * np.eye(5)[Y[::-1]]).astype("float32")
    got = run_loss("DistillationGTCELoss", {"model_names": ["Student"]}, labels=mixed)
    assert got["CELoss_Student"] == pytest.approx(ce_soft(S, mixed), rel=1e-5)  # used as probabilities


@pytest.mark.parametrize("act,sum_classes", [("softmax", False), ("softmax", True), ("sigmoid", False)])
def test_distillation_dml_loss(act, sum_classes):
    got = run_loss("DistillationDMLLoss", {"model_name_pairs": [["Student", "Teacher"]], "act": act,
                                           "sum_across_class_dim": sum_classes})
    p, q = (softmax(S), softmax(T)) if act == "softmax" else (1 / (1 + np.exp(-S)), 1 / (1 + np.exp(-T)))
    eps = 1e-12

    def kl(x, t):
        return t * np.log((t + eps) / (x + eps)) * 5
    ref = (kl(p, q) + kl(q, p)) / 2
    ref = ref.sum(1).mean() if sum_classes else ref.mean()
    assert list(got) == ["DMLLoss_Student_Teacher_0"]
    assert got["DMLLoss_Student_Teacher_0"] == pytest.approx(float(ref), rel=1e-4)


@pytest.mark.parametrize("temperature", [4, 1.5])
def test_distillation_kldiv_loss(temperature):
    got = run_loss("DistillationKLDivLoss", {"model_name_pairs": [["Student", "Teacher"]], "temperature": temperature})
    ref = kl_sum(log_softmax(S / temperature), softmax(T / temperature)) * temperature ** 2 / len(S)
    assert list(got) == ["loss_kldiv_Student_Teacher"]
    assert got["loss_kldiv_Student_Teacher"] == pytest.approx(ref, rel=1e-5)


def dkd_reference(s, t, y, temperature, alpha, beta):
    n, k = s.shape
    gt = np.eye(k)[y]
    ps, pt = softmax(s / temperature), softmax(t / temperature)
    bs = np.stack([(ps * gt).sum(1), (ps * (1 - gt)).sum(1)], 1)
    bt = np.stack([(pt * gt).sum(1), (pt * (1 - gt)).sum(1)], 1)
    tckd = kl_sum(np.log(bs), bt) * temperature ** 2 / n
    # the non-target classes' distributions (the target class left out)
    nckd = 0.0
    for i in range(n):
        keep = np.arange(k) != y[i]
        nckd += kl_sum(log_softmax(s[i, keep] / temperature), softmax(t[i, keep] / temperature))
    nckd = nckd * temperature ** 2 / n
    return alpha * tckd + beta * nckd


@pytest.mark.parametrize("temperature,alpha,beta", [(1.0, 1.0, 1.0), (2.0, 0.5, 8.0)])
def test_distillation_dkd_loss(temperature, alpha, beta):
    opts = {"model_name_pairs": [["Student", "Teacher"]], "temperature": temperature, "alpha": alpha, "beta": beta}
    got = run_loss("DistillationDKDLoss", opts)
    assert list(got) == ["loss_dkd_Student_Teacher"]
    assert got["loss_dkd_Student_Teacher"] == pytest.approx(dkd_reference(S, T, Y, temperature, alpha, beta), rel=1e-4)
    # use_target_as_gt: the teacher's prediction is the target class; a mixed batch: its dominant class
    got = run_loss("DistillationDKDLoss", dict(opts, use_target_as_gt=True))
    assert got["loss_dkd_Student_Teacher"] == pytest.approx(
        dkd_reference(S, T, T.argmax(1), temperature, alpha, beta), rel=1e-4)
    mixed = (0.6 * np.eye(5)[Y] + 0.4 * np.eye(5)[Y[::-1]]).astype("float32")
    got = run_loss("DistillationDKDLoss", opts, labels=mixed)
    assert got["loss_dkd_Student_Teacher"] == pytest.approx(dkd_reference(S, T, Y, temperature, alpha, beta), rel=1e-4)


HALF_CASES = [("DistillationCELoss", {"model_name_pairs": [["Student", "Teacher"]]}),
              ("DistillationGTCELoss", {"model_names": ["Student", "Teacher"], "epsilon": 0.1}),
              ("DistillationDMLLoss", {"model_name_pairs": [["Student", "Teacher"]]}),
              ("DistillationKLDivLoss", {"model_name_pairs": [["Student", "Teacher"]], "temperature": 4}),
              ("DistillationDKDLoss", {"model_name_pairs": [["Student", "Teacher"]], "temperature": 2.0})]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name,options", HALF_CASES, ids=[c[0] for c in HALF_CASES])
def test_losses_take_the_half_precision_logits_of_amp(name, options, dtype):
    """Under AMP (GPU only in Paddle 3.3) the models hand the losses float16 / bfloat16 logits: each loss
    computes in float32 and gives the float32 result of the same (rounded) logits."""
    from ppcls.loss import LOSSES
    loss = LOSSES.get(name)(**options)
    half = {"Student": paddle.to_tensor(S).astype(dtype), "Teacher": paddle.to_tensor(T).astype(dtype)}
    full = {k: v.astype("float32") for k, v in half.items()}
    got, ref = loss(half, paddle.to_tensor(Y)), loss(full, paddle.to_tensor(Y))
    assert list(got) == list(ref)
    for key in got:
        assert got[key].dtype == paddle.float32, key
        assert float(got[key]) == pytest.approx(float(ref[key]), rel=1e-6), key


def test_combined_loss_weights_every_pair_and_the_target_gets_no_gradient():
    from ppcls.loss import build_loss
    pairs = [["Student", "Teacher"], ["Teacher", "Student"]]
    loss = build_loss([{"DistillationGTCELoss": {"weight": 0.5, "model_names": ["Student"]}},
                       {"DistillationKLDivLoss": {"weight": 2.0, "temperature": 2, "model_name_pairs": pairs}}])
    s, t = paddle.to_tensor(S, stop_gradient=False), paddle.to_tensor(T, stop_gradient=False)
    out = loss({"Student": s, "Teacher": t}, paddle.to_tensor(Y))
    assert set(out) == {"CELoss_Student", "loss_kldiv_Student_Teacher", "loss_kldiv_Teacher_Student", "loss"}
    expected = 0.5 * float(out["CELoss_Student"]) + 2.0 * (float(out["loss_kldiv_Student_Teacher"])
                                                           + float(out["loss_kldiv_Teacher_Student"]))
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-6)
    # the gradient of KL(Student <- Teacher) reaches the student only
    part = build_loss([{"DistillationKLDivLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]]}}])
    s, t = paddle.to_tensor(S, stop_gradient=False), paddle.to_tensor(T, stop_gradient=False)
    part({"Student": s, "Teacher": t}, paddle.to_tensor(Y))["loss"].backward()
    assert s.grad is not None and float(paddle.abs(s.grad).sum()) > 0
    assert t.grad is None or float(paddle.abs(t.grad).sum()) == 0
    # DML is mutual: both learn
    dml = build_loss([{"DistillationDMLLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]]}}])
    s, t = paddle.to_tensor(S, stop_gradient=False), paddle.to_tensor(T, stop_gradient=False)
    dml({"Student": s, "Teacher": t}, paddle.to_tensor(Y))["loss"].backward()
    assert float(paddle.abs(s.grad).sum()) > 0 and float(paddle.abs(t.grad).sum()) > 0


def test_distillation_topk_acc_reads_the_named_model():
    from ppcls.metric import METRICS
    m = METRICS.get("DistillationTopkAcc")(model_key="Teacher", topk=[1, 2])
    m.update({"Student": paddle.to_tensor(S), "Teacher": paddle.to_tensor(T)}, paddle.to_tensor(Y))
    top1 = float(np.mean(T.argmax(1) == Y))
    top2 = float(np.mean([y in np.argsort(-t)[:2] for t, y in zip(T, Y)]))
    assert m.compute() == {"top1": pytest.approx(top1), "top2": pytest.approx(top2)}
    m.reset()
    m.update(paddle.to_tensor(S), paddle.to_tensor(Y))  # evaluation: the infer model's logits alone
    assert m.compute()["top1"] == pytest.approx(float(np.mean(S.argmax(1) == Y)))
    with pytest.raises(ConfigError, match="model_key: 'Nobody' is not a model"):
        METRICS.get("DistillationTopkAcc")(model_key="Nobody").update({"Student": paddle.to_tensor(S)},
                                                                     paddle.to_tensor(Y))


def test_distillation_postprocess_takes_the_named_model():
    from ppcls.inference.postprocess import DistillationPostProcess, build_postprocess
    post = build_postprocess({"name": "DistillationPostProcess", "model_name": "Teacher", "func": "Topk", "topk": 2},
                             label_list=list("abcde"))
    assert isinstance(post, DistillationPostProcess)
    res = post({"Student": softmax(S), "Teacher": softmax(T)}, [f"f{i}" for i in range(6)])
    assert [r["class_ids"] for r in res] == [list(np.argsort(-t, kind="stable")[:2]) for t in T]
    assert res[0]["label_names"] == [list("abcde")[i] for i in res[0]["class_ids"]]
    with pytest.raises(ConfigError, match="func"):
        build_postprocess({"name": "DistillationPostProcess", "func": "ThreshOutput"})


# -- config errors -----------------------------------------------------------------------------------------
ARCH = {"name": "DistillationModel", "freeze_params_list": [True, False],
        "models": [{"Teacher": {"name": "DLA46_c"}}, {"Student": {"name": "DLA46x_c"}}], "infer_model_name": "Student"}
LOSS = {"Train": [{"DistillationGTCELoss": {"weight": 1.0, "model_names": ["Student"]}},
                  {"DistillationCELoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]]}}],
        "Eval": [{"CELoss": {"weight": 1.0}}]}
METRIC = {"Train": [{"DistillationTopkAcc": {"model_key": "Student", "topk": [1, 2]}}],
          "Eval": [{"DistillationTopkAcc": {"model_key": "Student", "topk": [1, 2]}}]}


def distill_config(tmp_path, arch=None, loss=None, metric=None, extra=None, **kw):
    import copy
    from ppcls.utils.config import merge
    cfg = {"Arch": dict(copy.deepcopy(ARCH), class_num=3, **(arch or {})), "Loss": loss or LOSS,
           "Metric": metric or METRIC}
    return tiny_config(tmp_path, extra=merge(cfg, extra or {}), **kw)


def config_error(tmp_path, arch=None, loss=None, metric=None, drop=(), overrides=()):
    from ppcls.schema import get_config
    path, _ = distill_config(tmp_path, arch, loss, metric)
    cfg = yaml.safe_load(open(path))
    for key in drop:
        cfg["Arch"].pop(key)
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    with pytest.raises(ConfigError) as e:
        get_config(path, list(overrides))
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("case,expected", [
    (dict(drop=["infer_model_name"]), r"^Arch\.infer_model_name: required for DistillationModel.*'Teacher', 'Student'"),
    (dict(arch={"infer_model_name": "Studnet"}), r"^Arch\.infer_model_name: 'Studnet' is not a model of Arch\.models "
                                                 r".*did you mean 'Student'"),
    (dict(arch={"freeze_params_list": [True]}), r"^Arch\.freeze_params_list: expected a list of 2 entries"),
    (dict(arch={"pretrained_list": [None, None, None]}), r"^Arch\.pretrained_list: expected a list of 2 entries"),
    (dict(arch={"pretrained_list": ["t.pdparams", None],
                "models": [{"Teacher": {"name": "DLA46_c", "pretrained": "x"}}, {"Student": {"name": "DLA46x_c"}}]}),
     r"^Arch\.pretrained_list\[0\]: Teacher also gives Arch\.models\[0\]\.Teacher\.pretrained"),
    (dict(arch={"models": [{"Teacher": {"name": "DLA46"}}, {"Student": {"name": "DLA46x_c"}}]}),
     r"^Arch\.models\[0\]\.Teacher\.name: unknown model 'DLA46'"),
    (dict(arch={"models": [{"Teacher": {"name": "DLA46_c", "drop_rat": 0.1}}, {"Student": {"name": "DLA46x_c"}}]}),
     r"^Arch\.models\[0\]\.Teacher\.drop_rat: unknown option.*drop_rate"),
    (dict(arch={"models": [{"Teacher": {"name": "DLA46_c"}}, {"Teacher": {"name": "DLA46x_c"}}]}),
     r"^Arch\.models\[1\]\.Teacher: the name is given twice"),
    (dict(arch={"infer_model_nam": "Student"}), r"^Arch\.infer_model_nam: unknown key for DistillationModel"),
    (dict(loss={"Train": [{"DistillationCELoss": {"model_name_pairs": [["Student", "Teacher"]]}}]}),
     r"^Loss\.Train\[0\]\.DistillationCELoss\.weight: required"),
    (dict(loss={"Train": [{"DistillationKLDivLoss": {"weight": 1, "model_name_pairs": [["Student", "Teachr"]]}}]}),
     r"^Loss\.Train\[0\]\.DistillationKLDivLoss: 'Teachr' is not a model of Arch\.models.*'Teacher'"),
    (dict(loss={"Train": [{"CELoss": {"weight": 1.0}}]}),
     r"^Loss\.Train\[0\]\.CELoss: a DistillationModel trains on one"),
    (dict(loss={"Train": LOSS["Train"], "Eval": [{"DistillationGTCELoss": {"weight": 1, "model_names": ["Student"]}}]}),
     r"^Loss\.Eval\[0\]\.DistillationGTCELoss: evaluation runs Arch\.infer_model_name \(Student\) alone"),
    (dict(metric={"Train": [{"TopkAcc": {"topk": [1, 2]}}]}), r"^Metric\.Train\[0\]\.TopkAcc: a DistillationModel"),
    (dict(metric={"Train": [{"DistillationTopkAcc": {"model_key": "Stu"}}]}),
     r"^Metric\.Train\[0\]\.DistillationTopkAcc\.model_key: 'Stu' is not a model"),
    (dict(overrides=["Infer.PostProcess.name=DistillationPostProcess", "Infer.PostProcess.model_name=Pupil"]),
     r"^Infer\.PostProcess\.model_name: 'Pupil' is not a model"),
])
def test_config_errors_are_one_line_naming_the_key(tmp_path, case, expected):
    assert re.search(expected, config_error(tmp_path, **case)), config_error(tmp_path, **case)


def test_distillation_losses_need_a_distillation_model(tmp_path):
    from ppcls.schema import get_config
    path, _ = tiny_config(tmp_path, arch="DLA46_c", extra={"Loss": {"Train": LOSS["Train"]}})
    with pytest.raises(ConfigError, match=r"^Loss\.Train\[0\]\.DistillationGTCELoss: works on the outputs of "
                                          r"Arch\.name: DistillationModel, not DLA46_c$"):
        get_config(path)


def test_cli_config_error_exits_2_with_one_line(tmp_path):
    path, _ = distill_config(tmp_path)
    r = run_tool("train.py", "-c", path, "-o", "Arch.infer_model_name=Teacher2")
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [l for l in r.stderr.splitlines() if l.startswith("error")]
    assert lines == ["error: Arch.infer_model_name: 'Teacher2' is not a model of Arch.models ('Teacher', 'Student') "
                     "(did you mean 'Teacher'?)"], r.stderr[-2000:]


# -- a run: a frozen ReXNet teacher (weights through pretrained_list) teaching DLA46_c, mixup, EMA, VisualDL --
def flat(state):
    return {k: np.asarray(v) for k, v in state.items()}


@pytest.fixture(scope="module")
def run(module_tmp):
    from ppcls.arch import build_model
    from ppcls.engine import Engine
    from ppcls.schema import get_config
    tmp = str(module_tmp("kd"))
    paddle.seed(1)
    teacher_file = os.path.join(tmp, "teacher.pdparams")
    paddle.save(build_model({"name": "ReXNet_1_0", "class_num": 3}).state_dict(), teacher_file)
    arch = {"models": [{"Teacher": {"name": "ReXNet_1_0"}}, {"Student": {"name": "DLA46_c"}}],
            "pretrained_list": [teacher_file, None]}
    loss = {"Train": [{"DistillationGTCELoss": {"weight": 1.0, "model_names": ["Student"]}},
                      {"DistillationKLDivLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]],
                                                 "temperature": 2}}],
            "Eval": [{"CELoss": {"weight": 1.0}}]}
    extra = {"EMA": {"decay": 0.9}, "Global": {"use_visualdl": True},
             "Infer": {"PostProcess": {"name": "DistillationPostProcess", "model_name": "Student", "func": "Topk",
                                       "topk": 2}},
             "DataLoader": {"Train": {"dataset": {"batch_transform_ops": [{"MixupOperator": {"alpha": 0.4}}]}}}}
    path, data = distill_config(tmp, arch=arch, loss=loss, extra=extra, epochs=2, per_class=12)
    eng = Engine(get_config(path), "train")
    model = eng.model
    # what each model is given in training steps (evaluation runs the student alone)
    seen = {"Teacher": [], "Student": []}
    student = model.sub_model("Student")
    for name in seen:
        model.sub_model(name).register_forward_pre_hook(
            lambda layer, inputs, name=name: seen[name].append(inputs[0].numpy().copy()) if student.training else None)
    teacher_params = {id(p) for p in model.sub_model("Teacher").parameters()}
    optimized = {id(p) for p in eng.optimizer._parameter_list}
    result = eng.train()
    return dict(tmp=tmp, path=path, data=data, eng=eng, result=result, seen=seen, teacher_file=teacher_file,
                out=os.path.join(tmp, "output", "DistillationModel"), frozen_optimized=teacher_params & optimized,
                optimized=optimized)


def test_frozen_teacher_is_untouched_and_the_student_trained(run):
    teacher = flat(paddle.load(run["teacher_file"]))
    latest = flat(paddle.load(os.path.join(run["out"], "latest.pdparams")))
    first = flat(paddle.load(os.path.join(run["out"], "epoch_1.pdparams")))
    assert {k[len("Teacher."):] for k in latest if k.startswith("Teacher.")} == set(teacher)
    for k, v in teacher.items():  # weights and BatchNorm statistics
        assert np.array_equal(latest["Teacher." + k], v), k
    moved = [k for k in latest if k.startswith("Student.") and not np.array_equal(latest[k], first[k])]
    assert len(moved) > len([k for k in latest if k.startswith("Student.")]) // 2
    model = run["eng"].model
    assert not model.sub_model("Teacher").training
    assert all(not layer.training for layer in model.sub_model("Teacher").sublayers())
    assert not run["frozen_optimized"] and run["optimized"]  # the optimizer holds the student alone
    opt = paddle.load(os.path.join(run["out"], "latest.pdopt"))
    assert opt and not [k for k in opt if k.startswith("Teacher.")]
    assert any(k.startswith("Student.") for k in opt)


def test_the_teacher_sees_the_same_mixed_batch(run):
    seen = run["seen"]
    assert len(seen["Teacher"]) == len(seen["Student"]) == 2 * 3  # 2 epochs of 3 batches
    for t, s in zip(seen["Teacher"], seen["Student"]):
        assert np.array_equal(t, s)


def test_student_saved_alone_and_ema_is_the_students(run):
    from ppcls.arch import build_model
    from ppcls.utils.save_load import apply_state_dict, load_state_file
    best = flat(paddle.load(os.path.join(run["out"], "best_model.pdparams")))
    student_file = os.path.join(run["out"], "best_model_student.pdparams")
    student = load_state_file(student_file)
    assert set(student) == {k[len("Student."):] for k in best if k.startswith("Student.")}
    for k, v in student.items():
        assert np.array_equal(v, best["Student." + k]), k
    report = apply_state_dict(build_model({"name": "DLA46_c", "class_num": 3}), student, student_file)
    assert not report["missing"] and not report["unexpected"] and not report["mismatched"]
    ema = load_state_file(os.path.join(run["out"], "latest.ema.pdparams"))
    assert set(ema) == set(student)
    log = open(os.path.join(run["out"], "train.log")).read()
    assert "Already save Student model in " + student_file in log
    assert re.search(r"\[Train\]\[Epoch 2/2\]\[Iter: 2/3\].*CELoss_Student: \d+\.\d{5}, "
                     r"loss_kldiv_Student_Teacher: \d+\.\d{5}, loss: ", log)
    assert re.search(r"\[Eval\]\[Epoch 2\]\[Avg\]EMA CELoss", log)


def test_visualdl_records_the_distillation_losses(run):
    from visualdl import LogReader
    vdl = os.path.join(run["tmp"], "output", "vdl")
    reader = LogReader(file_path=os.path.join(vdl, [f for f in os.listdir(vdl) if f.startswith("vdlrecords")][0]))
    tags = set(reader.get_tags()["scalar"])
    assert {"train_CELoss_Student", "train_loss_kldiv_Student_Teacher", "train_loss", "eval_acc"} <= tags, tags


def test_eval_reports_the_student_from_either_file(run):
    from ppcls.engine import Engine
    from ppcls.schema import get_config
    tops = []
    for name in ("latest", "best_model_student"):
        cfg = get_config(run["path"], [f"Global.pretrained_model={os.path.join(run['out'], name)}"])
        tops.append(Engine(cfg, "eval").eval().metrics["top1"])
    assert tops[0] == pytest.approx(run["result"].last_eval.metrics["top1"], abs=1e-6)
    best = flat(paddle.load(os.path.join(run["out"], "best_model.pdparams")))
    latest = flat(paddle.load(os.path.join(run["out"], "latest.pdparams")))
    if all(np.array_equal(best[k], latest[k]) for k in best):
        assert tops[1] == pytest.approx(tops[0], abs=1e-6)


def test_export_is_the_student_and_predicts_as_the_dygraph_student(run, tmp_path):
    from ppcls.arch import build_model
    from ppcls.inference.export import export
    from ppcls.inference.predictor import Predictor
    from ppcls.schema import get_config
    prefix = os.path.join(run["out"], "latest")
    cfg = get_config(run["path"], [f"Global.pretrained_model={prefix}", f"Global.save_inference_dir={tmp_path}/inf",
                                   "Global.backend_probe=False"])
    export(cfg)
    meta = yaml.safe_load(open(tmp_path / "inf" / "inference.yml"))
    assert meta["model"] == "DLA46_c" and meta["softmax"] is True
    student = build_model({"name": "DLA46_c", "class_num": 3})
    student.set_state_dict({k[len("Student."):]: v for k, v in paddle.load(prefix + ".pdparams").items()
                            if k.startswith("Student.")})
    student.eval()
    exported = paddle.jit.load(str(tmp_path / "inf" / "inference"))
    got = sorted((tuple(p.shape), float(p.numpy().astype("float64").sum())) for p in exported.state_dict().values())
    want = sorted((tuple(v.shape), float(v.numpy().astype("float64").sum())) for v in student.state_dict().values())
    assert len(got) == len(want) and all(g[0] == w[0] and g[1] == pytest.approx(w[1], rel=1e-6, abs=1e-6)
                                         for g, w in zip(got, want))
    x = np.random.RandomState(3).randn(4, 3, 32, 32).astype("float32")
    with paddle.no_grad():
        ref = paddle.nn.functional.softmax(student(paddle.to_tensor(x)), axis=-1).numpy()
    pred = Predictor({"backend": "paddle", "cpu_num_threads": 1}, str(tmp_path / "inf"), announce=False).run(x)
    np.testing.assert_allclose(pred, ref, rtol=1e-4, atol=1e-5)


def test_eval_and_export_do_not_need_the_teachers_weights(run, tmp_path):
    """Outside training only the student runs: a teacher weights file that is gone does not stop evaluating or
    exporting the trained student; training still needs it (one line naming the key)."""
    from ppcls.engine import Engine
    from ppcls.inference.export import export
    from ppcls.schema import get_config
    from ppcls.utils.errors import ConfigError
    gone = str(tmp_path / "moved" / "teacher.pdparams")
    cfg = get_config(run["path"], [f"Global.pretrained_model={run['out']}/best_model_student.pdparams",
                                   f"Global.save_inference_dir={tmp_path}/inf", "Global.backend_probe=False"])
    cfg["Arch"]["pretrained_list"] = [gone, None]
    export(cfg)
    assert os.path.isfile(tmp_path / "inf" / "inference.pdiparams")
    top1 = Engine(cfg, "eval").eval().metrics["top1"]
    whole = get_config(run["path"], [f"Global.pretrained_model={run['out']}/best_model"])
    whole["Arch"]["pretrained_list"] = [gone, None]
    assert top1 == pytest.approx(Engine(whole, "eval").eval().metrics["top1"], abs=1e-6)
    with pytest.raises(ConfigError, match=r"Arch.pretrained_list\[0\]"):
        Engine(cfg, "train")


@pytest.mark.slow
def test_exported_student_quantizes_and_serves(run, tmp_path):
    """The chain a user takes after distilling: export (the student alone), INT8 with tools/quantize.py on the
    distillation config, the HTTP service's model on the INT8 folder."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("fastapi")
    inf, int8 = str(tmp_path / "inf"), str(tmp_path / "int8")
    r = run_tool("export_model.py", "-c", run["path"], "-o",
                 f"Global.pretrained_model={run['out']}/best_model_student.pdparams",
                 "-o", f"Global.save_inference_dir={inf}", "-o", "Global.backend_probe=False")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_tool("quantize.py", "-c", run["path"], "--model-dir", inf, "--out", int8, "--calib-images", "16")
    assert r.returncode == 0, r.stderr[-2000:]
    fp32, q8 = (float(v) for v in re.search(r"fp32 top1: ([0-9.]+) int8 top1: ([0-9.]+)", r.stdout).groups())
    assert 0 <= q8 <= 1 and fp32 == pytest.approx(run["result"].best_metric, abs=1e-5)
    assert yaml.safe_load(open(os.path.join(int8, "inference.yml")))["model"] == "DLA46_c"
    from ppcls.serving.model import ServedModel
    from ppcls.utils.config import load_yaml_with_bases
    cfg = load_yaml_with_bases(os.path.join(ROOT, "deploy", "configs", "inference_cls.yaml"))
    cfg["Global"]["inference_model_dir"] = int8
    served = ServedModel(cfg)
    assert served.predictor.backend == "onnxruntime"
    res = served.infer(np.zeros([2, 3, 32, 32], np.float32))
    assert len(res) == 2 and len(res[0]["class_ids"]) >= 1


def test_infer_predicts_with_the_postprocess_model(run, capsys):
    from ppcls.arch import build_model
    from ppcls.inference.infer import infer
    from ppcls.inference.pipeline import Preprocess, list_images, read_rgb
    from ppcls.schema import get_config
    prefix = os.path.join(run["out"], "latest")
    cfg = get_config(run["path"], [f"Global.pretrained_model={prefix}"])
    results = infer(cfg)
    student = build_model({"name": "DLA46_c", "class_num": 3})
    student.set_state_dict({k[len("Student."):]: v for k, v in paddle.load(prefix + ".pdparams").items()
                            if k.startswith("Student.")})
    student.eval()
    files = list_images(cfg["Infer"]["infer_imgs"])
    pre = Preprocess(cfg["Infer"]["transforms"])
    batch = np.stack([pre(read_rgb(f)) for f in files])
    with paddle.no_grad():
        probs = paddle.nn.functional.softmax(student(paddle.to_tensor(batch)), axis=-1).numpy()
    assert [r["class_ids"] for r in results] == [list(np.argsort(-p, kind="stable")[:2]) for p in probs]


def test_resume_is_bit_exact(run, tmp_path):
    from ppcls.engine import Engine
    from ppcls.schema import get_config
    out2 = str(tmp_path / "out2")
    cfg = get_config(run["path"], [f"Global.checkpoints={run['out']}/epoch_1", f"Global.output_dir={out2}",
                                   "Global.use_visualdl=False"])
    Engine(cfg, "train").train()
    for suffix in (".pdparams", ".ema.pdparams"):
        a = flat(paddle.load(os.path.join(run["out"], "latest" + suffix)))
        b = flat(paddle.load(os.path.join(out2, "DistillationModel", "latest" + suffix)))
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k], b[k]), (suffix, k)


def test_a_train_call_from_an_enclosing_layer_keeps_the_teacher_in_eval():
    from ppcls.arch import build_model
    model = build_model(dict(ARCH, class_num=3))
    teacher = model.sub_model("Teacher")
    wrapper = paddle.nn.LayerList([model])  # as DataParallel / to_static wrap it
    wrapper.train()
    assert teacher.training  # Layer.train() sets every sublayer, bypassing DistillationModel.train
    before = flat(teacher.state_dict())
    out = model(paddle.randn([4, 3, 32, 32]))
    assert not teacher.training and model.sub_model("Student").training
    assert out["Teacher"].stop_gradient and not out["Student"].stop_gradient
    after = flat(teacher.state_dict())
    assert all(np.array_equal(before[k], after[k]) for k in before)  # BatchNorm statistics did not move


# -- the shipped configs, PaddleClas's own config, distributed training (slow) -------------------------------
SHIPPED = sorted(os.path.join(ROOT, "configs", "Distillation", f)
                 for f in os.listdir(os.path.join(ROOT, "configs", "Distillation")) if f.endswith(".yaml"))
PADDLECLAS_CONFIG = os.path.join(ROOT, "tests", "fixtures", "paddleclas", "mv3_large_x1_0_distill_mv3_small_x1_0.yaml")


@pytest.fixture(scope="module")
def images64(module_tmp):
    from datasets import make_synthetic_dataset
    root = str(module_tmp("kd64"))
    make_synthetic_dataset(root, num_classes=2, per_class=2, size=72, val_per_class=1)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_shipped_config_trains_a_step(path, images64, tmp_path):
    from learning import assert_moved, biases_before_batchnorm, parameters
    from ppcls.engine import Engine
    from ppcls.schema import get_config
    cfg = get_config(path)  # as shipped
    assert cfg["Arch"]["name"] == "DistillationModel" and cfg["Arch"]["infer_model_name"] == "Student"
    over = [f"Global.output_dir={tmp_path}/out", "Global.epochs=1", "Global.eval_during_train=False",
            "Global.use_visualdl=False", "Global.device=cpu", "Arch.class_num=2", "Global.seed=3",
            "DataLoader.Train.sampler.batch_size=2", "DataLoader.Train.loader.num_workers=0",
            f"DataLoader.Train.dataset.image_root={images64}",
            f"DataLoader.Train.dataset.cls_label_path={images64}/train_list.txt",
            "Arch.models.0.Teacher.pretrained=False"]  # the teachers' weights are downloads or earlier runs
    cfg = get_config(path, over)
    for op in cfg["DataLoader"]["Train"]["dataset"]["transform_ops"]:
        if "RandCropImage" in op:
            op["RandCropImage"]["size"] = 64
    cfg["DataLoader"].pop("Eval")
    eng = Engine(cfg, "train")
    teacher, student = eng.model.sub_model("Teacher"), eng.model.sub_model("Student")
    before_teacher, before_student = flat(teacher.state_dict()), parameters(student)
    eng.train()
    after = flat(teacher.state_dict())
    assert all(np.array_equal(before_teacher[k], after[k]) for k in after)
    assert_moved(before_student, student, exempt=biases_before_batchnorm(student))


@pytest.mark.slow
def test_paddleclas_distillation_config_runs_unchanged(tmp_path):
    """PaddleClas's MobileNetV3 distillation config with zoo models in place of its MobileNets: the teacher's
    `pretrained: True` (+ use_ssld) loads the weights table's default file, here put in a cache of the test's
    own; the command-line overrides are those a CPU run and a tiny dataset need."""
    from datasets import make_synthetic_dataset
    from ppcls.arch import build_model
    from ppcls.arch.weights import cached_path, find_weights
    data = str(tmp_path / "data")
    make_synthetic_dataset(data, num_classes=3, per_class=4, size=40, val_per_class=2)
    cfg_path = str(tmp_path / "mv3_distill.yaml")
    with open(cfg_path, "w") as f:
        f.write(open(PADDLECLAS_CONFIG).read().replace("./dataset/ILSVRC2012/", data + "/"))
    env = {"PPCLS_HOME": str(tmp_path / "home"), "PPCLS_OFFLINE": "1"}
    os.environ.update(env)
    try:
        dest = cached_path("DLA46_c", find_weights("DLA46_c", True))
    finally:
        for k in env:
            os.environ.pop(k)
    os.makedirs(os.path.dirname(dest))
    paddle.seed(11)
    paddle.save(build_model({"name": "DLA46_c"}).state_dict(), dest)
    out = str(tmp_path / "out")
    common = ["-o", "Global.device=cpu", "-o", f"Global.output_dir={out}"]
    r = run_tool("train.py", "-c", cfg_path, *common, "-o", "Global.epochs=1",
                 "-o", "DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=32",
                 "-o", "DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short=36",
                 "-o", "DataLoader.Eval.dataset.transform_ops.2.CropImage.size=32",
                 "-o", "DataLoader.Train.loader.num_workers=0", "-o", "DataLoader.Eval.loader.num_workers=0",
                 env=env, cwd=str(tmp_path))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    log = r.stdout + r.stderr
    assert "use_ssld: accepted for compatibility" in log
    assert re.search(r"\[Train\]\[Epoch 1/1\]\[Avg\]top1: [0-9.]+, top5: [0-9.]+, CELoss_Student_Teacher: ", log)
    loss, top1, n = eval_avg(log)
    assert n == 6
    result = os.path.join(out, "DistillationModel")
    teacher = flat(paddle.load(dest))
    latest = flat(paddle.load(os.path.join(result, "latest.pdparams")))
    assert all(np.array_equal(latest["Teacher." + k], v) for k, v in teacher.items())
    # saved with the best model (an epoch whose top-1 beats the initial 0)
    assert os.path.isfile(os.path.join(result, "best_model_student.pdparams")) == (top1 > 0)
    labels = tmp_path / "labels.txt"  # the config's ImageNet label list is a file of PaddleClas's checkout
    labels.write_text("0 zero\n1 one\n2 two\n")
    r = run_tool("export_model.py", "-c", cfg_path, *common, "-o", f"Global.pretrained_model={result}/latest",
                 "-o", f"Global.save_inference_dir={tmp_path}/inf", "-o", "Global.backend_probe=False",
                 "-o", f"Infer.PostProcess.class_id_map_file={labels}",
                 env=env, cwd=str(tmp_path))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    exported = paddle.jit.load(str(tmp_path / "inf" / "inference"))
    student = build_model({"name": "DLA46x_c"})
    assert sorted(tuple(p.shape) for p in exported.state_dict().values()) == \
        sorted(tuple(p.shape) for p in student.state_dict().values())


@pytest.mark.slow
@pytest.mark.launch
def test_two_process_distillation(tmp_path):
    import subprocess
    import sys
    path, _ = distill_config(tmp_path, epochs=1, per_class=8)
    log_dir = str(tmp_path / "log")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", log_dir,
           os.path.join(ROOT, "tools", "train.py"), "-c", path]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    logs = [open(os.path.join(log_dir, f"workerlog.{i}")).read() for i in range(2)]
    assert all("[Train][Epoch 1/1][Iter: 0/1]" in l and "CELoss_Student_Teacher" in l for l in logs)
    assert "best_model_student.pdparams" in logs[0] and "best_model_student.pdparams" not in logs[1]
    out = os.path.join(str(tmp_path), "output", "DistillationModel")
    state = flat(paddle.load(os.path.join(out, "latest.pdparams")))
    # the teacher was never trained: its BatchNorm statistics are still the initial ones
    assert all(np.all(state[k] == 0) for k in state if k.startswith("Teacher.") and k.endswith("_mean"))
    assert any(not np.all(state[k] == 0) for k in state if k.startswith("Student.") and k.endswith("_mean"))


def _median_times(fns, windows, iters):
    """Per-call seconds of each of ``fns`` (a dict), timed in alternating windows, median over windows."""
    import time
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(windows):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(iters):
                fn()
            times[k].append((time.perf_counter() - t) / iters)
    return {k: float(np.median(v)) for k, v in times.items()}


def step_time_ratio(teacher="DLA34", student="DLA46_c", batch=8, size=64, windows=5, iters=3):
    """(distillation step) / (teacher forward + student step), each as the engine runs it: forward, the
    losses, backward, the optimizer step."""
    from ppcls.arch import build_model
    from ppcls.loss import build_loss
    paddle.seed(0)
    distill = build_model({"name": "DistillationModel", "class_num": 10, "freeze_params_list": [True, False],
                           "models": [{"Teacher": {"name": teacher}}, {"Student": {"name": student}}],
                           "infer_model_name": "Student"})
    distill.train()
    alone = build_model({"name": student, "class_num": 10})
    alone.train()
    teacher_alone = distill.sub_model("Teacher")
    kd_loss = build_loss([{"DistillationGTCELoss": {"weight": 1.0, "model_names": ["Student"]}},
                          {"DistillationKLDivLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]]}}])
    ce_loss = build_loss([{"CELoss": {"weight": 1.0}}])
    opt_kd = paddle.optimizer.Momentum(0.01, parameters=[p for p in distill.parameters() if not p.stop_gradient])
    opt = paddle.optimizer.Momentum(0.01, parameters=alone.parameters())
    x = paddle.randn([batch, 3, size, size])
    y = paddle.randint(0, 10, [batch])

    def distill_step():
        kd_loss(distill(x), y)["loss"].backward()
        opt_kd.step()
        opt_kd.clear_grad()

    def student_step():
        ce_loss(alone(x), y)["loss"].backward()
        opt.step()
        opt.clear_grad()

    def teacher_forward():
        with paddle.no_grad():
            teacher_alone(x)
    t = _median_times({"distill": distill_step, "student": student_step, "teacher": teacher_forward}, windows, iters)
    return t["distill"] / (t["teacher"] + t["student"]), t


@pytest.mark.timing
@pytest.mark.slow
def test_a_distillation_step_costs_the_teacher_forward_and_the_student_step():
    ratio, t = step_time_ratio()
    times = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in t.items())
    print(f"distill/(teacher fwd + student step) = {ratio:.3f}; {times}")
    assert ratio < 1.15, (ratio, t)
