"""SegIoU / SegDice behaviour that tests/test_seg.py left open, found by mutation testing (bash tests/mutation.sh
metric/seg_metrics.py): a plain tensor output of a batch, the strict threshold, empty sets, equal areas that do
not overlap, and the state tensors that distributed evaluation all-reduces."""
import paddle
import pytest

from ppcls.metric.seg_metrics import SegDice, SegIoU


def square(batch, rows, cols, value=1.0, size=4):
    t = paddle.zeros([batch, 1, size, size])
    t[:, :, rows[0]:rows[1], cols[0]:cols[1]] = value
    return t


def both():
    return SegIoU(), SegDice()


def test_a_plain_tensor_output_counts_every_sample_of_the_batch():
    # sample 0: 6 predicted, 4 true, 4 overlap; sample 1: nothing predicted, 4 true
    pred = square(2, (0, 2), (0, 3), 0.9)
    pred[1] = 0.0
    mask = square(2, (0, 2), (0, 2))
    iou, dice = both()
    for m in (iou, dice):
        m.update(pred, mask)
    assert iou.compute() == {"iou": pytest.approx(4 / 10)}
    assert dice.compute() == {"dice": pytest.approx(8 / 14)}


def test_the_threshold_is_strict_for_predictions_and_masks():
    # exactly 0.5 is background, as the dataset's `mask > mask_threshold` makes it for the masks it reads
    pred = square(1, (0, 2), (0, 2), 0.5)
    pred[:, :, 2:, 2:] = 0.51  # 4 predicted pixels, off the mask
    mask = square(1, (0, 2), (0, 2), 0.5)
    mask[:, :, 2:, :2] = 1.0  # 4 true pixels
    iou, dice = both()
    for m in (iou, dice):
        m.update(pred, mask)
    assert iou.compute() == {"iou": 0.0} and dice.compute() == {"dice": 0.0}
    assert [float(v) for v in iou.state_tensors()[0]] == [0.0, 4.0, 4.0]


def test_empty_prediction_of_an_empty_mask_is_a_perfect_score():
    iou, dice = both()
    for m in (iou, dice):
        m.update([paddle.zeros([1, 1, 4, 4])], paddle.zeros([1, 1, 4, 4]))
    assert iou.compute() == {"iou": 1.0} and dice.compute() == {"dice": 1.0}
    assert SegIoU().compute() == {"iou": 1.0} and SegDice().compute() == {"dice": 1.0}  # nothing seen yet


def test_equal_areas_that_do_not_overlap_score_zero():
    iou, dice = both()
    for m in (iou, dice):
        m.update(square(1, (0, 2), (0, 2), 0.9), square(1, (2, 4), (2, 4)))
    assert iou.compute() == {"iou": 0.0} and dice.compute() == {"dice": 0.0}


def test_state_tensors_hold_the_pixel_counts_in_float64():
    # every worker, one that saw no batch too, all-reduces the same [3] float64 sums: intersection,
    # prediction area, target area (float64 counts stay exact past 2**24 pixels)
    for m in both():
        (sums,) = m.state_tensors()
        assert (sums.shape, sums.dtype, sums.numpy().tolist()) == ([3], paddle.float64, [0.0, 0.0, 0.0])
        m.update([square(1, (0, 2), (0, 3), 0.9)], square(1, (0, 2), (0, 2)))
        m.update([square(1, (0, 1), (0, 1), 0.9)], square(1, (0, 2), (0, 2)))
        assert m.state_tensors()[0].numpy().tolist() == [5.0, 7.0, 8.0]
        m.reset()
        assert m.state_tensors()[0].numpy().tolist() == [0.0, 0.0, 0.0]


def test_state_tensors_carry_the_sums_to_another_metric():
    for cls, key, expected in ((SegIoU, "iou", 4 / 6), (SegDice, "dice", 8 / 10)):
        a, b = cls(), cls()
        a.update([square(1, (0, 2), (0, 3), 0.9)], square(1, (0, 2), (0, 2)))
        b.set_state_tensors(a.state_tensors())
        assert b.compute() == {key: pytest.approx(expected)}
