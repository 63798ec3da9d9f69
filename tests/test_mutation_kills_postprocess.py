"""Infer.PostProcess of the dygraph predictor (ppcls.inference.postprocess): behaviour tests/test_distillation.py
left open, found by mutation testing (bash tests/mutation.sh inference/postprocess.py): the defaults, the key
of a model with several outputs, the exported model's plain array, PaddleClas's other post-processing names,
and the one-line errors."""
import numpy as np
import pytest

from ppcls.inference.pipeline import Topk
from ppcls.inference.postprocess import DistillationPostProcess, build_postprocess
from ppcls.utils.errors import ConfigError

PROBS = {"Student": np.array([[0.1, 0.2, 0.3, 0.05, 0.15, 0.1, 0.1]]),
         "Teacher": np.array([[0.7, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03]])}
FILES = ["a.jpg"]


def ids(results):
    return [r["class_ids"] for r in results]


def test_the_defaults_take_the_students_top5():
    post = build_postprocess({"name": "DistillationPostProcess"})
    assert isinstance(post, DistillationPostProcess) and (post.model_name, post.key) == ("Student", None)
    assert ids(post(PROBS, FILES)) == [[2, 1, 4, 0, 5]]
    assert ids(DistillationPostProcess()(PROBS, FILES)) == [[2, 1, 4, 0, 5]]
    assert build_postprocess({"name": "DistillationPostProcess", "topk": None}).func.topk == 5


def test_the_exported_models_array_is_taken_as_it_is():
    post = build_postprocess({"name": "DistillationPostProcess", "model_name": "Teacher", "topk": 2},
                             label_list=list("abcdefg"))
    res = post(PROBS["Teacher"], FILES)
    assert res == [{"class_ids": [0, 1], "scores": [0.7, 0.1], "file_name": "a.jpg", "label_names": ["a", "b"]}]


def test_key_picks_one_output_of_a_model_with_several():
    post = DistillationPostProcess(model_name="Teacher", key=1, topk=1)
    outputs = {"Teacher": [PROBS["Student"], PROBS["Teacher"]], "Student": PROBS["Student"]}
    assert ids(post(outputs, FILES)) == [[0]]
    named = DistillationPostProcess(model_name="Teacher", key="logits", topk=1)
    assert ids(named({"Teacher": {"logits": PROBS["Teacher"]}}, FILES)) == [[0]]
    with pytest.raises(ConfigError) as e:
        post({"Teacher": PROBS["Teacher"]}, FILES)
    assert str(e.value) == "Infer.PostProcess.key: Teacher returns one output; leave key unset"


def test_an_unknown_model_or_func_is_one_line():
    with pytest.raises(ConfigError) as e:
        DistillationPostProcess(model_name="Pupil")(PROBS, FILES)
    assert str(e.value) == "Infer.PostProcess.model_name: 'Pupil' is not a model of Arch.models ('Student', 'Teacher')"
    with pytest.raises(ConfigError) as e:
        build_postprocess({"name": "DistillationPostProcess", "func": "ThreshOutput"})
    assert str(e.value) == ("Infer.PostProcess.func: 'ThreshOutput': the classifiers here post-process with Topk")


@pytest.mark.parametrize("cfg", [None, {}, {"name": "Topk", "topk": 3, "class_id_map_file": "x.txt"},
                                 {"name": "ThreshOutput", "topk": 3}])
def test_other_names_are_the_classifiers_topk(cfg):
    post = build_postprocess(cfg, label_list=["x"] * 7)
    assert type(post) is Topk and post.topk == (3 if cfg and "topk" in cfg else 5) and post.labels == ["x"] * 7
    # PaddleClas's class_id_map_file is not an option of the distillation post-process either
    post = build_postprocess({"name": "DistillationPostProcess", "class_id_map_file": "x.txt", "topk": 3})
    assert post.func.topk == 3
