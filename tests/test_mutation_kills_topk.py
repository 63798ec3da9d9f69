"""TopkAcc behaviour that tests/test_loss_lr.py left open, found by mutation testing (bash tests/mutation.sh
metric/topk.py): a single k, the (logits, aux) tuple, label layouts ([N], [N, 1], int32, soft [N, K] targets),
k larger than the class count, the empty metric, and the state tensors that distributed eval reduces."""
import numpy as np
import paddle
import pytest

from ppcls.metric.topk import TopkAcc

# 4 samples, 3 classes; ranking of each row: [0, 1, 2], [2, 1, 0], [1, 0, 2], [0, 2, 1]
SCORES = [[0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.3, 0.6, 0.1], [0.5, 0.1, 0.4]]
LABELS = [1, 2, 2, 1]  # rank of the true class: 2nd, 1st, 3rd, 3rd
EXPECTED = {"top1": 1 / 4, "top2": 2 / 4}


def scores():
    return paddle.to_tensor(SCORES, dtype="float32")


def measured(labels, output=None, topk=(1, 2)):
    m = TopkAcc(topk=list(topk))
    m.update(scores() if output is None else output, labels)
    return m.compute()


def test_a_single_int_k():
    m = TopkAcc(topk=2)
    assert m.topk == [2]
    m.update(scores(), paddle.to_tensor(LABELS))
    assert m.compute() == {"top2": pytest.approx(2 / 4)}


@pytest.mark.parametrize("layout", ["n", "n1", "int32"])
def test_hard_label_layouts(layout):
    y = np.array(LABELS)
    label = {"n": paddle.to_tensor(y), "n1": paddle.to_tensor(y.reshape(-1, 1)),
             "int32": paddle.to_tensor(y.astype("int32"))}[layout]
    assert measured(label) == pytest.approx(EXPECTED)


def test_soft_targets_count_their_dominant_class():
    soft = np.full((4, 3), 0.1, dtype="float32")
    soft[np.arange(4), LABELS] = 0.8
    assert measured(paddle.to_tensor(soft)) == pytest.approx(EXPECTED)


def test_soft_targets_when_the_batch_size_differs_from_the_class_count():
    soft = np.full((2, 3), 0.1, dtype="float32")
    soft[[0, 1], [1, 2]] = 0.8
    assert measured(paddle.to_tensor(soft), scores()[:2]) == pytest.approx({"top1": 1 / 2, "top2": 2 / 2})


def test_a_logits_tuple_uses_its_first_element():
    other = paddle.to_tensor(np.eye(4, 3, dtype="float32"))
    assert measured(paddle.to_tensor(LABELS), (scores(), other)) == pytest.approx(EXPECTED)
    assert measured(paddle.to_tensor(LABELS), [scores(), other]) == pytest.approx(EXPECTED)


def test_k_above_the_class_count_counts_every_sample():
    assert measured(paddle.to_tensor(LABELS), topk=(1, 5)) == pytest.approx({"top1": 1 / 4, "top5": 1.0})


def test_nothing_measured_is_zero_and_state_shapes_are_fixed():
    m = TopkAcc(topk=[1, 2])
    assert m.compute() == {"top1": 0.0, "top2": 0.0}
    correct, count = m.state_tensors()
    # float64 counts stay exact past 2**24 samples; the shapes are what distributed eval all-reduces
    assert (correct.shape, correct.dtype, count.shape, count.dtype) == ([2], paddle.float64, [1], paddle.float64)


def test_state_tensors_carry_the_counts_to_another_metric():
    a, b = TopkAcc(topk=[1, 2]), TopkAcc(topk=[1, 2])
    a.update(scores(), paddle.to_tensor(LABELS))
    b.set_state_tensors(a.state_tensors())
    assert b.compute() == pytest.approx(EXPECTED)
