"""benchmarks/hard_pixels.py: accuracy and confidence per subdomain."""

import numpy as np
import pytest

from benchmarks import hard_pixels


def test_tally_splits_labelled_pixels_into_easy_and_hard():
    # 2x2 image, 2 classes. Pixel (1, 1) is unlabelled and counts nowhere.
    probs = np.array([[[0.9, 0.1], [0.3, 0.7]],
                      [[0.6, 0.4], [0.5, 0.5]]], np.float32)
    label = np.array([[0, 0], [1, 255]], np.uint8)
    hard = np.array([[False, True], [True, True]])
    tally = hard_pixels.Tally()
    tally.update(probs, label, hard)
    result = tally.result()
    # Easy: (0,0) predicted 0, right, confidence 0.9.
    assert result["easy"] == {"pixels": 1, "accuracy": 1.0,
                              "confidence": pytest.approx(0.9, abs=1e-7)}
    # Hard: (0,1) predicted 1 vs label 0 (wrong, 0.7); (1,0) predicted 0 vs 1
    # (wrong, 0.6): confident and wrong, as a D-fooling G would make them.
    assert result["hard"]["pixels"] == 2 and result["hard"]["accuracy"] == 0.0
    assert result["hard"]["confidence"] == pytest.approx(0.65, abs=1e-7)
    lines = hard_pixels.markdown({"G": result})
    assert lines[-1] == "| G | 1.000 | 0.900 | 0.000 | 0.650 | 0.667 |"


def test_shadowed_groups_and_the_share_of_hard_pixels_among_them():
    probs = np.array([[[0.9, 0.1], [0.3, 0.7]],
                      [[0.6, 0.4], [0.2, 0.8]]], np.float32)
    label = np.array([[0, 1], [1, 1]], np.uint8)
    hard = np.array([[False, True], [True, False]])
    shadowed = np.array([[False, True], [True, True]])
    tally = hard_pixels.Tally()
    tally.update(probs, label, hard, shadowed)
    result = tally.result()
    # Shadowed: (0,1) right, (1,0) wrong (predicted 0), (1,1) right.
    assert result["shadowed"]["pixels"] == 3
    assert result["shadowed"]["accuracy"] == pytest.approx(2 / 3)
    assert result["shadowed hard"]["pixels"] == 2
    assert result["unshadowed"] == {"pixels": 1, "accuracy": 1.0,
                                    "confidence": pytest.approx(0.9, abs=1e-7)}
    lines = hard_pixels.markdown({"G": result})
    # Hard among shadowed 2/3; among unshadowed 0/1.
    assert lines[-1] == ("Shadowed: 0.750 of the labelled pixels; hard among shadowed "
                         "0.667, among unshadowed 0.000.")
    # Easy (0,0), (1,1): right at 0.9, 0.8; hard: (0,1) right, (1,0) wrong.
    assert lines[2] == ("| G | 1.000 | 0.850 | 0.500 | 0.650 | 1.000 | 0.900 | 0.667 | "
                        "0.700 | 0.500 |")


def test_combine_pools_seeds_weighted_by_pixels():
    a = {"G": {"hard": {"pixels": 1, "accuracy": 1.0, "confidence": 0.5}}}
    b = {"G": {"hard": {"pixels": 3, "accuracy": 0.0, "confidence": 0.9}}}
    pooled = hard_pixels.combine([a, b])["G"]["hard"]
    assert pooled["pixels"] == 4
    assert pooled["accuracy"] == pytest.approx(0.25)
    assert pooled["confidence"] == pytest.approx((0.5 + 2.7) / 4)
