"""Tests of tf_pixintra.metrics: hand-computed confusion matrices and IoU."""

import math

import numpy as np
import pytest

from tf_pixintra.metrics import ConfusionMatrix, mean_of_valid, resolve_classes


def test_confusion_counts_and_iou_by_hand():
    gt = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1], [1, 1, 0]], np.uint8)
    cm = ConfusionMatrix(3).update(pred, gt)
    # The ignored pixel (predicted 0) is counted nowhere.
    np.testing.assert_array_equal(cm.confusion, [[1, 1, 0], [0, 2, 0], [0, 1, 0]])
    np.testing.assert_array_equal(cm.misses, [0, 0, 0])
    assert cm.counts.dtype == np.int64
    iou = cm.iou()
    assert iou[0] == pytest.approx(1 / 2)  # TP 1, FN 1.
    assert iou[1] == pytest.approx(2 / 4)  # TP 2, FP 2.
    assert iou[2] == 0.0  # TP 0, FN 1.
    assert cm.mean_iou() == pytest.approx((0.5 + 0.5 + 0.0) / 3)


def test_false_positive_only_class_scores_zero_absent_class_left_out():
    cm = ConfusionMatrix(3).update(np.array([0, 2]), np.array([0, 0]))
    iou = cm.iou()
    assert iou[0] == pytest.approx(0.5)
    assert math.isnan(iou[1])  # In neither map.
    assert iou[2] == 0.0  # Only a false positive.
    assert cm.mean_iou() == pytest.approx(0.25)


def test_out_of_range_predictions_are_misses_of_the_ground_truth_class():
    gt = np.array([0, 0, 0, 0, 1], np.int32)
    pred = np.array([0, 255, 7, -1, 1], np.int32)
    cm = ConfusionMatrix(3).update(pred, gt)
    np.testing.assert_array_equal(cm.misses, [3, 0, 0])
    iou = cm.iou()
    assert iou[0] == pytest.approx(1 / 4)  # TP 1, FN 3, no false positive.
    assert iou[1] == 1.0
    assert math.isnan(iou[2])


def test_only_ignored_ground_truth_gives_nan_mean():
    cm = ConfusionMatrix(3).update(np.array([[0, 1]]), np.array([[255, 255]]))
    assert cm.counts.sum() == 0
    assert math.isnan(cm.mean_iou())


def test_bad_inputs_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="value 5"):
        cm.update(np.array([0, 1]), np.array([0, 5]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="merge"):
        cm.merge(ConfusionMatrix(4))


def test_merge_adds_counts():
    a = ConfusionMatrix(3).update(np.array([0, 1]), np.array([0, 0]))
    b = ConfusionMatrix(3).update(np.array([2, 255]), np.array([2, 1]))
    a.merge(b)
    np.testing.assert_array_equal(a.counts, [[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
    iou = a.iou()
    assert iou[0] == pytest.approx(1 / 2)
    assert iou[1] == 0.0  # FP 1 (from class 0), FN 1 (miss).
    assert iou[2] == 1.0


def test_synthia_subsets_average_over_the_full_19_class_matrix():
    # road 0, wall 3, terrain 9, truck 14; terrain and truck are outside both
    # SYNTHIA subsets, wall is in the 16-class one only.
    gt = np.array([0, 0, 0, 0, 9, 9, 3, 3])
    pred = np.array([0, 0, 0, 9, 0, 9, 3, 14])
    cm = ConfusionMatrix(19).update(pred, gt)
    iou = cm.iou()
    # road: TP 3, FN 1 (predicted terrain), FP 1 (terrain predicted road).
    assert iou[0] == pytest.approx(3 / 5)
    assert iou[9] == pytest.approx(1 / 3)
    assert iou[3] == pytest.approx(1 / 2)
    assert iou[14] == 0.0
    assert sum(math.isnan(v) for v in iou.values()) == 15
    assert cm.mean_iou(19) == pytest.approx((0.6 + 1 / 3 + 0.5 + 0.0) / 4)
    assert cm.mean_iou() == cm.mean_iou(19)
    assert cm.mean_iou(16) == pytest.approx((0.6 + 0.5) / 2)
    assert cm.mean_iou(13) == pytest.approx(0.6)
    assert cm.mean_iou([0, 14]) == pytest.approx(0.3)
    assert set(cm.iou(resolve_classes(13))) == {0, 1, 2, 6, 7, 8, 10, 11, 12, 13,
                                                15, 17, 18}


def test_resolve_classes_and_mean_of_valid():
    assert resolve_classes(None, 3) == (0, 1, 2)
    assert len(resolve_classes(16)) == 16
    with pytest.raises(ValueError, match="classes=12: expected one of 13, 16, 19"):
        resolve_classes(12)
    assert mean_of_valid([1.0, float("nan"), None, 3.0]) == 2.0
    assert math.isnan(mean_of_valid([None]))


def test_large_counts_do_not_overflow():
    cm = ConfusionMatrix(2)
    ones = np.ones((1024, 2048), np.uint8)
    for _ in range(3):
        cm.update(ones, ones)
    assert cm.confusion[1, 1] == 3 * 1024 * 2048
