"""The discriminator diagnostics: streaming AUC, Pearson correlation, last value."""

import numpy as np
import pytest
import tensorflow as tf

from tf_pixintra.adapters import diagnostics


def test_auc_is_half_for_no_separation_one_for_perfect_and_skips_weight_zero():
    positive = np.array([[0, 0, 1, 1]], np.float32)
    perfect = diagnostics.PairwiseAUC("a")
    perfect.update_state(positive, np.array([[0.1, 0.2, 0.8, 0.9]]))
    assert float(perfect.result()) == pytest.approx(1.0, abs=1e-6)
    constant = diagnostics.PairwiseAUC("b")
    constant.update_state(positive, np.full((1, 4), 0.3))
    assert float(constant.result()) == pytest.approx(0.5, abs=1e-6)
    # Weight 0 leaves out the two pixels that would reverse the ranking.
    masked = diagnostics.PairwiseAUC("c")
    masked.update_state(np.array([0, 1, 0, 1], np.float32),
                        np.array([0.1, 0.9, 0.95, 0.05]),
                        np.array([1, 1, 0, 0], np.float32))
    assert float(masked.result()) == pytest.approx(1.0, abs=1e-6)


def _mann_whitney(positive, score):
    """Exact AUC: P(pos > neg) + P(pos == neg) / 2 over all pairs."""
    pos, neg = score[positive == 1], score[positive == 0]
    return (np.mean(pos[:, None] > neg[None, :])
            + 0.5 * np.mean(pos[:, None] == neg[None, :]))


def test_auc_is_exact_with_ties_and_pools_batches_by_pairs():
    rng = np.random.default_rng(0)
    positive = (rng.random(600) < 0.3).astype(np.float32)
    # Scores 0.3 +- 1e-4 (a D near the base rate) with ties: thresholds at
    # fixed levels in [0, 1] would read 0.5 here.
    score = np.round(0.3 + 1e-4 * (positive + rng.normal(0, 1, 600)), 5)
    assert len(np.unique(score)) < 600                       # there are ties
    whole = diagnostics.PairwiseAUC("w")
    whole.update_state(positive, score)
    exact = _mann_whitney(positive, score)
    assert exact > 0.7
    # float64 rank sums of 600 values: exact up to the float32 result.
    assert float(whole.result()) == pytest.approx(exact, abs=1e-6)
    # Two batches: U's and pair counts add up (pairs across batches left out).
    parts = diagnostics.PairwiseAUC("p")
    a, b = slice(0, 200), slice(200, 600)
    for s in (a, b):
        parts.update_state(positive[s], score[s])
    pairs = [np.sum(positive[s] == 1) * np.sum(positive[s] == 0) for s in (a, b)]
    pooled = (sum(p * _mann_whitney(positive[s], score[s])
                  for p, s in zip(pairs, (a, b))) / sum(pairs))
    assert float(parts.result()) == pytest.approx(pooled, abs=1e-6)
    parts.reset_state()
    parts.update_state(np.ones(4), np.arange(4.0))  # one class only
    assert float(parts.result()) == 0.5


def test_auc_update_of_a_fully_masked_batch_adds_nothing_in_a_graph():
    # A crop whose pixels are all padding: nothing to rank, and no error
    # from an empty sort inside the compiled train step.
    auc = diagnostics.PairwiseAUC("m")
    update = tf.function(auc.update_state)
    update(tf.constant([1.0, 0.0]), tf.constant([0.9, 0.1]),
           tf.constant([0.0, 0.0]))
    assert float(auc.result()) == 0.5
    update(tf.constant([1.0, 0.0, 1.0, 0.0]), tf.constant([0.5, 0.5, 0.1, 0.2]),
           tf.constant([1.0, 1.0, 1.0, 1.0]))
    # (tie 1/2 + 1 + 0 + 0) / 4 pairs
    assert float(auc.result()) == pytest.approx(0.375, abs=1e-6)


def test_streaming_pearson_pools_pixels_with_weights():
    rng = np.random.default_rng(1)
    x = rng.random((3, 5, 7)).astype(np.float32)
    y = (0.5 * x + rng.normal(0, 0.2, x.shape)).astype(np.float32)
    w = (rng.random(x.shape) < 0.7).astype(np.float32)
    metric = diagnostics.StreamingPearson()
    metric.update_state(x[:1], y[:1], w[:1])      # two updates, one pool
    metric.update_state(x[1:], y[1:], w[1:])
    keep = w.ravel() > 0
    expected = np.corrcoef(x.ravel()[keep].astype(np.float64),
                           y.ravel()[keep].astype(np.float64))[0, 1]
    # float64 sums of 105 float32 inputs: the float32 result's rounding.
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    metric.update_state(x, np.full_like(x, 0.4))  # constant y: defined as 0
    assert float(metric.result()) == 0.0


def test_last_value_keeps_the_last_weighted_value_across_resets():
    metric = diagnostics.LastValue()
    assert float(metric.result()) == 0.0          # nothing measured yet
    metric.update_state(0.25, 1.0)
    metric.update_state(0.9, 0.0)                 # a step without a measure
    assert float(metric.result()) == 0.25
    metric.reset_state()                          # the logging interval ends
    assert float(metric.result()) == 0.25
    metric.update_state(tf.constant(0.5), tf.constant(1.0))
    assert float(metric.result()) == 0.5


def test_gradient_norm_share():
    part = [tf.constant([3.0, 0.0]), None]
    total = [tf.constant([3.0, 4.0]), tf.constant([0.0])]
    assert float(diagnostics.gradient_norm_share(part, total)) == pytest.approx(0.6)
